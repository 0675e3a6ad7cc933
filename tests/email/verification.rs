//! Verified joins: the code goes out by real SMTP, and every step a customer can take with it
//! (wrong, expired, locked, resend too soon, claims before it) on Messenger and ManyChat.

use super::common::psid::Psid;
use super::harness::{code_in, header, mail_app, subject, text_part, MailApp};
use serde_json::{json, Value};

fn another_code(code: &str) -> String {
    let n: u32 = code.parse().unwrap();
    format!("{:06}", (n + 1) % 1_000_000)
}

#[tokio::test]
async fn a_messenger_join_waits_for_the_emailed_code_and_refuses_claims_until_then() {
    let m = mail_app(true).await;
    m.app
        .shop
        .add_order("1001", "jane@example.com", "42.50", "paid");
    let jane = Psid::new("6915800000000101");
    let t = m.start_join(&jane, "Jane@Example.com").await;
    assert!(
        t.contains("6-digit code") && t.contains("jane@example.com"),
        "{t}"
    );
    assert!(
        m.member("jane@example.com").await.is_none(),
        "not a member before the code"
    );

    let mail = m.wait_for_mail("jane@example.com", 1).await;
    let code = code_in(&mail[0]);
    assert!(
        subject(&mail[0]).to_lowercase().contains("code"),
        "{}",
        subject(&mail[0])
    );
    assert!(
        header(&mail[0], "List-Unsubscribe").is_none(),
        "codes are not marketing"
    );

    // An order number while the code waits is not a claim: nothing is looked up or credited.
    let t = m.say(&jane, "1001").await;
    assert!(t.contains("6-digit code"), "{t}");
    assert!(m.app.shop.requests().is_empty(), "the shop was not asked");
    assert!(m.member("jane@example.com").await.is_none());

    let t = m.say(&jane, &another_code(&code)).await;
    assert!(
        t.contains("isn't right") && t.contains("4 tries left"),
        "{t}"
    );

    let t = m.say(&jane, "resend").await;
    assert!(
        t.contains("new one in"),
        "a new code waits out the minute: {t}"
    );
    assert_eq!(
        m.mail_to("jane@example.com").len(),
        1,
        "nothing sent during the cool-down"
    );

    m.advance(chrono::Duration::seconds(61));
    let t = m.say(&jane, "resend").await;
    assert!(t.contains("6-digit code"), "{t}");
    let mail = m.wait_for_mail("jane@example.com", 2).await;
    let fresh = code_in(&mail[1]);
    if fresh != code {
        let t = m.say(&jane, &code).await;
        assert!(t.contains("isn't right"), "the old code is gone: {t}");
    }

    let t = m
        .say(&jane, &format!("{} {}", &fresh[..3], &fresh[3..]))
        .await;
    assert!(t.contains("Welcome") && t.contains("50 points"), "{t}");
    assert_eq!(
        m.member("jane@example.com").await.unwrap().balance.value(),
        50
    );

    // A member now: the claim goes through.
    let t = m.say(&jane, "1001").await;
    assert!(t.contains("42"), "{t}");
    assert_eq!(
        m.member("jane@example.com").await.unwrap().balance.value(),
        92
    );

    // The code worked once.
    let t = m.say(&jane, &fresh).await;
    assert!(!t.contains("Welcome"), "{t}");
    assert_eq!(
        m.member("jane@example.com").await.unwrap().balance.value(),
        92
    );
}

#[tokio::test]
async fn an_expired_code_is_refused_and_a_new_one_works() {
    let m = mail_app(true).await;
    let bob = Psid::new("6915800000000102");
    m.start_join(&bob, "bob@example.com").await;
    let code = code_in(&m.wait_for_mail("bob@example.com", 1).await[0]);
    m.advance(chrono::Duration::minutes(16));
    let t = m.say(&bob, &code).await;
    assert!(t.contains("expired"), "{t}");
    assert!(m.member("bob@example.com").await.is_none());

    let t = m.say(&bob, "new code").await;
    assert!(t.contains("6-digit code"), "{t}");
    let code = code_in(&m.wait_for_mail("bob@example.com", 2).await[1]);
    let t = m.say(&bob, &code).await;
    assert!(t.contains("Welcome"), "{t}");
}

#[tokio::test]
async fn five_wrong_codes_lock_it_even_against_the_right_one() {
    let m = mail_app(true).await;
    let cara = Psid::new("6915800000000103");
    m.start_join(&cara, "cara@example.com").await;
    let code = code_in(&m.wait_for_mail("cara@example.com", 1).await[0]);
    let wrong = another_code(&code);
    for left in (1..5).rev() {
        let t = m.say(&cara, &wrong).await;
        assert!(t.contains(&format!("{left} tries left")), "{t}");
    }
    let t = m.say(&cara, &wrong).await;
    assert!(t.contains("too many times"), "{t}");
    let t = m.say(&cara, &code).await;
    assert!(
        t.contains("too many times"),
        "locked for the right code too: {t}"
    );
    assert!(m.member("cara@example.com").await.is_none());
}

#[tokio::test]
async fn the_code_question_speaks_german_to_german_customers() {
    let m = mail_app(true).await;
    let dora = Psid::new("6915800000000104");
    m.app
        .graph_api
        .set_profile("6915800000000104", "Dora", Some("de_DE"));
    let t = m.start_join(&dora, "dora@example.de").await;
    assert!(t.contains("6-stelligen Code"), "{t}");
    let mail = m.wait_for_mail("dora@example.de", 1).await;
    assert!(
        text_part(&mail[0]).contains("Code"),
        "{}",
        text_part(&mail[0])
    );
}

async fn manychat(m: &MailApp, path: &str, body: &Value) -> Value {
    let res = m.app.post_manychat(path, body).await;
    assert_eq!(res.status(), 200, "POST {path}");
    let v: Value = res.json().await.unwrap();
    v["content"].clone()
}

/// What ManyChat does with an `external_message_callback`: POSTs its payload with its headers,
/// `{{last_input_text}}` replaced by what the contact typed.
async fn type_into(m: &MailApp, content: &Value, typed: &str) -> Value {
    let cb = &content["external_message_callback"];
    let url = cb["url"].as_str().expect("a callback waits for typed text");
    let path = &url[url.find("/manychat/").unwrap()..];
    let mut payload = cb["payload"].clone();
    for v in payload.as_object_mut().unwrap().values_mut() {
        if v == "{{last_input_text}}" {
            *v = json!(typed);
        }
    }
    let mut req = m.app.client().post(m.app.url(path)).json(&payload);
    for (k, v) in cb["headers"].as_object().unwrap() {
        req = req.header(k.as_str(), v.as_str().unwrap());
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.json::<Value>().await.unwrap()["content"].clone()
}

fn texts(content: &Value) -> String {
    content["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn a_manychat_join_takes_the_code_through_the_typed_answer_callback() {
    let m = mail_app(true).await;
    m.app
        .shop
        .add_order("1001", "emma@example.com", "42.50", "paid");
    let body = json!({"id": "8100000000000001", "email": "emma@example.com", "first_name": "Emma"});
    let content = manychat(&m, "/manychat/join", &body).await;
    assert!(texts(&content).contains("6-digit code"), "{content}");
    assert!(m.member("emma@example.com").await.is_none());
    let code = code_in(&m.wait_for_mail("emma@example.com", 1).await[0]);

    // Claims are refused before the code: the join is asked for again, nothing is credited.
    let claim = json!({"id": "8100000000000001", "order_number": "1001"});
    manychat(&m, "/manychat/claim", &claim).await;
    assert!(m.member("emma@example.com").await.is_none());
    assert!(m.app.shop.requests().is_empty(), "the shop was not asked");

    let content = type_into(&m, &content, &another_code(&code)).await;
    assert!(texts(&content).contains("4 tries left"), "{content}");
    let content = type_into(&m, &content, "resend").await;
    assert!(texts(&content).contains("new one in"), "{content}");
    let content = type_into(&m, &content, &code).await;
    assert!(texts(&content).contains("Welcome"), "{content}");
    assert!(content.get("external_message_callback").is_none());
    assert_eq!(
        m.member("emma@example.com").await.unwrap().balance.value(),
        50
    );
}
