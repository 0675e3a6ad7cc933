//! Deciding what an input means: an answer to the question that waits, or the start of a flow
//! (payloads, m.me refs, typed keywords, typed order numbers, or the fallback).

use super::{normalize, Answer, Dispatch, Engine, Position};
use crate::domain::{Email, OrderNumber};
use crate::flows::actions;
use crate::flows::definition::{InputKind, Step};
use crate::flows::turn::{payloads, InputEvent};
use std::collections::BTreeMap;

impl Engine {
    /// Decides whether an input answers the paused question or starts a flow.
    pub(super) fn dispatch(
        &self,
        event: &InputEvent,
        paused: Option<Position>,
        is_member: bool,
        locale: &mut String,
    ) -> Dispatch {
        let fallback = || Dispatch::Start(self.registry.fallback().id.clone(), BTreeMap::new());
        let start = |(f, v): (String, BTreeMap<String, String>)| Dispatch::Start(f, v);
        let get_started = || {
            let flow = self
                .registry
                .flows
                .values()
                .find(|f| f.triggers.get_started && !is_member);
            flow.map(|f| Dispatch::Start(f.id.clone(), BTreeMap::new()))
                .unwrap_or_else(fallback)
        };
        match event {
            InputEvent::Payload(p) => {
                if let Some(pos) = paused.filter(|pos| self.accepts_payload(pos, p)) {
                    return Dispatch::Resume(pos, Answer::Payload(p.clone()));
                }
                self.route_payload(p).map(start).unwrap_or_else(fallback)
            }
            InputEvent::GetStarted { referral } => referral
                .as_deref()
                .and_then(|r| self.route_ref(r))
                .map(start)
                .unwrap_or_else(get_started),
            InputEvent::Referral(r) => self.route_ref(r).map(start).unwrap_or_else(get_started),
            InputEvent::Text(t) => {
                let norm = normalize(t);
                if let Some(pos) = paused
                    .as_ref()
                    .filter(|pos| self.accepts_text_choice(pos, &norm, locale))
                {
                    return Dispatch::Resume(pos.clone(), Answer::Text(t.clone()));
                }
                if let Some((flow, lang)) = self.keyword(&norm, false) {
                    self.switch_language(&flow, lang, locale);
                    return Dispatch::Start(flow, BTreeMap::new());
                }
                // Only a typed question (email, order number) takes free text as its answer; a
                // waiting choice lets an order number through, so "1002" is never swallowed.
                if let Some(pos) = paused
                    .filter(|pos| self.awaits_typing(pos) || !OrderNumber::looks_like_claim(t))
                {
                    return Dispatch::Resume(pos, Answer::Text(t.clone()));
                }
                // "order 1001" claims 1001; it is not the keyword "order" plus noise.
                if OrderNumber::looks_like_claim(t) {
                    if let Some(f) = self
                        .registry
                        .flows
                        .values()
                        .find(|f| f.triggers.order_number_var.is_some())
                    {
                        let var = f.triggers.order_number_var.clone().unwrap_or_default();
                        return Dispatch::Start(
                            f.id.clone(),
                            BTreeMap::from([(var, t.trim().to_owned())]),
                        );
                    }
                }
                if let Some((flow, lang)) = self.keyword(&norm, true) {
                    self.switch_language(&flow, lang, locale);
                    return Dispatch::Start(flow, BTreeMap::new());
                }
                fallback()
            }
        }
    }

    /// A keyword sets the conversation's language, except greetings and help words, which
    /// people type in whatever language ("hi" from a German speaker).
    fn switch_language(&self, flow: &str, lang: String, locale: &mut String) {
        if self
            .registry
            .flows
            .get(flow)
            .is_some_and(|f| !f.triggers.fallback)
        {
            *locale = lang;
        }
    }

    fn awaits_typing(&self, pos: &Position) -> bool {
        matches!(
            self.step(&pos.flow, pos.step),
            Some(Step::Ask { .. } | Step::VerifyCode { .. })
        )
    }

    fn accepts_payload(&self, pos: &Position, payload: &str) -> bool {
        match self.step(&pos.flow, pos.step) {
            Some(Step::Confirm { yes, no, .. }) => payload == yes.payload || payload == no.payload,
            Some(Step::ChooseReward { .. }) => payload.starts_with(payloads::REDEEM_PREFIX),
            // Messenger's `user_email` quick reply sends the address as the payload.
            Some(Step::Ask {
                input: InputKind::Email,
                ..
            }) => Email::parse(payload).is_ok(),
            _ => false,
        }
    }

    /// Typed `yes`/`ja`, or a reward's name, while a choice is waiting.
    fn accepts_text_choice(&self, pos: &Position, norm: &str, locale: &str) -> bool {
        match self.step(&pos.flow, pos.step) {
            Some(Step::Confirm { .. }) => actions::yes_no(norm, locale).is_some(),
            Some(Step::ChooseReward { .. }) => {
                actions::reward_by_text(self.program.catalogue(), norm).is_some()
            }
            _ => false,
        }
    }

    /// A flow keyword in the text, and its language. While a question waits only an exact
    /// keyword switches flows, so an answer is never mistaken for a command.
    fn keyword(&self, norm: &str, loose: bool) -> Option<(String, String)> {
        let mut found: Option<(usize, String, String)> = None;
        let words: Vec<&str> = norm.split_whitespace().collect();
        for flow in self.registry.flows.values() {
            for (lang, kws) in &flow.triggers.keywords {
                for kw in kws {
                    let kw = normalize(kw);
                    let rank = if kw == norm {
                        Some(0)
                    } else if loose && !kw.contains(' ') && words.len() <= 12 {
                        words.iter().position(|w| *w == kw).map(|i| i + 1)
                    } else if loose && kw.contains(' ') && norm.contains(&kw) {
                        Some(1)
                    } else {
                        None
                    };
                    if let Some(r) = rank {
                        if found.as_ref().is_none_or(|(best, _, _)| r < *best) {
                            found = Some((r, flow.id.clone(), lang.clone()));
                        }
                    }
                }
            }
        }
        found.map(|(_, f, l)| (f, l))
    }
}
