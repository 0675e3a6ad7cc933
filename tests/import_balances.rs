//! Balances imported from another program (`loyalty_bot::imports`, what `loyalty-bot
//! import-balances FILE.csv` runs on a stopped store): a balance waits for its email and is
//! the customer's, on top of the signup bonus, when they join in chat with it; an existing
//! member is credited at once; a second run imports nothing twice; a file with invalid rows
//! writes nothing and names their lines.

mod common;

use chrono::{DateTime, Utc};
use common::{spawn_app, TestApp};
use loyalty_bot::domain::{Channel, ChatIdentity, Email};
use loyalty_bot::imports::{import_balances, ImportError, ImportReport};
use loyalty_bot::store::SledStore;
use serde_json::{json, Value};

const CONTACT: &str = include_str!("../fixtures/manychat/full-contact-data-request.json");

/// Stops the app, imports `csv` into its store as the command line does, and starts it again.
async fn import(app: &mut TestApp, csv: &str) -> Result<ImportReport, ImportError> {
    app.stop().await;
    let path = app.settings.store.path.clone();
    let csv = csv.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        let store = SledStore::open(&path, 8 << 20).expect("the stopped store opens");
        let mut seen = Vec::new();
        let out = import_balances(&store, csv.as_bytes(), Utc::now(), &mut |n| seen.push(n));
        store.close().expect("the store closes");
        if let Ok(report) = &out {
            assert_eq!(seen.last().copied().unwrap_or(0), report.rows, "progress");
        }
        out
    })
    .await
    .unwrap();
    app.restart().await;
    out
}

/// A ManyChat subscriber joins with `email` through the Dynamic Block endpoint.
async fn join_in_manychat(app: &TestApp, subscriber: &str, email: &str) {
    let mut body: Value = serde_json::from_str(CONTACT).unwrap();
    body["id"] = json!(subscriber);
    body["email"] = Value::Null;
    body["custom_fields"] = json!({"loyalty_points": 0, "email_input": email});
    let res = app.post_manychat("/manychat/join", &body).await;
    assert_eq!(res.status(), 200);
}

async fn balance_in_manychat(app: &TestApp, subscriber: &str) -> u64 {
    let who = ChatIdentity::new(Channel::Manychat, subscriber).unwrap();
    let account = app.program().account(&who).await.unwrap();
    account.expect("a member").balance.value()
}

/// The member's ledger kinds and points, per the admin API.
async fn ledger(app: &TestApp, email: &str) -> Vec<(String, i64)> {
    let res = app.get_admin_member(email).await;
    assert_eq!(res.status(), 200, "{email} is a member");
    let body: Value = res.json().await.unwrap();
    body["ledger"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_owned(),
                e["points"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn entries(list: &[(&str, i64)]) -> Vec<(String, i64)> {
    list.iter().map(|(k, p)| ((*k).to_owned(), *p)).collect()
}

#[tokio::test]
async fn an_imported_balance_is_the_customers_on_top_of_the_bonus_when_they_join_in_chat() {
    let mut app = spawn_app().await;
    let csv = "email,points,joined_at\nJane@Example.com,120,2019-05-01\nbo@example.com,7,\n";
    let report = import(&mut app, csv).await.unwrap();
    assert_eq!(
        report,
        ImportReport {
            rows: 2,
            waiting: 2,
            ..ImportReport::default()
        }
    );
    assert_eq!(app.get_admin_member("jane@example.com").await.status(), 404);

    join_in_manychat(&app, "1001", "jane@example.com").await;
    assert_eq!(balance_in_manychat(&app, "1001").await, 170);
    let want = entries(&[("signup_bonus", 50), ("import", 120)]);
    assert_eq!(ledger(&app, "jane@example.com").await, want);

    let store = app.program().store().clone();
    let email = Email::parse("jane@example.com").unwrap();
    let account = store.member_by_email(&email).unwrap().unwrap();
    let since: DateTime<Utc> = "2019-05-01T00:00:00Z".parse().unwrap();
    assert_eq!(account.member.joined_at, since, "member since carries over");
    let record = store.imported_balance(&email).unwrap().unwrap();
    assert_eq!(record.applied.map(|a| a.member), Some(account.member.id));
    let all = store.imported_balances(None, 10).unwrap();
    let emails: Vec<&str> = all.iter().map(|b| b.email.as_str()).collect();
    assert_eq!(emails, ["bo@example.com", "jane@example.com"]);
    let after_bo = store.imported_balances(Some(&all[0].email), 10).unwrap();
    assert_eq!(after_bo, all[1..]);
}

#[tokio::test]
async fn an_existing_member_is_credited_at_once() {
    let mut app = spawn_app().await;
    join_in_manychat(&app, "1001", "jane@example.com").await;
    let csv = "email,points\njane@example.com,120\nbo@example.com,7\n";
    let report = import(&mut app, csv).await.unwrap();
    assert_eq!((report.credited, report.waiting), (1, 1));
    assert_eq!(balance_in_manychat(&app, "1001").await, 170);
    let want = entries(&[("signup_bonus", 50), ("import", 120)]);
    assert_eq!(ledger(&app, "jane@example.com").await, want);
}

#[tokio::test]
async fn importing_the_same_file_twice_imports_nothing_twice() {
    let mut app = spawn_app().await;
    join_in_manychat(&app, "1001", "jane@example.com").await;
    let csv = "email,points\njane@example.com,120\nbo@example.com,7\n";
    import(&mut app, csv).await.unwrap();
    let again = import(&mut app, csv).await.unwrap();
    assert_eq!(
        again,
        ImportReport {
            rows: 2,
            already_imported: 2,
            ..ImportReport::default()
        }
    );
    join_in_manychat(&app, "2002", "bo@example.com").await;
    // Once applied, still imported: a third run adds nothing either.
    let third = import(&mut app, csv).await.unwrap();
    assert_eq!(third.already_imported, 2);
    assert_eq!(balance_in_manychat(&app, "1001").await, 170);
    assert_eq!(balance_in_manychat(&app, "2002").await, 57);
}

#[tokio::test]
async fn invalid_rows_are_reported_with_their_line_numbers_and_nothing_is_written() {
    let mut app = spawn_app().await;
    join_in_manychat(&app, "1001", "jane@example.com").await;
    let csv = "email,points,joined_at\n\
               jane@example.com,120,\n\
               bo@example,7,\n\
               cy@example.com,-3,\n\
               JANE@example.com,5,\n\
               dee@example.com,10,someday\n";
    let Err(ImportError::InvalidRows { rows, errors }) = import(&mut app, csv).await else {
        panic!("the file should be refused");
    };
    assert_eq!(rows, 5);
    let lines: Vec<u64> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [3, 4, 5, 6], "{errors:#?}");
    assert_eq!(
        balance_in_manychat(&app, "1001").await,
        50,
        "the valid row too"
    );
    let store = app.program().store().clone();
    assert!(store.imported_balances(None, 10).unwrap().is_empty());
}
