//! What goes into the engine (who said what) and what comes out (replies), independent of any
//! chat platform. Channels translate their wire formats to and from these types.

use crate::domain::{ChatIdentity, MemberId, Points, Profile};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One thing the customer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputEvent {
    /// Typed text (also a quick-reply tap without a payload we know).
    Text(String),
    /// A quick-reply or button payload, e.g. `LOYALTY_BALANCE`, `REDEEM:free-mug`.
    Payload(String),
    /// An m.me link `ref` (`join`, `order-1001`) from a referral event.
    Referral(String),
    /// The Get Started button, possibly with the `ref` of the m.me link that opened the thread.
    GetStarted { referral: Option<String> },
}

#[derive(Debug, Clone)]
pub struct Input {
    pub who: ChatIdentity,
    pub profile: Profile,
    pub event: InputEvent,
    /// A unique name for this input when the channel has one (Messenger: the event's
    /// de-duplication key), so that replaying it after a crash repeats no effect.
    pub request_id: Option<String>,
}

/// A tappable choice shown under a message (Messenger quick reply / ManyChat quick reply).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choice {
    pub title: String,
    pub payload: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Button {
    Url { title: String, url: String },
    Postback { title: String, payload: String },
}

/// One message to the customer. Channels enforce their platform's limits when rendering.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub text: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<Choice>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buttons: Vec<Button>,
}

/// A choice or button title cut to `max` characters with an ellipsis. A trailing `(…)`, such
/// as a reward's price in "Canvas tote bag (500)", is kept whole so it is never misread.
pub fn short_title(title: &str, max: usize) -> String {
    let title = title.trim();
    if title.chars().count() <= max {
        return title.to_owned();
    }
    if let Some(open) = title.rfind(" (").filter(|_| title.ends_with(')')) {
        let (name, suffix) = title.split_at(open);
        let room = max.saturating_sub(suffix.chars().count());
        if room >= 6 {
            return format!("{}{suffix}", clip(name, room));
        }
    }
    clip(title, max)
}

fn clip(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s
        .chars()
        .take(max.saturating_sub(1))
        .collect::<String>()
        .trim_end()
        .to_owned();
    out.push('…');
    out
}

/// What kind of answer a paused flow waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    Email,
    OrderNumber,
    /// One of the choices offered (a payload); typed text is matched against titles.
    Choice,
    /// The six-digit code of a verified join (or `resend`).
    Code,
}

/// A flow paused on a question. Stateless channels (ManyChat) carry `vars` in their callback
/// and call [`crate::flows::Engine::run`] again with the answer added under `var`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Awaiting {
    pub flow: String,
    pub var: String,
    pub expect: Expect,
    pub vars: BTreeMap<String, String>,
}

/// The engine's answer to one input.
#[derive(Debug, Clone, Default)]
pub struct Turn {
    pub replies: Vec<Reply>,
    /// The member behind the chat identity after this turn, if any.
    pub member: Option<MemberId>,
    /// The member's balance after this turn (set whenever the member is known).
    pub balance: Option<Points>,
    /// True when this turn changed the balance (join, claim, redeem).
    pub points_changed: bool,
    pub awaiting: Option<Awaiting>,
    /// Set when a rate limit refused the action (nothing changed, and the replies say so
    /// politely): how long until it is allowed again.
    pub limited: Option<std::time::Duration>,
}

/// Payloads the engine understands. Channels use them as quick-reply and button payloads.
pub mod payloads {
    pub const JOIN: &str = "LOYALTY_JOIN";
    pub const JOIN_YES: &str = "LOYALTY_JOIN_YES";
    pub const JOIN_NO: &str = "LOYALTY_JOIN_NO";
    pub const CLAIM: &str = "LOYALTY_CLAIM_ORDER";
    pub const BALANCE: &str = "LOYALTY_BALANCE";
    pub const REDEEM: &str = "LOYALTY_REDEEM";
    pub const HELP: &str = "LOYALTY_HELP";
    /// `REDEEM:<reward id>` picks a reward.
    pub const REDEEM_PREFIX: &str = "REDEEM:";
}

#[cfg(test)]
mod tests {
    use super::short_title;

    #[test]
    fn short_titles_keep_a_trailing_price_whole() {
        assert_eq!(
            short_title("Canvas tote bag (500)", 20),
            "Canvas tote b… (500)"
        );
        assert_eq!(short_title("Free mug (200)", 20), "Free mug (200)");
        assert_eq!(
            short_title("A very long title without price", 20),
            "A very long title w…"
        );
        assert!(
            short_title("Ünïcödé title that is long (1)", 20)
                .chars()
                .count()
                <= 20
        );
    }
}
