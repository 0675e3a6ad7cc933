#[tokio::test]
async fn an_export_that_fails_half_way_is_cut_off_before_its_trailer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let store = SledStore::open(&path, 8 << 20).unwrap();
        for i in 0..3 {
            let new = NewMember {
                identity: ChatIdentity::new(Channel::Terminal, &i.to_string()).unwrap(),
                email: Email::parse(&format!("m{i}@example.com")).unwrap(),
                profile: Profile::default(),
                bonus: Points(50),
            };
            store.join(new, Utc::now()).unwrap();
        }
        store.close().unwrap().write_snapshot().unwrap();
        // The last member's cached balance no longer matches their ledger.
        let db = sled::open(&path).unwrap();
        let members = db.open_tree("members").unwrap();
        let (k, v) = members.last().unwrap().unwrap();
        let text = String::from_utf8(v.to_vec()).unwrap();
        members
            .insert(
                k,
                text.replace("\"balance\":50", "\"balance\":51").as_bytes(),
            )
            .unwrap();
        db.flush().unwrap();
    }
    let app = spawn_app_with(|s| s.store.path = path.clone()).await;
    let res = export_over_http(&app, Some(ADMIN_TOKEN)).await;
    assert_eq!(res.status(), 200, "the failure comes after the first bytes");
    // The body breaks off: the client sees an error, or at least no trailer.
    match res.text().await {
        Err(_) => {}
        Ok(text) => assert!(!text.contains("\"type\":\"end\""), "{text}"),
    }
}
