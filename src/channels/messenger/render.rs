//! Renders engine replies as Send API request bodies, within Messenger's limits: text split at
//! 2000, button-template text at 640, 1–3 buttons, ≤ 13 quick replies with titles ≤ 20 and
//! payloads ≤ 1000. Lengths are counted in UTF-16 units (what Meta's limits are measured in is
//! not documented; UTF-16 is never more lenient than counting characters).

use crate::flows::{Button, Choice, Reply};
use serde_json::{json, Value};

pub const TEXT_LIMIT: usize = 2000;
pub const TEMPLATE_TEXT_LIMIT: usize = 640;
pub const QUICK_REPLY_LIMIT: usize = 13;
pub const BUTTON_LIMIT: usize = 3;
pub const TITLE_LIMIT: usize = 20;
pub const PAYLOAD_LIMIT: usize = 1000;

/// Stands in for empty text, which the Send API refuses next to quick replies or buttons.
const FILLER: &str = "\u{2026}";

/// The Send API bodies for one reply, in the order they must be delivered.
pub fn render(psid: &str, reply: &Reply) -> Vec<Value> {
    let quick_replies = quick_replies(&reply.choices);
    let buttons = buttons(&reply.buttons);
    let has_extras = quick_replies.is_some() || buttons.is_some();
    let text = match reply.text.trim() {
        "" if has_extras => FILLER,
        "" => return Vec::new(),
        t => t,
    };
    let limit = if buttons.is_some() {
        TEMPLATE_TEXT_LIMIT
    } else {
        TEXT_LIMIT
    };
    let mut chunks = split_text(text, limit);
    let last = chunks.pop().unwrap_or_else(|| FILLER.to_owned());
    let mut messages: Vec<Value> = chunks.into_iter().map(|t| json!({ "text": t })).collect();
    let mut final_message = match buttons {
        Some(buttons) => json!({ "attachment": { "type": "template", "payload": {
            "template_type": "button", "text": last, "buttons": buttons } } }),
        None => json!({ "text": last }),
    };
    if let Some(qr) = quick_replies {
        final_message["quick_replies"] = qr;
    }
    messages.push(final_message);
    messages
        .into_iter()
        .map(|message| json!({ "recipient": { "id": psid }, "messaging_type": "RESPONSE", "message": message }))
        .collect()
}

fn quick_replies(choices: &[Choice]) -> Option<Value> {
    let list: Vec<Value> = choices
        .iter()
        // A cut payload would mean something else, so an oversized one is left out instead.
        .filter(|c| !c.payload.is_empty() && c.payload.len() <= PAYLOAD_LIMIT)
        .take(QUICK_REPLY_LIMIT)
        .map(|c| json!({ "content_type": "text", "title": title(&c.title, &c.payload), "payload": c.payload }))
        .collect();
    if list.len() < choices.len() {
        tracing::warn!(
            channel = "messenger",
            offered = choices.len(),
            kept = list.len(),
            "quick replies left out"
        );
    }
    (!list.is_empty()).then_some(Value::Array(list))
}

fn buttons(buttons: &[Button]) -> Option<Value> {
    let list: Vec<Value> = buttons
        .iter()
        .filter_map(|b| match b {
            Button::Url { title: t, url } if !url.is_empty() => {
                Some(json!({ "type": "web_url", "url": url, "title": title(t, url) }))
            }
            Button::Postback { title: t, payload }
                if !payload.is_empty() && payload.len() <= PAYLOAD_LIMIT =>
            {
                Some(json!({ "type": "postback", "title": title(t, payload), "payload": payload }))
            }
            _ => None,
        })
        .take(BUTTON_LIMIT)
        .collect();
    if list.len() < buttons.len() {
        tracing::warn!(
            channel = "messenger",
            offered = buttons.len(),
            kept = list.len(),
            "buttons left out"
        );
    }
    (!list.is_empty()).then_some(Value::Array(list))
}

fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// The longest prefix of `s` (on a character boundary) that is at most `limit` UTF-16 units.
fn prefix_within(s: &str, limit: usize) -> &str {
    let mut units = 0;
    for (i, c) in s.char_indices() {
        units += c.len_utf16();
        if units > limit {
            return &s[..i];
        }
    }
    s
}

/// A title within [`TITLE_LIMIT`], cut with an ellipsis; falls back to `fallback` when empty.
fn title(raw: &str, fallback: &str) -> String {
    let t = match raw.trim() {
        "" => fallback.trim(),
        t => t,
    };
    let t = crate::flows::turn::short_title(t, TITLE_LIMIT);
    if utf16_len(&t) <= TITLE_LIMIT {
        return t;
    }
    // Characters outside the BMP count twice for Meta: cut again by UTF-16 units.
    format!("{}{FILLER}", prefix_within(&t, TITLE_LIMIT - 1).trim_end())
}

/// Splits text into pieces of at most `limit` UTF-16 units, preferring paragraph, line and word
/// breaks in the second half of a piece, so no piece ends up tiny.
pub fn split_text(text: &str, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while utf16_len(rest) > limit {
        let window = prefix_within(rest, limit);
        let cut = ["\n\n", "\n", " "]
            .iter()
            .filter_map(|sep| window.rfind(sep))
            .find(|&at| at >= window.len() / 2)
            .unwrap_or(window.len());
        let (piece, tail) = rest.split_at(cut);
        out.push(piece.trim_end().to_owned());
        rest = tail.trim_start();
    }
    if !rest.is_empty() {
        out.push(rest.to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice(title: &str, payload: &str) -> Choice {
        Choice {
            title: title.into(),
            payload: payload.into(),
        }
    }

    #[test]
    fn short_text_with_choices_matches_the_send_api_shape() {
        let reply = Reply {
            text: "You have 150 points. What would you like to do?".into(),
            choices: vec![
                choice("Claim an order", "LOYALTY_CLAIM_ORDER"),
                choice("Redeem points", "LOYALTY_REDEEM"),
            ],
            buttons: vec![],
        };
        let bodies = render("6915800000000001", &reply);
        let mut expected: Value = serde_json::from_str(include_str!(
            "../../../fixtures/messenger/messenger-send-quick-replies-request.json"
        ))
        .unwrap();
        // The fixture also offers the `user_email` quick reply, which the engine does not use.
        expected["message"]["quick_replies"]
            .as_array_mut()
            .unwrap()
            .pop();
        assert_eq!(bodies, vec![expected]);
    }

    #[test]
    fn long_text_is_split_at_word_breaks_and_choices_go_last() {
        let text = "word ".repeat(1000); // 5000 characters
        let reply = Reply {
            text,
            choices: vec![choice("Yes", "Y")],
            buttons: vec![],
        };
        let bodies = render("1", &reply);
        assert_eq!(bodies.len(), 3);
        for b in &bodies {
            let t = b["message"]["text"].as_str().unwrap();
            assert!(
                utf16_len(t) <= TEXT_LIMIT && t.ends_with("word"),
                "{}",
                t.len()
            );
        }
        assert!(bodies[0]["message"].get("quick_replies").is_none());
        assert_eq!(bodies[2]["message"]["quick_replies"][0]["payload"], "Y");
    }

    #[test]
    fn text_without_spaces_is_cut_hard_and_emoji_are_not_broken() {
        let text = "\u{1F600}".repeat(1500); // 3000 UTF-16 units
        let parts = split_text(&text, TEXT_LIMIT);
        assert_eq!(
            parts.iter().map(|p| utf16_len(p)).collect::<Vec<_>>(),
            [2000, 1000]
        );
        assert_eq!(parts.concat(), text);
    }

    #[test]
    fn quick_replies_are_capped_and_titles_truncated() {
        let mut choices: Vec<Choice> = (0..15)
            .map(|i| choice(&format!("Option number {i} is long"), &format!("P{i}")))
            .collect();
        choices.insert(0, choice("Too big", &"x".repeat(1001)));
        let bodies = render(
            "1",
            &Reply {
                text: "Pick".into(),
                choices,
                buttons: vec![],
            },
        );
        let qr = bodies[0]["message"]["quick_replies"].as_array().unwrap();
        assert_eq!(qr.len(), QUICK_REPLY_LIMIT);
        assert_eq!(qr[0]["payload"], "P0");
        let t = qr[0]["title"].as_str().unwrap();
        assert_eq!((t, utf16_len(t)), ("Option number 0 is\u{2026}", 19));
    }

    #[test]
    fn buttons_make_a_button_template_with_640_char_text() {
        let buttons = vec![
            Button::Url {
                title: "Open the shop".into(),
                url: "https://shop.example/x".into(),
            },
            Button::Postback {
                title: "My points".into(),
                payload: "LOYALTY_BALANCE".into(),
            },
            Button::Postback {
                title: "Help".into(),
                payload: "LOYALTY_HELP".into(),
            },
            Button::Postback {
                title: "Fourth".into(),
                payload: "X".into(),
            },
        ];
        let reply = Reply {
            text: "a ".repeat(500),
            choices: vec![choice("Hi", "H")],
            buttons,
        };
        let bodies = render("1", &reply);
        assert_eq!(
            bodies.len(),
            2,
            "1000 chars: one text message, then the template"
        );
        assert!(bodies[0]["message"]["text"].is_string());
        let payload = &bodies[1]["message"]["attachment"]["payload"];
        assert_eq!(payload["template_type"], "button");
        assert!(utf16_len(payload["text"].as_str().unwrap()) <= TEMPLATE_TEXT_LIMIT);
        assert_eq!(payload["buttons"].as_array().unwrap().len(), BUTTON_LIMIT);
        assert_eq!(
            payload["buttons"][0],
            json!({"type":"web_url","url":"https://shop.example/x","title":"Open the shop"})
        );
        assert_eq!(
            payload["buttons"][1],
            json!({"type":"postback","title":"My points","payload":"LOYALTY_BALANCE"})
        );
        assert_eq!(bodies[1]["message"]["quick_replies"][0]["payload"], "H");
        assert_eq!(bodies[1]["messaging_type"], "RESPONSE");
    }

    #[test]
    fn empty_reply_renders_nothing_but_empty_text_with_choices_gets_a_filler() {
        assert!(render("1", &Reply::default()).is_empty());
        let bodies = render(
            "1",
            &Reply {
                text: " ".into(),
                choices: vec![choice("A", "A")],
                buttons: vec![],
            },
        );
        assert_eq!(bodies[0]["message"]["text"], FILLER);
    }
}
