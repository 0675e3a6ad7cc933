//! Turns message templates into replies: fills `{placeholders}`, picks the locale, and expands
//! named choice lists (the menus, the reward catalogue).

use super::definition::{ChoicesDef, MessageDef, LOCALES};
use super::registry::Registry;
use super::turn::{payloads, Button, Choice, Reply};
use crate::domain::Catalogue;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

pub type Vars = BTreeMap<&'static str, String>;

/// `de_DE` → `de`; anything unsupported → `None`.
pub fn locale_of(platform_locale: &str) -> Option<&'static str> {
    let lang = platform_locale
        .split(['_', '-'])
        .next()?
        .to_ascii_lowercase();
    LOCALES.iter().copied().find(|l| *l == lang)
}

pub fn date(at: DateTime<Utc>, locale: &str) -> String {
    match locale {
        "de" => at.format("%d.%m.%Y").to_string(),
        _ => at.format("%-d %b %Y").to_string(),
    }
}

pub fn fill(template: &str, vars: &Vars) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let name = &after[..close];
                out.push_str(vars.get(name).map(String::as_str).unwrap_or(""));
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

pub struct Renderer<'a> {
    pub registry: &'a Registry,
    pub catalogue: &'a Catalogue,
    pub locale: &'a str,
    pub is_member: bool,
}

impl Renderer<'_> {
    fn def(&self, key: &str) -> Option<&MessageDef> {
        self.registry
            .messages
            .get(self.locale)
            .and_then(|m| m.get(key))
            .or_else(|| self.registry.messages.get("en").and_then(|m| m.get(key)))
    }

    /// The plain text of a message key (titles, fragments).
    pub fn text(&self, key: &str, vars: &Vars) -> String {
        self.def(key)
            .map(|d| fill(d.text(), vars))
            .unwrap_or_default()
    }

    pub fn reply(&self, key: &str, vars: &Vars) -> Reply {
        let Some(def) = self.def(key) else {
            return Reply::default();
        };
        let mut reply = Reply {
            text: fill(def.text(), vars),
            ..Reply::default()
        };
        if let MessageDef::Full {
            choices, buttons, ..
        } = def
        {
            reply.choices = match choices {
                None => vec![],
                Some(ChoicesDef::Named(n)) if n == "rewards" => self.reward_choices(),
                Some(ChoicesDef::Named(_)) => {
                    let menu = if self.is_member { "member" } else { "guest" };
                    self.choice_list(
                        self.registry
                            .menus
                            .get(menu)
                            .map(Vec::as_slice)
                            .unwrap_or(&[]),
                        vars,
                    )
                }
                Some(ChoicesDef::List(items)) => self.choice_list(items, vars),
            };
            reply.buttons = buttons
                .iter()
                .map(|b| {
                    let title = self.text(&b.title, vars);
                    match (&b.url, &b.payload) {
                        (Some(url), _) => Button::Url {
                            title,
                            url: fill(url, vars),
                        },
                        (None, payload) => Button::Postback {
                            title,
                            payload: payload.clone().unwrap_or_default(),
                        },
                    }
                })
                .filter(|b| !matches!(b, Button::Url { url, .. } if url.is_empty()))
                .collect();
        }
        reply
    }

    fn choice_list(&self, items: &[super::definition::ChoiceDef], vars: &Vars) -> Vec<Choice> {
        items
            .iter()
            .map(|c| Choice {
                title: self.text(&c.title, vars),
                payload: c.payload.clone(),
            })
            .collect()
    }

    pub fn reward_choices(&self) -> Vec<Choice> {
        self.catalogue
            .all()
            .iter()
            .map(|r| Choice {
                title: format!("{} ({})", r.title, r.points),
                payload: format!("{}{}", payloads::REDEEM_PREFIX, r.id),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_and_unknown_ones_left_empty() {
        let mut v = Vars::new();
        v.insert("points", "250".into());
        assert_eq!(
            fill("You have {points} points.", &v),
            "You have 250 points."
        );
        assert_eq!(fill("{first_name}!", &v), "!");
        assert_eq!(fill("no close {points", &v), "no close {points");
    }

    #[test]
    fn platform_locales_map_to_ours() {
        assert_eq!(locale_of("de_DE"), Some("de"));
        assert_eq!(locale_of("en_US"), Some("en"));
        assert_eq!(locale_of("fr_FR"), None);
    }
}
