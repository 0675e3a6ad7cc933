use super::*;
use crate::domain::{MemberId, Points};
use crate::flows::{Awaiting, Choice};
use serde_json::{json, Value};

const PUBLIC: &str = "https://loyalty.example";

/// A stand-in for the engine's router: `REDEEM:<id>` picks a reward, `LOYALTY_<FLOW>` starts one.
fn route(payload: &str) -> Option<(String, BTreeMap<String, String>)> {
    if let Some(id) = payload.strip_prefix("REDEEM:") {
        return Some((
            "redeem".into(),
            BTreeMap::from([("reward_id".into(), id.into())]),
        ));
    }
    let flow = payload.strip_prefix("LOYALTY_")?.to_ascii_lowercase();
    Some((flow, BTreeMap::new()))
}

fn to_json(turn: &Turn, profile: &Profile) -> Value {
    let cb = Callbacks {
        public_url: PUBLIC,
        bearer: "tok-123",
        subscriber_id: "1515862162",
        profile,
        route: &route,
    };
    serde_json::to_value(render(turn, &cb)).unwrap()
}

fn text(t: &str) -> Reply {
    Reply {
        text: t.into(),
        ..Reply::default()
    }
}

#[test]
fn balance_and_membership_become_field_and_tag_actions() {
    let turn = Turn {
        replies: vec![text("Welcome! You have 50 points.")],
        member: Some(MemberId(1)),
        balance: Some(Points(50)),
        points_changed: true,
        ..Turn::default()
    };
    let v = to_json(&turn, &Profile::default());
    assert_eq!(v["version"], "v2");
    assert_eq!(
        v["content"]["messages"][0],
        json!({"type": "text", "text": "Welcome! You have 50 points."})
    );
    assert_eq!(
        v["content"]["actions"],
        json!([
            {"action": "set_field_value", "field_name": "loyalty_points", "value": 50},
            {"action": "add_tag", "tag_name": "loyalty_member"}
        ])
    );
    assert!(v["content"].get("external_message_callback").is_none());
}

#[test]
fn choices_become_authenticated_callbacks_to_the_right_endpoint() {
    let turn = Turn {
        replies: vec![Reply {
            text: "Pick a reward".into(),
            choices: vec![
                Choice {
                    title: "Free mug (200 points)".into(),
                    payload: "REDEEM:free-mug".into(),
                },
                Choice {
                    title: "Balance".into(),
                    payload: "LOYALTY_BALANCE".into(),
                },
                Choice {
                    title: "Rewards".into(),
                    payload: "LOYALTY_REDEEM".into(),
                },
                Choice {
                    title: "Unknown".into(),
                    payload: "SOMETHING_ELSE".into(),
                },
            ],
            buttons: vec![],
        }],
        ..Turn::default()
    };
    let profile = Profile {
        first_name: None,
        locale: Some("de_DE".into()),
    };
    let v = to_json(&turn, &profile);
    let qr = v["content"]["quick_replies"].as_array().unwrap();
    assert_eq!(qr.len(), 3, "the unroutable choice is dropped: {qr:?}");
    let mut first = qr[0].clone();
    let request_id = first["payload"]
        .as_object_mut()
        .unwrap()
        .remove("request_id")
        .expect("a redeem choice carries a one-time request id");
    assert_eq!(request_id.as_str().unwrap().len(), 24);
    assert_eq!(
        first,
        json!({
            "type": "dynamic_block_callback",
            "caption": "Free m… (200 points)",
            "url": "https://loyalty.example/manychat/redeem",
            "method": "post",
            "headers": {"Authorization": "Bearer tok-123"},
            "payload": {"subscriber_id": "1515862162", "reward_id": "free-mug", "locale": "de_DE"}
        })
    );
    assert!(
        qr[1]["payload"].get("request_id").is_none(),
        "only redemptions need one"
    );
    assert_eq!(qr[1]["url"], "https://loyalty.example/manychat/balance");
    assert_eq!(qr[2]["url"], "https://loyalty.example/manychat/rewards");
}

#[test]
fn a_typed_question_routes_the_next_message_back_with_collected_vars() {
    let turn = Turn {
        replies: vec![text("What is your email?")],
        awaiting: Some(Awaiting {
            flow: "claim".into(),
            var: "email".into(),
            expect: Expect::Email,
            vars: BTreeMap::from([("order_number".into(), "1001".into())]),
        }),
        ..Turn::default()
    };
    let v = to_json(&turn, &Profile::default());
    assert_eq!(
        v["content"]["external_message_callback"],
        json!({
            "url": "https://loyalty.example/manychat/claim",
            "method": "post",
            "headers": {"Authorization": "Bearer tok-123"},
            "payload": {"subscriber_id": "1515862162", "order_number": "1001", "email": "{{last_input_text}}"},
            "timeout": 3600
        })
    );
}

#[test]
fn a_choice_question_sets_no_external_callback() {
    let turn = Turn {
        replies: vec![text("Join?")],
        awaiting: Some(Awaiting {
            flow: "join".into(),
            var: "consent".into(),
            expect: Expect::Choice,
            vars: BTreeMap::new(),
        }),
        ..Turn::default()
    };
    assert!(to_json(&turn, &Profile::default())["content"]
        .get("external_message_callback")
        .is_none());
}

#[test]
fn oversized_turns_are_cut_to_manychat_limits_without_losing_text() {
    let many_buttons: Vec<Button> = (0..5)
        .map(|i| Button::Url {
            title: format!("A very long link caption {i}"),
            url: format!("https://x.example/{i}"),
        })
        .collect();
    let mut replies: Vec<Reply> = (0..14).map(|i| text(&format!("line {i}"))).collect();
    replies[0].text = "x".repeat(5000);
    replies[1].buttons = many_buttons;
    replies[2].choices = (0..15)
        .map(|i| Choice {
            title: format!("Reward {i}"),
            payload: format!("REDEEM:r{i}"),
        })
        .collect();
    replies.push(text("   "));
    let turn = Turn {
        replies,
        ..Turn::default()
    };
    let v = to_json(&turn, &Profile::default());
    let content = &v["content"];
    let messages = content["messages"].as_array().unwrap();
    assert_eq!(messages.len(), MAX_MESSAGES);
    assert_eq!(
        messages[0]["text"].as_str().unwrap().chars().count(),
        MAX_TEXT_CHARS
    );
    let buttons = messages[1]["buttons"].as_array().unwrap();
    assert_eq!(buttons.len(), MAX_BUTTONS);
    assert!(buttons
        .iter()
        .all(|b| b["caption"].as_str().unwrap().chars().count() <= MAX_CAPTION_CHARS));
    assert_eq!(
        messages[9]["text"],
        "line 9\n\nline 10\n\nline 11\n\nline 12\n\nline 13"
    );
    assert_eq!(
        content["quick_replies"].as_array().unwrap().len(),
        MAX_QUICK_REPLIES
    );
    assert!(content["actions"].as_array().unwrap().len() <= MAX_ACTIONS);
}

#[test]
fn postback_buttons_call_back_and_url_buttons_open_links() {
    let reply = Reply {
        text: "Your coupon MUG-7QX4 is ready.".into(),
        choices: vec![],
        buttons: vec![
            Button::Url {
                title: "Use it".into(),
                url: "https://shop.example/products/mug".into(),
            },
            Button::Postback {
                title: "Balance".into(),
                payload: "LOYALTY_BALANCE".into(),
            },
        ],
    };
    let v = to_json(
        &Turn {
            replies: vec![reply],
            ..Turn::default()
        },
        &Profile::default(),
    );
    let buttons = &v["content"]["messages"][0]["buttons"];
    assert_eq!(
        buttons[0],
        json!({"type": "url", "caption": "Use it", "url": "https://shop.example/products/mug"})
    );
    assert_eq!(buttons[1]["type"], "dynamic_block_callback");
    assert_eq!(
        buttons[1]["url"],
        "https://loyalty.example/manychat/balance"
    );
}

#[test]
fn apology_is_a_plain_valid_v2_text() {
    let reply = Reply {
        text: "Entschuldigung".into(),
        ..Reply::default()
    };
    let v = serde_json::to_value(apology(&reply)).unwrap();
    assert_eq!(v["version"], "v2");
    assert_eq!(v["content"]["messages"][0]["text"], "Entschuldigung");
    assert_eq!(v["content"]["messages"].as_array().unwrap().len(), 1);
}

#[test]
fn rendered_shapes_match_the_reference_fixture() {
    // Every key we emit for a message, button, action and quick reply appears in the fixture.
    let fixture: Value = serde_json::from_str(include_str!(
        "../../../../fixtures/manychat/dynamic-block-v2-response.json"
    ))
    .unwrap();
    let fx = &fixture["content"];
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    let turn = Turn {
        replies: vec![Reply {
            text: "t".into(),
            choices: vec![Choice {
                title: "Claim".into(),
                payload: "LOYALTY_CLAIM".into(),
            }],
            buttons: vec![Button::Postback {
                title: "Redeem".into(),
                payload: "REDEEM:beans".into(),
            }],
        }],
        member: Some(MemberId(1)),
        balance: Some(Points(192)),
        ..Turn::default()
    };
    let v = to_json(&turn, &Profile::default());
    let ours = &v["content"];
    for k in keys(&ours["messages"][0]["buttons"][0]) {
        assert!(
            fx["messages"][1]["buttons"][0].get(&k).is_some(),
            "button key {k}"
        );
    }
    for k in keys(&ours["quick_replies"][0]) {
        assert!(
            fx["messages"][1]["buttons"][0].get(&k).is_some(),
            "quick reply key {k}"
        );
    }
    assert_eq!(keys(&ours["actions"][0]), keys(&fx["actions"][0]));
    assert_eq!(keys(&ours["actions"][1]), keys(&fx["actions"][2]));
}

#[test]
fn replies_with_nothing_renderable_are_left_out() {
    let replies = vec![
        text("  "),
        Reply {
            text: String::new(),
            choices: vec![],
            buttons: vec![Button::Postback {
                title: "?".into(),
                payload: "UNKNOWN".into(),
            }],
        },
        Reply {
            text: String::new(),
            choices: vec![],
            buttons: vec![Button::Url {
                title: "Open shop".into(),
                url: "https://shop.example".into(),
            }],
        },
    ];
    let v = to_json(
        &Turn {
            replies,
            ..Turn::default()
        },
        &Profile::default(),
    );
    let messages = v["content"]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(
        messages[0]["text"], "Open shop",
        "a button-only reply borrows its caption"
    );
}

#[test]
fn long_captions_keep_a_trailing_price_whole() {
    let cases = [
        ("Canvas tote bag (500)", "Canvas tote b… (500)"),
        ("Free mug (200)", "Free mug (200)"),
        ("A much too long caption here", "A much too long cap…"),
        (
            "Name (an extremely long parenthetical)",
            "Name (an extremely…",
        ),
    ];
    for (title, want) in cases {
        assert_eq!(caption(title), want, "{title}");
        assert!(caption(title).chars().count() <= MAX_CAPTION_CHARS);
    }
}

#[test]
fn debug_output_never_shows_the_bearer_token() {
    let turn = Turn {
        replies: vec![Reply {
            text: "t".into(),
            choices: vec![Choice {
                title: "Balance".into(),
                payload: "LOYALTY_BALANCE".into(),
            }],
            buttons: vec![],
        }],
        ..Turn::default()
    };
    let cb = Callbacks {
        public_url: PUBLIC,
        bearer: "tok-123",
        subscriber_id: "1",
        profile: &Profile::default(),
        route: &route,
    };
    let dbg = format!("{:?}", render(&turn, &cb));
    assert!(
        !dbg.contains("tok-123") && dbg.contains("[redacted]"),
        "{dbg}"
    );
}

#[test]
fn a_redeem_button_that_stays_in_the_chat_carries_no_one_time_id() {
    let turn = Turn {
        replies: vec![Reply {
            text: "Your mug is waiting".into(),
            choices: vec![],
            buttons: vec![Button::Postback {
                title: "Redeem".into(),
                payload: "REDEEM:free-mug".into(),
            }],
        }],
        ..Turn::default()
    };
    let v = to_json(&turn, &Profile::default());
    let button = &v["content"]["messages"][0]["buttons"][0];
    assert_eq!(button["url"], "https://loyalty.example/manychat/redeem");
    assert!(button["payload"].get("request_id").is_none(), "{button}");
}
