//! Renders an engine [`Turn`] as a Dynamic Block v2 response within ManyChat's limits
//! (≤ 10 messages, ≤ 11 quick replies, ≤ 5 actions, ≤ 3 buttons per message). Choices and
//! postback buttons become `dynamic_block_callback`s back to our endpoints; a paused question
//! becomes an `external_message_callback` so the next typed message reaches us.

use super::endpoint::Endpoint;
use super::v2::{Action, Call, Content, ExternalCallback, Message, Tappable, V2};
use crate::domain::Profile;
use crate::flows::{Button, Expect, Reply, Turn, REQUEST_ID};
use std::collections::BTreeMap;

pub const MAX_MESSAGES: usize = 10;
pub const MAX_QUICK_REPLIES: usize = 11;
pub const MAX_ACTIONS: usize = 5;
pub const MAX_BUTTONS: usize = 3;
/// Messenger cuts captions at 20 characters; staying under keeps them whole everywhere.
pub const MAX_CAPTION_CHARS: usize = 20;
/// Messenger's text limit is 2000 characters.
pub const MAX_TEXT_CHARS: usize = 2000;
/// How long ManyChat routes typed messages to us after a question: one hour, so a customer who
/// wanders off is not trapped in our step for the full day ManyChat allows.
pub const CALLBACK_TIMEOUT_SECS: u32 = 3600;
/// The custom field (type Number) that mirrors the balance in ManyChat.
pub const POINTS_FIELD: &str = "loyalty_points";
pub const MEMBER_TAG: &str = "loyalty_member";

/// Maps an engine payload to the flow and vars it starts (the engine's `route_payload`).
pub type Router<'a> = &'a dyn Fn(&str) -> Option<(String, BTreeMap<String, String>)>;

/// Everything needed to point callbacks back at us for one subscriber.
pub struct Callbacks<'a> {
    /// `server.public_url` without a trailing slash.
    pub public_url: &'a str,
    pub bearer: &'a str,
    pub subscriber_id: &'a str,
    pub profile: &'a Profile,
    pub route: Router<'a>,
}

impl Callbacks<'_> {
    /// A call to `endpoint` carrying `vars`, our subscriber id and the profile (so a callback
    /// keeps answering in the contact's language).
    fn call(&self, endpoint: Endpoint, vars: BTreeMap<String, String>) -> Call {
        let mut payload = vars;
        if let Some(locale) = &self.profile.locale {
            payload.insert("locale".into(), locale.clone());
        }
        if let Some(name) = &self.profile.first_name {
            payload.insert("first_name".into(), name.clone());
        }
        payload.insert("subscriber_id".into(), self.subscriber_id.to_owned());
        // The token travels inside ManyChat's stored response so that its callback
        // authenticates like any other request; it never leaves ManyChat's side.
        let headers = BTreeMap::from([("Authorization", format!("Bearer {}", self.bearer))]);
        Call {
            url: format!("{}{}", self.public_url, endpoint.path()),
            method: "post",
            headers,
            payload,
        }
    }

    /// A callback tappable for an engine payload, or `None` (logged) if no endpoint serves it.
    /// `one_time`: a quick reply, which disappears once tapped; a button stays in the chat and
    /// may rightly be tapped again later, so it gets no one-time request id.
    fn tappable(&self, title: &str, payload: &str, one_time: bool) -> Option<Tappable> {
        let routed = (self.route)(payload)
            .and_then(|(flow, vars)| Some((Endpoint::for_flow(&flow, &vars)?, vars)));
        let Some((endpoint, mut vars)) = routed else {
            tracing::warn!(
                payload,
                "no ManyChat endpoint serves this payload; choice dropped"
            );
            return None;
        };
        if one_time && endpoint == Endpoint::Redeem {
            // A one-time id per offered choice: a double tap, or ManyChat retrying the
            // callback, redeems once and shows the same coupon again.
            vars.insert(REQUEST_ID.to_owned(), one_time_id());
        }
        Some(Tappable::DynamicBlockCallback {
            caption: caption(title),
            call: self.call(endpoint, vars),
        })
    }
}

fn one_time_id() -> String {
    use rand::Rng;
    let bytes: [u8; 12] = rand::rngs::OsRng.gen();
    hex::encode(bytes)
}

pub fn render(turn: &Turn, cb: &Callbacks<'_>) -> V2 {
    let mut quick_replies: Vec<Tappable> = Vec::new();
    let mut seen = Vec::new();
    for choice in turn.replies.iter().flat_map(|r| &r.choices) {
        if quick_replies.len() == MAX_QUICK_REPLIES || seen.contains(&&choice.payload) {
            continue;
        }
        seen.push(&choice.payload);
        quick_replies.extend(cb.tappable(&choice.title, &choice.payload, true));
    }
    V2 {
        version: "v2",
        content: Content {
            messages: messages(&turn.replies, cb),
            actions: actions(turn),
            quick_replies,
            external_message_callback: external_callback(turn, cb),
        },
    }
}

/// The engine's apology (see [`crate::flows::Engine::apology`]) as a plain v2 message.
pub fn apology(reply: &Reply) -> V2 {
    text_only(reply.text.clone())
}

/// One text message and nothing else: no buttons, actions or callbacks.
pub fn text_only(text: String) -> V2 {
    V2 {
        version: "v2",
        content: Content {
            messages: vec![Message::Text {
                text: clip(&text, MAX_TEXT_CHARS),
                buttons: Vec::new(),
            }],
            actions: Vec::new(),
            quick_replies: Vec::new(),
            external_message_callback: None,
        },
    }
}

fn messages(replies: &[Reply], cb: &Callbacks<'_>) -> Vec<Message> {
    let replies: Vec<&Reply> = replies
        .iter()
        .filter(|r| !r.text.trim().is_empty() || !r.buttons.is_empty())
        .collect();
    if replies.len() <= MAX_MESSAGES {
        return replies
            .iter()
            .filter_map(|r| message(&r.text, &r.buttons, cb))
            .collect();
    }
    // Past the limit, the overflow is folded into the last message rather than lost.
    let (head, tail) = replies.split_at(MAX_MESSAGES - 1);
    let mut out: Vec<Message> = head
        .iter()
        .filter_map(|r| message(&r.text, &r.buttons, cb))
        .collect();
    let text: Vec<&str> = tail
        .iter()
        .map(|r| r.text.trim())
        .filter(|t| !t.is_empty())
        .collect();
    let buttons: Vec<Button> = tail
        .iter()
        .flat_map(|r| r.buttons.iter().cloned())
        .collect();
    out.extend(message(&text.join("\n\n"), &buttons, cb));
    out
}

/// `None` when nothing is left to show (empty text, no button we can render).
fn message(text: &str, buttons: &[Button], cb: &Callbacks<'_>) -> Option<Message> {
    let buttons: Vec<Tappable> = buttons
        .iter()
        .filter_map(|b| match b {
            Button::Url { title, url } => Some(Tappable::Url {
                caption: caption(title),
                url: url.clone(),
            }),
            Button::Postback { title, payload } => cb.tappable(title, payload, false),
        })
        .take(MAX_BUTTONS)
        .collect();
    // ManyChat rejects an empty text message; a button-only reply gets its first caption.
    let text = match (text.trim(), buttons.first()) {
        (
            "",
            Some(Tappable::Url { caption, .. } | Tappable::DynamicBlockCallback { caption, .. }),
        ) => caption.clone(),
        ("", None) => return None,
        _ => clip(text, MAX_TEXT_CHARS),
    };
    Some(Message::Text { text, buttons })
}

/// The balance goes out on every turn that knows it, not only on changes: it is harmless and
/// repairs a ManyChat field that drifted (e.g. after an admin correction).
fn actions(turn: &Turn) -> Vec<Action> {
    let mut actions = Vec::new();
    if let Some(balance) = turn.balance {
        actions.push(Action::SetFieldValue {
            field_name: POINTS_FIELD,
            value: balance.value(),
        });
    }
    if turn.member.is_some() {
        actions.push(Action::AddTag {
            tag_name: MEMBER_TAG,
        });
    }
    actions.truncate(MAX_ACTIONS);
    actions
}

/// For a question answered by typing, ManyChat sends the next message to the paused flow's
/// endpoint with the answer in `{{last_input_text}}`. Choices need none: quick replies carry
/// their answer, and catching typed text there would swallow messages meant for other flows.
fn external_callback(turn: &Turn, cb: &Callbacks<'_>) -> Option<ExternalCallback> {
    let awaiting = turn
        .awaiting
        .as_ref()
        .filter(|a| a.expect != Expect::Choice)?;
    let mut vars = awaiting.vars.clone();
    vars.insert(awaiting.var.clone(), "{{last_input_text}}".into());
    let Some(endpoint) = Endpoint::for_flow(&awaiting.flow, &vars) else {
        tracing::warn!(flow = %awaiting.flow, "no ManyChat endpoint continues this flow");
        return None;
    };
    Some(ExternalCallback {
        call: cb.call(endpoint, vars),
        timeout: CALLBACK_TIMEOUT_SECS,
    })
}

/// A caption within [`MAX_CAPTION_CHARS`]; a reward's trailing price stays whole.
fn caption(title: &str) -> String {
    crate::flows::turn::short_title(title, MAX_CAPTION_CHARS)
}

/// At most `max` characters, cut on a character boundary with an ellipsis.
fn clip(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests;
