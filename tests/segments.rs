//! Members and segments over HTTP against the real server: `GET /admin/members` with filters
//! as JSON pages and as one CSV stream, `GET /admin/members/<id>`. Members are seeded through
//! the program (joins on every channel, claims at the fake shop, a redemption) and a ManyChat
//! join; every figure the API shows is checked against the member's ledger as the program
//! reads it.

mod common;

use common::{spawn_app_with, TestApp, ADMIN_TOKEN};
use loyalty_bot::domain::{
    Channel, ChatIdentity, Email, EntryKind, LedgerEntry, Member, MemberId, OrderNumber, Profile,
};
use loyalty_bot::program::{JoinResult, RedeemResult};
use serde_json::{json, Value};
use std::collections::HashSet;

async fn app() -> TestApp {
    // Paging walks take many requests; the per-address admin budget is not under test here.
    spawn_app_with(|s| s.limits.admin_per_ip.max = 0).await
}

/// Joins `email` on `channel` with `locale`, then claims one paid order per total.
async fn member(
    app: &TestApp,
    channel: Channel,
    email: &str,
    locale: Option<&str>,
    orders: &[&str],
) -> Member {
    let program = app.program();
    let who = ChatIdentity::new(channel, email).unwrap();
    let profile = Profile {
        first_name: None,
        locale: locale.map(str::to_owned),
    };
    let joined = program
        .join(&who, Email::parse(email).unwrap(), profile)
        .await
        .unwrap();
    let JoinResult::Joined(account) = joined else {
        panic!("{email} did not join: {joined:?}");
    };
    for (i, total) in orders.iter().enumerate() {
        let number = format!("{}-{i}", email.split('@').next().unwrap());
        app.shop.add_order(&number, email, total, "paid");
        let order = OrderNumber::parse(&number).unwrap();
        program.claim(&account.member, order).await.unwrap();
    }
    account.member
}

/// Nine members: points 50 (bonus) plus their orders; Dora redeemed a mug (200).
async fn seed(app: &TestApp) -> Vec<Member> {
    let mut members = vec![
        member(
            app,
            Channel::Messenger,
            "ana@example.com",
            Some("de_DE"),
            &["150"],
        )
        .await,
        member(
            app,
            Channel::Messenger,
            "ben@example.com",
            Some("en_US"),
            &[],
        )
        .await,
        member(
            app,
            Channel::Manychat,
            "cleo@example.com",
            Some("de_AT"),
            &["300", "20"],
        )
        .await,
        member(app, Channel::Manychat, "dora@example.com", None, &["400"]).await,
        member(
            app,
            Channel::Terminal,
            "eve@example.com",
            Some("fr_FR"),
            &["999"],
        )
        .await,
        member(
            app,
            Channel::Messenger,
            "finn@example.com",
            Some("de_DE"),
            &["450"],
        )
        .await,
        member(
            app,
            Channel::Manychat,
            "gus@example.com",
            Some("en_GB"),
            &["90"],
        )
        .await,
        member(app, Channel::Messenger, "hal@example.com", None, &[]).await,
    ];
    let dora = &members[3];
    let redeemed = app.program().redeem(dora, "free-mug", None).await.unwrap();
    assert!(
        matches!(redeemed, RedeemResult::Redeemed { .. }),
        "{redeemed:?}"
    );
    // And one through the ManyChat endpoint, as a subscriber joins there.
    let mut body: Value = serde_json::from_str(include_str!(
        "../fixtures/manychat/full-contact-data-request.json"
    ))
    .unwrap();
    body["custom_fields"] = json!({ "email_input": "ivy@example.com" });
    body["id"] = json!("777000111");
    let res = app.post_manychat("/manychat/join", &body).await;
    assert_eq!(res.status(), 200);
    let who = ChatIdentity::new(Channel::Manychat, "777000111").unwrap();
    let ivy = app
        .program()
        .account(&who)
        .await
        .unwrap()
        .expect("ivy joined");
    members.push(ivy.member);
    members
}

async fn get(app: &TestApp, query: &str) -> reqwest::Response {
    app.client()
        .get(app.url(&format!("/admin/members{query}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
}

async fn page(app: &TestApp, query: &str) -> Value {
    let res = get(app, query).await;
    assert_eq!(res.status(), 200, "{query}");
    res.json().await.unwrap()
}

fn emails(page: &Value) -> Vec<String> {
    page["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["email"].as_str().unwrap().to_owned())
        .collect()
}

/// What the figures must be, computed here from the ledger by their documented definitions.
fn expected_figures(ledger: &[LedgerEntry]) -> [i64; 4] {
    let sum = |kinds: &[EntryKind]| -> i64 {
        let of = ledger.iter().filter(|e| kinds.contains(&e.kind));
        of.map(|e| e.points).sum()
    };
    let count = |kind| ledger.iter().filter(|e| e.kind == kind).count() as i64;
    let redeem = [EntryKind::Redemption, EntryKind::RedemptionReversal];
    let earned = ledger.iter().map(|e| e.points).sum::<i64>() - sum(&redeem);
    [
        count(EntryKind::OrderCredit),
        earned,
        -sum(&redeem),
        count(EntryKind::Redemption) - count(EntryKind::RedemptionReversal),
    ]
}

#[tokio::test]
async fn a_csv_segment_matches_the_store() {
    let app = app().await;
    let members = seed(&app).await;
    let res = get(&app, "?format=csv").await;
    assert_eq!(res.status(), 200);
    let header = |name: &str| res.headers()[name].to_str().unwrap().to_owned();
    assert_eq!(header("content-type"), "text/csv; charset=utf-8");
    let disposition = header("content-disposition");
    assert!(
        disposition.starts_with("attachment; filename=\"members-"),
        "{disposition}"
    );
    let text = res.text().await.unwrap();
    let mut csv = csv::Reader::from_reader(text.as_bytes());
    let columns = "id,email,points,joined_at,last_activity_at,orders_claimed,points_earned,\
                   points_redeemed,rewards_redeemed,locale,channels";
    assert_eq!(
        csv.headers().unwrap().iter().collect::<Vec<_>>().join(","),
        columns
    );
    let rows: Vec<csv::StringRecord> = csv.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), members.len());
    let mut ids = Vec::new();
    for row in &rows {
        let id: u64 = row[0].parse().unwrap();
        ids.push(id);
        let (account, ledger) = app
            .program()
            .member_with_ledger(MemberId(id))
            .await
            .unwrap()
            .expect("a listed member exists");
        let m = &account.member;
        assert_eq!(&row[1], m.email.as_str());
        assert_eq!(
            row[2].parse::<u64>().unwrap(),
            account.balance.0,
            "{}",
            &row[1]
        );
        let joined = chrono::DateTime::parse_from_rfc3339(&row[3]).unwrap();
        assert!((joined.to_utc() - m.joined_at).num_milliseconds().abs() < 1);
        let last = ledger.iter().map(|e| e.at).max().unwrap();
        let shown = chrono::DateTime::parse_from_rfc3339(&row[4]).unwrap();
        assert!(
            (shown.to_utc() - last).num_milliseconds().abs() < 1,
            "{}",
            &row[1]
        );
        let figures: Vec<i64> = (5..9).map(|i| row[i].parse().unwrap()).collect();
        assert_eq!(figures, expected_figures(&ledger), "{}", &row[1]);
        assert_eq!(&row[9], m.locale.as_deref().unwrap_or(""));
        assert_eq!(&row[10], m.identity.channel.as_str());
    }
    let dora = rows.iter().find(|r| &r[1] == "dora@example.com").unwrap();
    let dora: Vec<&str> = (2..9)
        .map(|i| &dora[i])
        .filter(|c| !c.contains('T'))
        .collect();
    assert_eq!(
        dora,
        ["250", "1", "450", "200", "1"],
        "points, orders, earned, redeemed, rewards"
    );
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted, "in id order");
}

#[tokio::test]
async fn filters_combine() {
    let app = app().await;
    let members = seed(&app).await;
    let cases: &[(&str, &[&str])] = &[
        (
            "?min_points=300",
            &["cleo@example.com", "eve@example.com", "finn@example.com"],
        ),
        (
            "?min_points=200&max_points=300",
            &["ana@example.com", "dora@example.com"],
        ),
        (
            "?can_redeem=tote-bag",
            &["eve@example.com", "finn@example.com"],
        ),
        (
            "?can_redeem=free-mug&channel=manychat",
            &["cleo@example.com", "dora@example.com"],
        ),
        (
            "?channel=messenger&locale=de",
            &["ana@example.com", "finn@example.com"],
        ),
        ("?locale=de_AT", &["cleo@example.com"]),
        (
            "?locale=en&max_points=100",
            &["ben@example.com", "ivy@example.com"],
        ),
        ("?channel=terminal&min_points=1000", &["eve@example.com"]),
        ("?inactive_days=1", &[]),
        ("?joined_after=2000-01-01&joined_before=2000-02-01", &[]),
    ];
    for (query, want) in cases {
        assert_eq!(emails(&page(&app, query).await), *want, "{query}");
    }
    // The join times split the members: those after Dora's join.
    let at = members[3]
        .joined_at
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let later = emails(&page(&app, &format!("?joined_after={}", at.replace('+', "%2B"))).await);
    assert_eq!(later.first().map(String::as_str), Some("dora@example.com"));
    assert_eq!(later.len(), members.len() - 3);
    let before = page(&app, &format!("?joined_before={at}&min_points=100")).await;
    assert_eq!(emails(&before), ["ana@example.com", "cleo@example.com"]);
    // The CSV applies the same filter.
    let csv = get(&app, "?format=csv&channel=messenger&locale=de")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
}

#[tokio::test]
async fn paging_walks_every_member_exactly_once() {
    let app = app().await;
    let members = seed(&app).await;
    assert_eq!(members.len(), 9);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = match &cursor {
            Some(c) => format!("?limit=3&cursor={c}"),
            None => "?limit=3".to_owned(),
        };
        let body = page(&app, &query).await;
        pages += 1;
        let list = body["members"].as_array().unwrap();
        assert!(list.len() <= 3);
        seen.extend(list.iter().map(|m| m["id"].as_u64().unwrap()));
        match body.get("next_cursor") {
            Some(c) => cursor = Some(c.as_str().unwrap().to_owned()),
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(
        pages, 3,
        "9 members in pages of 3: no empty page at the end"
    );
    let unique: HashSet<u64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "no member twice");
    let all: HashSet<u64> = members.iter().map(|m| m.id.0).collect();
    assert_eq!(unique, all, "every member");
    // A filter holds across pages, and the default page holds everyone here.
    let first = page(&app, "?min_points=100&limit=2").await;
    assert_eq!(emails(&first).len(), 2);
    let c = first["next_cursor"].as_str().unwrap();
    let second = page(&app, &format!("?min_points=100&limit=2&cursor={c}")).await;
    assert!(emails(&second).iter().all(|e| !emails(&first).contains(e)));
    let everyone = page(&app, "").await;
    assert_eq!(emails(&everyone).len(), 9);
    assert!(everyone.get("next_cursor").is_none());
}

#[tokio::test]
async fn limit_is_bounded() {
    let app = app().await;
    member(&app, Channel::Messenger, "ana@example.com", None, &[]).await;
    assert_eq!(emails(&page(&app, "?limit=1000").await).len(), 1);
    assert_eq!(emails(&page(&app, "?limit=1").await).len(), 1);
    for bad in ["0", "1001", "-1", "ten", ""] {
        let res = get(&app, &format!("?limit={bad}")).await;
        assert_eq!(res.status(), 400, "limit={bad}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], "bad_request");
        assert!(
            body["message"].as_str().unwrap().contains("`limit`"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn bad_parameters_are_400_naming_the_parameter() {
    let app = app().await;
    let cases = [
        ("?min_points=lots", "min_points"),
        ("?max_points=-5", "max_points"),
        ("?min_points=9&max_points=1", "min_points"),
        ("?can_redeem=yacht", "yacht"),
        ("?inactive_days=soon", "inactive_days"),
        ("?joined_after=last-week", "joined_after"),
        ("?joined_before=2024-02-30", "joined_before"),
        ("?channel=telegram", "channel"),
        ("?locale=klingon!", "locale"),
        ("?format=xml", "format"),
        ("?cursor=not-a-cursor", "cursor"),
        ("?cursor=00", "cursor"),
        ("?format=csv&limit=10", "limit"),
        ("?limt=10", "did you mean `limit`?"),
        ("?min_point=10", "did you mean `min_points`?"),
        ("?channel=messenger&channel=manychat", "channel"),
    ];
    for (query, named) in cases {
        let res = get(&app, query).await;
        assert_eq!(res.status(), 400, "{query}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], "bad_request", "{query}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(named), "{query}: {message}");
    }
}

#[tokio::test]
async fn every_members_route_needs_the_admin_token() {
    let app = app().await;
    for path in [
        "/admin/members",
        "/admin/members?format=csv",
        "/admin/members/1",
    ] {
        let res = app.client().get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 401, "{path}");
        let res = app
            .client()
            .get(app.url(path))
            .bearer_auth("nope")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{path}");
    }
}

#[tokio::test]
async fn a_member_by_id_is_shown_as_the_look_up_by_email_shows_them() {
    let app = app().await;
    let dora = member(&app, Channel::Manychat, "dora@example.com", None, &["400"]).await;
    let by_id = page(&app, &format!("/{}", dora.id)).await;
    let by_email = page(&app, "?email=dora@example.com").await;
    assert_eq!(by_id, by_email);
    assert_eq!(by_id["points"], 450);
    assert_eq!(by_id["ledger"].as_array().unwrap().len(), 2);
    let res = get(&app, &format!("/{}", dora.id.0 + 1000)).await;
    assert_eq!(res.status(), 404);
    let res = get(&app, "/dora").await;
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "bad_request");
    // With `email`, the listing's parameters change nothing: it is the look-up.
    let same = page(&app, "?email=dora@example.com&format=csv&limit=0").await;
    assert_eq!(same, by_email);
}
