//! The customer experience through the flow engine itself (no channel in between): what a
//! customer types, what the bot answers, and what the store holds afterwards. Channels are
//! tested on top of this in their own files.

use loyalty_bot::domain::{Catalogue, Channel, ChatIdentity, Points, Profile, Reward};
use loyalty_bot::flows::{payloads, Engine, Expect, Input, InputEvent, Turn};
use loyalty_bot::program::{Program, Rules};
use loyalty_bot::shop::FixtureShop;
use loyalty_bot::store::{LoyaltyStore, SledStore};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

struct Bot {
    engine: Engine,
    store: Arc<SledStore>,
    _dir: tempfile::TempDir,
}

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn bot() -> Bot {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(&dir.path().join("db"), 8 << 20).unwrap());
    let shop = Arc::new(FixtureShop::new(repo("fixtures/shop/orders.json")));
    let catalogue = Catalogue::new(vec![
        reward("free-mug", "Free mug", 200),
        reward("tote-bag", "Canvas tote bag", 500),
    ]);
    let rules = Rules {
        signup_bonus: Points(50),
        points_per_currency_unit: 1.into(),
        coupon_valid_days: 30,
        currency: "EUR".into(),
        auto_credit: false,
    };
    let program = Arc::new(Program::new(store.clone(), shop, catalogue, rules));
    let engine = Engine::load(program, None, "en").unwrap();
    Bot {
        engine,
        store,
        _dir: dir,
    }
}

fn reward(id: &str, title: &str, points: u64) -> Reward {
    Reward {
        id: id.into(),
        title: title.into(),
        points: Points(points),
        product_ids: vec![format!("{id}-product")],
        checkout_url: format!("https://shop.example/products/{id}"),
        value: None,
        discount: Default::default(),
    }
}

fn who(id: &str) -> ChatIdentity {
    ChatIdentity::new(Channel::Terminal, id).unwrap()
}

impl Bot {
    async fn send(&self, from: &str, event: InputEvent) -> Turn {
        self.send_as(from, event, Profile::default()).await
    }

    async fn send_as(&self, from: &str, event: InputEvent, profile: Profile) -> Turn {
        self.engine
            .converse(Input {
                who: who(from),
                profile,
                event,
                request_id: None,
            })
            .await
            .unwrap()
    }

    async fn text(&self, from: &str, text: &str) -> Turn {
        self.send(from, InputEvent::Text(text.into())).await
    }

    async fn join(&self, from: &str, email: &str) -> Turn {
        self.text(from, "join").await;
        self.send(from, InputEvent::Payload(payloads::JOIN_YES.into()))
            .await;
        self.text(from, email).await
    }

    fn balance(&self, from: &str) -> Option<Points> {
        self.store
            .member_by_identity(&who(from))
            .unwrap()
            .map(|a| a.balance)
    }
}

fn all_text(t: &Turn) -> String {
    t.replies
        .iter()
        .map(|r| r.text.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn joining_asks_for_consent_then_email_and_credits_the_bonus_once() {
    let bot = bot();
    let t = bot
        .send(
            "u1",
            InputEvent::GetStarted {
                referral: Some("join".into()),
            },
        )
        .await;
    assert!(
        all_text(&t).contains("join our rewards program"),
        "{}",
        all_text(&t)
    );
    let payloads: Vec<_> = t.replies[0]
        .choices
        .iter()
        .map(|c| c.payload.as_str())
        .collect();
    assert_eq!(payloads, [payloads::JOIN_YES, payloads::JOIN_NO]);

    let t = bot
        .send("u1", InputEvent::Payload(payloads::JOIN_YES.into()))
        .await;
    assert!(all_text(&t).contains("email"), "{}", all_text(&t));
    assert_eq!(t.awaiting.as_ref().map(|a| a.expect), Some(Expect::Email));

    let t = bot.text("u1", "not an email").await;
    assert!(all_text(&t).contains("doesn't look like an email"));
    assert_eq!(
        bot.balance("u1"),
        None,
        "nothing stored for an invalid email"
    );

    let t = bot.text("u1", "Jane@Example.com").await;
    let text = all_text(&t);
    assert!(
        text.contains("50 points") && text.contains("200 points") && text.contains("Free mug"),
        "{text}"
    );
    assert_eq!(t.balance, Some(Points(50)));
    assert!(t.points_changed);
    assert_eq!(bot.balance("u1"), Some(Points(50)));

    let t = bot.text("u1", "join").await;
    assert!(
        all_text(&t).contains("already a member"),
        "{}",
        all_text(&t)
    );
    assert_eq!(bot.balance("u1"), Some(Points(50)), "no second bonus");
}

#[tokio::test]
async fn saying_no_to_joining_stores_nothing() {
    let bot = bot();
    bot.text("u1", "join").await;
    let t = bot.text("u1", "no").await;
    assert!(all_text(&t).contains("No problem"), "{}", all_text(&t));
    assert!(t.awaiting.is_none());
    assert_eq!(bot.balance("u1"), None);
}

#[tokio::test]
async fn an_email_of_another_member_is_not_taken_over() {
    let bot = bot();
    bot.join("u1", "jane@example.com").await;
    let t = bot.join("u2", " JANE@example.com ").await;
    assert!(
        all_text(&t).contains("already linked to another"),
        "{}",
        all_text(&t)
    );
    assert_eq!(bot.balance("u2"), None);
    assert_eq!(bot.balance("u1"), Some(Points(50)));
}

#[tokio::test]
async fn a_typed_order_number_is_credited_once_with_floor_of_total() {
    let bot = bot();
    bot.join("u1", "jane@example.com").await;
    for typed in ["#1001", "order 1001", "1001"] {
        let t = bot.text("u1", typed).await;
        let text = all_text(&t);
        if typed == "#1001" {
            assert!(
                text.contains("earned 42 points") && text.contains("92 points"),
                "{text}"
            );
            assert!(text.contains("108 more points to Free mug"), "{text}");
        } else {
            assert!(text.contains("already credited to you"), "{typed}: {text}");
        }
    }
    assert_eq!(bot.balance("u1"), Some(Points(92)));
}

#[tokio::test]
async fn an_order_claimed_by_one_member_is_refused_to_another() {
    let bot = bot();
    bot.join("u1", "jane@example.com").await;
    bot.join("u2", "max@example.com").await;
    bot.text("u1", "1001").await;
    let t = bot.text("u2", "1001").await;
    assert!(
        all_text(&t).contains("already been claimed"),
        "{}",
        all_text(&t)
    );
    assert_eq!(bot.balance("u2"), Some(Points(50)));
}

#[tokio::test]
async fn orders_of_another_email_or_unpaid_earn_nothing_and_say_why() {
    let bot = bot();
    bot.join("u1", "max@example.com").await;
    let cases = [
        ("1001", "couldn't find order #1001"), // Jane's order
        ("9999", "couldn't find order #9999"),
        ("1004", "is not paid yet, so it doesn't earn points"),
    ];
    for (order, want) in cases {
        let t = bot.text("u1", order).await;
        assert!(all_text(&t).contains(want), "{order}: {}", all_text(&t));
    }
    assert_eq!(bot.balance("u1"), Some(Points(50)));
    bot.join("u3", "ana@example.com").await;
    for (order, want) in [("1005", "is cancelled, so"), ("1006", "is refunded, so")] {
        let t = bot.text("u3", order).await;
        assert!(all_text(&t).contains(want), "{order}: {}", all_text(&t));
    }
    let de = Profile {
        first_name: None,
        locale: Some("de_DE".into()),
    };
    let t = bot.send_as("u1", InputEvent::Text("1004".into()), de).await;
    assert!(
        all_text(&t).contains("ist noch nicht bezahlt"),
        "{}",
        all_text(&t)
    );
    assert_eq!(bot.balance("u3"), Some(Points(50)));
}

#[tokio::test]
async fn an_order_link_from_a_non_member_joins_first_then_claims() {
    let bot = bot();
    let t = bot
        .send("u1", InputEvent::Referral("order-1002".into()))
        .await;
    assert!(
        all_text(&t).contains("join our rewards program"),
        "{}",
        all_text(&t)
    );
    bot.text("u1", "yes").await;
    let t = bot.text("u1", "my email is jane@example.com").await;
    let text = all_text(&t);
    assert!(text.contains("Welcome"), "{text}");
    assert!(
        text.contains("earned 159 points") && text.contains("209 points"),
        "{text}"
    );
    assert!(text.contains("You can redeem now: Free mug"), "{text}");
    assert_eq!(bot.balance("u1"), Some(Points(209)));
}

#[tokio::test]
async fn balance_shows_points_affordable_rewards_and_gap() {
    let bot = bot();
    bot.join("u1", "ana@example.com").await;
    let t = bot.text("u1", "points").await;
    assert!(
        all_text(&t).contains("You have 50 points. 150 more points to Free mug."),
        "{}",
        all_text(&t)
    );
    bot.text("u1", "1007").await;
    let t = bot
        .send("u1", InputEvent::Payload(payloads::BALANCE.into()))
        .await;
    let text = all_text(&t);
    assert!(
        text.contains("260 points")
            && text.contains("You can redeem now: Free mug")
            && text.contains("240 more points to Canvas tote bag"),
        "{text}"
    );
    let menu: Vec<_> = t.replies[0]
        .choices
        .iter()
        .map(|c| c.payload.as_str())
        .collect();
    assert_eq!(menu, [payloads::CLAIM, payloads::BALANCE, payloads::REDEEM]);
}

#[tokio::test]
async fn german_keywords_and_locale_give_german_answers() {
    let bot = bot();
    let de = Profile {
        first_name: Some("Jürgen".into()),
        locale: Some("de_DE".into()),
    };
    let t = bot
        .send_as("u1", InputEvent::Text("mitmachen".into()), de.clone())
        .await;
    assert!(
        all_text(&t).contains("Hallo Jürgen! Möchtest du"),
        "{}",
        all_text(&t)
    );
    bot.send_as("u1", InputEvent::Text("ja".into()), de.clone())
        .await;
    let t = bot
        .send_as("u1", InputEvent::Text("ana@example.com".into()), de)
        .await;
    assert!(all_text(&t).contains("Willkommen"), "{}", all_text(&t));
    // Without a platform locale, the conversation stays German, also for tapped choices.
    let t = bot
        .send("u1", InputEvent::Payload(payloads::BALANCE.into()))
        .await;
    assert!(
        all_text(&t).contains("Du hast 50 Punkte"),
        "{}",
        all_text(&t)
    );

    // A member who joined in English and types a German keyword is answered in German from
    // then on, including the quick replies they tap next.
    bot.join("u2", "jane@example.com").await;
    let t = bot.text("u2", "punkte").await;
    assert!(
        all_text(&t).contains("Du hast 50 Punkte"),
        "{}",
        all_text(&t)
    );
    let t = bot
        .send("u2", InputEvent::Payload(payloads::BALANCE.into()))
        .await;
    assert!(
        all_text(&t).contains("Du hast 50 Punkte"),
        "{}",
        all_text(&t)
    );
    assert_eq!(t.replies[0].choices[1].title, "Meine Punkte");
}

#[tokio::test]
async fn redeeming_lists_rewards_then_issues_a_coupon_and_deducts_points() {
    let bot = bot();
    bot.join("u1", "ana@example.com").await;
    bot.text("u1", "1007").await; // 210 points -> 260
    let t = bot.text("u1", "rewards").await;
    let choices: Vec<_> = t.replies[0]
        .choices
        .iter()
        .map(|c| c.payload.as_str())
        .collect();
    assert_eq!(choices, ["REDEEM:free-mug", "REDEEM:tote-bag"]);
    let t = bot
        .send("u1", InputEvent::Payload("REDEEM:tote-bag".into()))
        .await;
    assert!(
        all_text(&t).contains("need 240 more points"),
        "{}",
        all_text(&t)
    );
    assert_eq!(bot.balance("u1"), Some(Points(260)));

    let t = bot
        .send("u1", InputEvent::Payload("REDEEM:free-mug".into()))
        .await;
    let text = all_text(&t);
    let code = text
        .split_whitespace()
        .find(|w| w.starts_with("MUG-"))
        .expect(&text)
        .trim_end_matches('.');
    assert_eq!(code.len(), "MUG-XXXX-XXXX-XXXX-XXXX".len(), "{code}");
    assert!(text.contains("60 points left"), "{text}");
    assert_eq!(bot.balance("u1"), Some(Points(60)));
    let button = &t.replies[0].buttons[0];
    assert!(format!("{button:?}").contains("https://shop.example/products/free-mug"));
    let member = bot.store.member_by_identity(&who("u1")).unwrap().unwrap();
    let coupons = bot.store.coupons_of(member.member.id).unwrap();
    assert_eq!(coupons.len(), 1);
    assert_eq!(coupons[0].code.as_str(), code);
    assert_eq!(
        (coupons[0].expires_at - coupons[0].created_at).num_days(),
        30
    );
}

#[tokio::test]
async fn anything_else_gets_help_with_the_main_actions() {
    let bot = bot();
    for input in ["blah", "🙂", "", "42"] {
        let t = bot.text("u1", input).await;
        assert_eq!(t.replies.len(), 1, "{input:?}");
        assert!(
            all_text(&t).contains("rewards assistant"),
            "{input:?}: {}",
            all_text(&t)
        );
        assert_eq!(t.replies[0].choices.len(), 3);
    }
    let t = bot
        .send("u1", InputEvent::Payload("SOMETHING_UNKNOWN".into()))
        .await;
    assert!(all_text(&t).contains("rewards assistant"));
}

#[tokio::test]
async fn a_command_while_a_question_waits_switches_flow() {
    let bot = bot();
    bot.join("u1", "jane@example.com").await;
    let t = bot.text("u1", "claim").await;
    assert_eq!(
        t.awaiting.as_ref().map(|a| a.expect),
        Some(Expect::OrderNumber)
    );
    let t = bot.text("u1", "points").await;
    assert!(
        all_text(&t).contains("You have 50 points"),
        "{}",
        all_text(&t)
    );
    assert!(t.awaiting.is_none());
}

#[tokio::test]
async fn stateless_runs_carry_values_and_report_what_they_wait_for() {
    let bot = bot();
    let w = ChatIdentity::new(Channel::Manychat, "1515862162").unwrap();
    let p = Profile::default();
    let t = bot
        .engine
        .run(
            "claim",
            &w,
            &p,
            BTreeMap::from([("order_number".into(), "1001".into())]),
        )
        .await
        .unwrap();
    let a = t.awaiting.expect("asks for the email first");
    assert_eq!(
        (a.flow.as_str(), a.var.as_str(), a.expect),
        ("claim", "email", Expect::Email)
    );
    assert_eq!(a.vars.get("order_number").map(String::as_str), Some("1001"));

    let mut vars = a.vars.clone();
    vars.insert("email".into(), "jane@example.com".into());
    let t = bot.engine.run("claim", &w, &p, vars).await.unwrap();
    assert_eq!(t.balance, Some(Points(92)));
    assert!(t.points_changed && t.awaiting.is_none());
    assert_eq!(
        bot.engine.route_payload("REDEEM:free-mug"),
        Some((
            "redeem".into(),
            BTreeMap::from([("reward_id".into(), "free-mug".into())])
        ))
    );
}

#[tokio::test]
async fn the_apology_for_a_failure_speaks_the_customers_language() {
    let bot = bot();
    let de = Profile {
        first_name: None,
        locale: Some("de_DE".into()),
    };
    assert!(bot.engine.apology(&de).text.contains("Entschuldigung"));
    assert!(bot
        .engine
        .apology(&Profile::default())
        .text
        .contains("Sorry"));
}

#[tokio::test]
async fn a_replayed_redeem_event_repeats_the_same_coupon_without_spending_twice() {
    let bot = bot();
    bot.join("u1", "ana@example.com").await;
    bot.text("u1", "1007").await; // 260 points
    let redeem = || {
        bot.engine.converse(Input {
            who: who("u1"),
            profile: Profile::default(),
            event: InputEvent::Payload("REDEEM:free-mug".into()),
            request_id: Some("page:m_event_1".into()),
        })
    };
    let first = all_text(&redeem().await.unwrap());
    let replay = all_text(&redeem().await.unwrap());
    let code = |t: &str| {
        t.split_whitespace()
            .find(|w| w.starts_with("MUG-"))
            .map(str::to_owned)
    };
    assert!(code(&first).is_some(), "{first}");
    assert_eq!(
        code(&first),
        code(&replay),
        "the replay shows the first coupon"
    );
    assert_eq!(bot.balance("u1"), Some(Points(60)), "points spent once");
}

/// The process died after the engine saved where the conversation stands and before the event
/// was marked done, so the same event runs again against the state it left behind.
#[tokio::test]
async fn a_typed_reward_replayed_after_its_question_closed_shows_the_same_coupon() {
    let bot = bot();
    bot.join("u1", "ana@example.com").await;
    bot.text("u1", "1007").await; // 260 points
    let t = bot.text("u1", "rewards").await;
    assert_eq!(t.awaiting.as_ref().map(|a| a.expect), Some(Expect::Choice));
    let typed = || {
        bot.engine.converse(Input {
            who: who("u1"),
            profile: Profile::default(),
            event: InputEvent::Text("Free mug".into()),
            request_id: Some("page:m_typed_1".into()),
        })
    };
    let first = all_text(&typed().await.unwrap());
    let replay = all_text(&typed().await.unwrap());
    let code = |t: &str| {
        t.split_whitespace()
            .find(|w| w.starts_with("MUG-"))
            .map(|w| w.trim_end_matches('.').to_owned())
    };
    assert!(code(&first).is_some(), "{first}");
    assert_eq!(code(&first), code(&replay), "the replay: {replay}");
    assert_eq!(bot.balance("u1"), Some(Points(60)), "points spent once");

    // A new message (another request) meets the state as it now is: no question open.
    let t = bot.text("u1", "Free mug").await;
    assert!(code(&all_text(&t)).is_none(), "{}", all_text(&t));
    assert_eq!(bot.balance("u1"), Some(Points(60)));
}

#[tokio::test]
async fn an_order_number_typed_while_a_choice_waits_is_claimed() {
    let bot = bot();
    bot.join("u1", "jane@example.com").await;
    let t = bot.text("u1", "rewards").await;
    assert_eq!(t.awaiting.as_ref().map(|a| a.expect), Some(Expect::Choice));
    let t = bot.text("u1", "1002").await;
    assert!(
        all_text(&t).contains("earned 159 points"),
        "{}",
        all_text(&t)
    );
    // While an order number is asked for, the same text is the answer.
    bot.text("u1", "claim").await;
    let t = bot.text("u1", "1001").await;
    assert!(
        all_text(&t).contains("earned 42 points"),
        "{}",
        all_text(&t)
    );
}

#[tokio::test]
async fn a_language_chosen_by_typing_outranks_the_platform_locale_but_greetings_do_not_choose() {
    let bot = bot();
    let en = Profile {
        first_name: None,
        locale: Some("en_US".into()),
    };
    let de = Profile {
        first_name: None,
        locale: Some("de_DE".into()),
    };
    bot.join("u1", "jane@example.com").await;
    let t = bot
        .send_as("u1", InputEvent::Text("punkte".into()), en.clone())
        .await;
    assert!(
        all_text(&t).contains("Du hast 50 Punkte"),
        "{}",
        all_text(&t)
    );
    let t = bot
        .send_as("u1", InputEvent::Payload(payloads::BALANCE.into()), en)
        .await;
    assert!(
        all_text(&t).contains("Du hast 50 Punkte"),
        "the choice sticks: {}",
        all_text(&t)
    );

    let t = bot
        .send_as("u2", InputEvent::Text("hi".into()), de.clone())
        .await;
    assert!(
        all_text(&t).contains("Prämien-Assistent"),
        "{}",
        all_text(&t)
    );
    let t = bot
        .send_as("u2", InputEvent::Payload(payloads::HELP.into()), de)
        .await;
    assert!(
        all_text(&t).contains("Prämien-Assistent"),
        "{}",
        all_text(&t)
    );
}
