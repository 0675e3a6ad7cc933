//! The answer to a ManyChat call refused by the per-address budget (`limits.claims_per_ip`,
//! `limits.redemptions_per_ip`). ManyChat shows the contact nothing of a non-200 answer, so a
//! refusal is still a 200 with a v2 message in the contact's language saying what is paused and
//! for how long. These words belong to the channel rather than to the flows: only ManyChat has
//! an address budget, because its few servers carry every contact at once.

use super::endpoint::Endpoint;
use super::response::text_only;
use super::v2::V2;

/// What the budget of `endpoint` covers, so the message can name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paused {
    Claims,
    Redemptions,
}

impl Paused {
    /// The address budget `endpoint` spends from, if any.
    pub fn of(endpoint: Endpoint) -> Option<Paused> {
        match endpoint {
            Endpoint::Claim => Some(Paused::Claims),
            Endpoint::Redeem => Some(Paused::Redemptions),
            _ => None,
        }
    }

    /// The config key of the budget, for logs (and the metrics' `limit` label).
    pub fn limit(self) -> &'static str {
        match self {
            Paused::Claims => "claims_per_ip",
            Paused::Redemptions => "redemptions_per_ip",
        }
    }
}

/// The v2 answer: one text message, no buttons or actions, so nothing invites a retry
/// before the wait is over and nothing in ManyChat changes either.
pub fn answer(paused: Paused, retry_after_secs: u64, locale: &str) -> V2 {
    text_only(message(paused, retry_after_secs, locale))
}

/// The message in `locale` (`de`, else English: the engine's locales are `en` and `de`).
pub fn message(paused: Paused, retry_after_secs: u64, locale: &str) -> String {
    let wait = wait(retry_after_secs, locale);
    match (paused, locale) {
        (Paused::Claims, "de") => format!(
            "Gerade melden sehr viele Kundinnen und Kunden Bestellungen, deshalb pausiere ich das \
             Melden kurz. An deinem Konto hat sich nichts geändert. Bitte versuch es in etwa \
             {wait} noch einmal."
        ),
        (Paused::Redemptions, "de") => format!(
            "Gerade lösen sehr viele Kundinnen und Kunden Prämien ein, deshalb pausiere ich \
             Prämien kurz. Es wurden keine Punkte abgezogen. Bitte versuch es in etwa {wait} \
             noch einmal."
        ),
        (Paused::Claims, _) => format!(
            "Lots of customers are claiming orders right now, so I've paused claims for a \
             moment. Nothing has changed on your account. Please try again in about {wait}."
        ),
        (Paused::Redemptions, _) => format!(
            "Lots of customers are redeeming rewards right now, so I've paused rewards for a \
             moment. No points were spent. Please try again in about {wait}."
        ),
    }
}

/// The wait in words: seconds under a minute, else whole minutes rounded up (never "0").
fn wait(secs: u64, locale: &str) -> String {
    let secs = secs.max(1);
    let (n, unit) = if secs < 60 {
        (secs, Unit::Second)
    } else {
        (secs.div_ceil(60), Unit::Minute)
    };
    let word = match (unit, locale, n == 1) {
        (Unit::Second, "de", true) => "Sekunde",
        (Unit::Second, "de", false) => "Sekunden",
        (Unit::Minute, "de", true) => "Minute",
        (Unit::Minute, "de", false) => "Minuten",
        (Unit::Second, _, true) => "second",
        (Unit::Second, _, false) => "seconds",
        (Unit::Minute, _, true) => "minute",
        (Unit::Minute, _, false) => "minutes",
    };
    format!("{n} {word}")
}

#[derive(Clone, Copy)]
enum Unit {
    Second,
    Minute,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_is_in_seconds_under_a_minute_and_whole_minutes_above() {
        let cases = [
            (0, "en", "1 second"),
            (1, "en", "1 second"),
            (20, "en", "20 seconds"),
            (59, "en", "59 seconds"),
            (60, "en", "1 minute"),
            (61, "en", "2 minutes"),
            (1800, "en", "30 minutes"),
            (1, "de", "1 Sekunde"),
            (30, "de", "30 Sekunden"),
            (60, "de", "1 Minute"),
            (90, "de", "2 Minuten"),
        ];
        for (secs, locale, want) in cases {
            assert_eq!(wait(secs, locale), want, "{secs} s, {locale}");
        }
    }

    #[test]
    fn each_message_names_what_is_paused_in_the_contacts_language() {
        let cases = [
            (Paused::Claims, "en", "paused claims", "20 seconds"),
            (Paused::Redemptions, "en", "paused rewards", "20 seconds"),
            (
                Paused::Claims,
                "de",
                "pausiere ich das Melden",
                "20 Sekunden",
            ),
            (
                Paused::Redemptions,
                "de",
                "pausiere ich Prämien",
                "20 Sekunden",
            ),
        ];
        for (paused, locale, what, when) in cases {
            let text = message(paused, 20, locale);
            assert!(text.contains(what) && text.contains(when), "{text}");
        }
    }

    #[test]
    fn the_answer_is_a_v2_text_message_and_nothing_else() {
        let v2 = serde_json::to_value(answer(Paused::Claims, 5, "en")).unwrap();
        assert_eq!(v2["version"], "v2");
        let messages = v2["content"]["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0]["type"], "text");
        assert!(messages[0]["text"].as_str().unwrap().contains("5 seconds"));
        assert_eq!(v2["content"]["actions"], serde_json::json!([]));
        assert_eq!(v2["content"]["quick_replies"], serde_json::json!([]));
        assert!(v2["content"].get("external_message_callback").is_none());
    }
}
