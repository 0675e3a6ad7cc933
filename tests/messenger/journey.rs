//! Customer journeys over Messenger through the real application: webhook in, engine, sled
//! store and fake shop, Send API out. Also restarts and `kill -9` with work in flight.

use super::common::psid::{exchange, quick_reply_payloads, sent_to, text_of, until, Psid, PATH};
use super::common::{
    meta_signature, spawn_app, spawn_app_with, test_overrides, BinaryApp, FakeGraphApi, FakeShop,
};
use loyalty_bot::flows::payloads;

use std::time::Duration;

#[tokio::test]
async fn full_journey_join_claim_balance_and_redeem_over_messenger() {
    let app = spawn_app().await;
    app.shop
        .add_order("1001", "jane@example.com", "42.50", "paid");
    app.shop
        .add_order("1002", "jane@example.com", "159.90", "paid");
    let jane = Psid::new("6915800000000001");
    let say = |body| exchange(app.client(), app.address(), &app.graph_api, &jane, body);

    let r = say(jane.get_started("join")).await;
    assert!(
        text_of(&r).contains("join our rewards program"),
        "{}",
        text_of(&r)
    );
    assert_eq!(
        quick_reply_payloads(r.last().unwrap()),
        [payloads::JOIN_YES, payloads::JOIN_NO]
    );

    let r = say(jane.tap("Yes, join", payloads::JOIN_YES)).await;
    assert!(text_of(&r).contains("email"), "{}", text_of(&r));

    let r = say(jane.text("Jane@Example.com")).await;
    let t = text_of(&r);
    assert!(
        t.contains("Welcome") && t.contains("now have 50 points"),
        "{t}"
    );
    assert_eq!(app.balance_of("jane@example.com").await, 50);

    let r = say(jane.referral("order-1001")).await;
    let t = text_of(&r);
    assert!(
        t.contains("earned 42 points") && t.contains("92 points"),
        "{t}"
    );

    let r = say(jane.tap("My points", payloads::BALANCE)).await;
    assert!(
        text_of(&r).contains("You have 92 points"),
        "{}",
        text_of(&r)
    );

    say(jane.text("#1002")).await;
    assert_eq!(app.balance_of("jane@example.com").await, 251);

    let r = say(jane.tap("Rewards", payloads::REDEEM)).await;
    assert!(
        quick_reply_payloads(r.last().unwrap()).contains(&"REDEEM:free-mug".to_owned()),
        "{r:?}"
    );
    let r = say(jane.tap("Free mug", "REDEEM:free-mug")).await;
    let t = text_of(&r);
    assert!(t.contains("MUG-") && t.contains("51 points left"), "{t}");
    // The coupon reply carries a button, so it goes out as a button template.
    let template = &r.last().unwrap()["message"]["attachment"]["payload"];
    assert_eq!(template["template_type"], "button", "{r:?}");
    assert_eq!(template["buttons"][0]["type"], "web_url");
    assert_eq!(app.balance_of("jane@example.com").await, 51);
    assert_eq!(app.shop.coupons().len(), 1);
}

#[tokio::test]
async fn messenger_customers_are_greeted_by_name_in_their_profile_language() {
    let app = spawn_app().await;
    let juergen = Psid::new("6915800000000031");
    app.graph_api
        .set_profile(&juergen.id, "Jürgen", Some("de_DE"));
    let say = |body| exchange(app.client(), app.address(), &app.graph_api, &juergen, body);
    let r = say(juergen.get_started("join")).await;
    assert!(text_of(&r).contains("Hallo Jürgen!"), "{}", text_of(&r));
    say(juergen.text("hilfe")).await;
    assert_eq!(
        app.graph_api.profile_lookups(),
        1,
        "looked up once, then cached"
    );

    // A Page without the locale permission still gets the name.
    let ana = Psid::new("6915800000000032");
    app.graph_api.set_profile(&ana.id, "Ana", None);
    let r = exchange(
        app.client(),
        app.address(),
        &app.graph_api,
        &ana,
        ana.get_started("join"),
    )
    .await;
    assert!(text_of(&r).contains("Hi Ana!"), "{}", text_of(&r));

    // A failed look-up is not remembered: once Meta answers, the name is used.
    let max = Psid::new("6915800000000033");
    let say = |body| exchange(app.client(), app.address(), &app.graph_api, &max, body);
    let r = say(max.get_started("join")).await;
    assert!(text_of(&r).contains("Hi there!"), "{}", text_of(&r));
    app.graph_api.set_profile(&max.id, "Max", Some("en_US"));
    let r = say(max.text("join")).await;
    assert!(text_of(&r).contains("Hi Max!"), "{}", text_of(&r));
}

#[tokio::test]
async fn a_redelivered_claim_credits_and_answers_once() {
    let app = spawn_app().await;
    app.shop
        .add_order("1003", "max@example.com", "59.90", "paid");
    let max = Psid::new("6915800000000002");
    let say = |body| exchange(app.client(), app.address(), &app.graph_api, &max, body);
    say(max.text("join")).await;
    say(max.tap("Yes, join", payloads::JOIN_YES)).await;
    say(max.text("max@example.com")).await;

    let claim = max.text("1003");
    say(claim.clone()).await;
    let replies = sent_to(&app.graph_api, &max.id).len();
    for _ in 0..2 {
        let res = app.post_messenger_webhook(PATH, &claim).await;
        assert_eq!(res.status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        sent_to(&app.graph_api, &max.id).len(),
        replies,
        "no second answer"
    );
    assert_eq!(app.balance_of("max@example.com").await, 50 + 59);
}

/// Joins `who` with `email` over Messenger.
async fn join(app: &super::common::TestApp, who: &Psid, email: &str) {
    let say = |body| exchange(app.client(), app.address(), &app.graph_api, who, body);
    say(who.text("join")).await;
    say(who.tap("Yes, join", payloads::JOIN_YES)).await;
    say(who.text(email)).await;
}

#[tokio::test]
async fn a_hung_shop_holds_back_only_its_own_customer_when_one_event_is_worked_on_at_once() {
    // One place: without giving it up during a long shop call, Bea's claim would wait for
    // Ann's hung one. The grace is the default's.
    let app = spawn_app_with(|s| s.messenger.max_turns_at_once = 1).await;
    assert_eq!(app.settings.messenger.turn_grace.as_millis(), 5);
    app.shop
        .add_order("2001", "ann@example.com", "30.00", "paid");
    app.shop
        .add_order("2002", "bea@example.com", "40.00", "paid");
    let (ann, bea) = (Psid::new("6915800000000051"), Psid::new("6915800000000052"));
    join(&app, &ann, "ann@example.com").await;
    join(&app, &bea, "bea@example.com").await;
    // Under the shop's 1 s timeout in tests: Ann's claim is slow, not failed.
    app.shop.delay_order("2001", Duration::from_millis(900));

    let res = app.post_messenger_webhook(PATH, &ann.text("2001")).await;
    assert_eq!(res.status(), 200);
    until(
        || {
            app.shop
                .requests()
                .iter()
                .any(|r| r.body["order_number"] == "2001")
        },
        "Ann's order is being looked up",
    )
    .await;
    let (ann_before, bea_before) = (
        sent_to(&app.graph_api, &ann.id).len(),
        sent_to(&app.graph_api, &bea.id).len(),
    );
    let res = app.post_messenger_webhook(PATH, &bea.text("2002")).await;
    assert_eq!(res.status(), 200);
    until(
        || sent_to(&app.graph_api, &bea.id).len() > bea_before,
        "Bea's answer",
    )
    .await;
    assert_eq!(
        sent_to(&app.graph_api, &ann.id).len(),
        ann_before,
        "Bea was answered while Ann's shop call still hung"
    );
    until(
        || sent_to(&app.graph_api, &ann.id).len() > ann_before,
        "Ann's answer",
    )
    .await;
    let ann_said = text_of(&sent_to(&app.graph_api, &ann.id)[ann_before..]);
    assert!(ann_said.contains("earned 30 points"), "{ann_said}");
    assert_eq!(app.balance_of("ann@example.com").await, 80);
    assert_eq!(app.balance_of("bea@example.com").await, 90);
}

#[tokio::test]
async fn order_guessing_is_slowed_down_politely_in_chat() {
    let app = spawn_app_with(|s| {
        s.limits.failed_claims_per_member = loyalty_bot::limits::RateSettings {
            max: 2,
            window_secs: 1800,
        }
    })
    .await;
    app.shop
        .add_order("1004", "max@example.com", "59.90", "paid");
    let max = Psid::new("6915800000000004");
    let say = |body| exchange(app.client(), app.address(), &app.graph_api, &max, body);
    say(max.text("join")).await;
    say(max.tap("Yes, join", payloads::JOIN_YES)).await;
    say(max.text("max@example.com")).await;

    for guess in ["#9001", "#9002"] {
        let t = text_of(&say(max.text(guess)).await);
        assert!(t.contains("couldn't find order"), "{guess}: {t}");
    }
    let verified = app.shop.requests().len();
    // Even his real order waits now: the answer says so, and why, and that nothing changed.
    let r = say(max.text("#1004")).await;
    let t = text_of(&r);
    assert!(
        t.contains("paused claims for about 15 min") && t.contains("Nothing has changed"),
        "{t}"
    );
    assert!(
        !quick_reply_payloads(r.last().unwrap()).is_empty(),
        "the menu follows"
    );
    assert_eq!(
        app.shop.requests().len(),
        verified,
        "the shop was not asked"
    );
    assert_eq!(app.balance_of("max@example.com").await, 50);
}

#[tokio::test]
async fn redeeming_over_the_limit_is_answered_politely_in_chat_and_spends_nothing() {
    let app = spawn_app_with(|s| {
        s.limits.redemptions_per_member = loyalty_bot::limits::RateSettings {
            max: 1,
            window_secs: 3600,
        }
    })
    .await;
    app.shop
        .add_order("1005", "lea@example.com", "450.00", "paid");
    let lea = Psid::new("6915800000000005");
    let say = |body| exchange(app.client(), app.address(), &app.graph_api, &lea, body);
    say(lea.text("join")).await;
    say(lea.tap("Yes, join", payloads::JOIN_YES)).await;
    say(lea.text("lea@example.com")).await;
    say(lea.text("#1005")).await;
    assert_eq!(app.balance_of("lea@example.com").await, 500);

    let t = text_of(&say(lea.tap("Free mug", "REDEEM:free-mug")).await);
    assert!(t.contains("MUG-"), "the first one goes through: {t}");
    assert_eq!(app.balance_of("lea@example.com").await, 300);
    let coupons = app.shop.coupons().len();

    // The second within the hour: paused, said so with the balance she keeps, menu after it.
    let r = say(lea.tap("Free mug", "REDEEM:free-mug")).await;
    let t = text_of(&r);
    assert!(
        t.contains("paused rewards for about 60 min")
            && t.contains("No points were spent; you still have 300 points"),
        "{t}"
    );
    assert!(
        !quick_reply_payloads(r.last().unwrap()).is_empty(),
        "the menu follows"
    );
    assert_eq!(app.shop.coupons().len(), coupons, "no coupon asked for");
    assert_eq!(app.balance_of("lea@example.com").await, 300);
}

#[tokio::test]
async fn replies_held_back_by_a_graph_outage_are_sent_after_a_restart() {
    let mut app = spawn_app().await;
    let ana = Psid::new("6915800000000003");
    app.graph_api.go_down();
    let res = app.post_messenger_webhook(PATH, &ana.text("hello")).await;
    assert_eq!(res.status(), 200);
    until(
        || !app.graph_api.requests().is_empty(),
        "a first delivery attempt",
    )
    .await;
    app.stop().await;
    app.graph_api.come_back();
    app.restart().await;

    until(
        || !sent_to(&app.graph_api, &ana.id).is_empty(),
        "the reply sent after the restart",
    )
    .await;
    assert!(text_of(&sent_to(&app.graph_api, &ana.id)).contains("rewards assistant"));
}

/// Starts the real binary on `dir` with the test settings.
async fn binary(dir: &std::path::Path, shop: &FakeShop, graph: &FakeGraphApi) -> BinaryApp {
    BinaryApp::start(&test_overrides(dir, shop, graph)).await
}

#[tokio::test]
async fn kill_9_loses_neither_acknowledged_events_nor_queued_replies() {
    let (shop, graph) = (FakeShop::start().await, FakeGraphApi::start().await);
    shop.add_order("1001", "jane@example.com", "42.50", "paid");
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let jane = Psid::new("6915800000000004");

    let app = binary(dir.path(), &shop, &graph).await;
    let say = |body| exchange(&client, &app.address, &graph, &jane, body);
    say(jane.text("join")).await;
    say(jane.tap("Yes", payloads::JOIN_YES)).await;
    say(jane.text("jane@example.com")).await;
    let answered = sent_to(&graph, &jane.id).len();

    // The shop is slow, so the claim is acknowledged but still being processed: killed mid-way.
    shop.set_delay(Duration::from_secs(5));
    let claim = jane.text("1001");
    let res = client
        .post(format!("{}{PATH}", app.address))
        .header("X-Hub-Signature-256", meta_signature(&claim))
        .body(claim)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    app.kill9();
    shop.set_delay(Duration::ZERO);

    let app = binary(dir.path(), &shop, &graph).await;
    until(
        || sent_to(&graph, &jane.id).len() > answered,
        "the claim answered after the crash",
    )
    .await;
    let after = text_of(&sent_to(&graph, &jane.id)[answered..]);
    assert!(after.contains("earned 42 points"), "{after}");

    // Now the other way round: the reply is queued but Graph is down when the process dies.
    graph.go_down();
    let before = graph.requests().len();
    let ask = jane.text("points");
    let res = client
        .post(format!("{}{PATH}", app.address))
        .header("X-Hub-Signature-256", meta_signature(&ask))
        .body(ask)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    until(
        || graph.requests().len() > before,
        "a first delivery attempt",
    )
    .await;
    app.kill9();
    graph.come_back();
    let delivered = sent_to(&graph, &jane.id).len();
    let _app = binary(dir.path(), &shop, &graph).await;
    until(
        || sent_to(&graph, &jane.id).len() > delivered,
        "the queued reply sent after the crash",
    )
    .await;
    assert!(text_of(&sent_to(&graph, &jane.id)[delivered..]).contains("92 points"));
}
