//! Runs flows: picks the flow an input starts or continues, executes steps until one waits for
//! the customer, and collects the replies. Stateful for Messenger and the terminal (the paused
//! position lives in the store), stateless for ManyChat (the caller carries the values).

use super::actions::{self, Ctx};
use super::definition::{FlowError, InputKind, Step};
use super::registry::{Flow, Registry};
use super::render::{locale_of, Renderer};
use super::turn::{payloads, Awaiting, Choice, Expect, Input, InputEvent, Reply, Turn};
use crate::domain::{ChatIdentity, Email, OrderNumber, Profile};
use crate::program::{Program, ProgramError};
use crate::store::ConversationState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

pub struct Engine {
    program: Arc<Program>,
    registry: Registry,
    default_locale: String,
}

/// Where a conversation stands; saved between messages.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Saved {
    #[serde(default)]
    paused: Option<Position>,
    #[serde(default)]
    locale: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Position {
    flow: String,
    step: usize,
    /// Flows to return to when this one ends (e.g. a claim waiting for the join it required).
    #[serde(default)]
    stack: Vec<(String, usize)>,
    #[serde(default)]
    vars: BTreeMap<String, String>,
}

/// What the customer's input means for the flow that waits.
#[derive(Debug, Clone)]
enum Answer {
    Text(String),
    Payload(String),
}

enum Dispatch {
    Resume(Position, Answer),
    Start(String, BTreeMap<String, String>),
}

const CONFIRMED: &str = "confirmed";

impl Engine {
    /// Loads and checks the flow files; any mistake is an error naming file, step and key.
    pub fn load(
        program: Arc<Program>,
        flows_dir: &Path,
        default_locale: &str,
    ) -> Result<Engine, FlowError> {
        let registry = Registry::load(flows_dir)?;
        Ok(Engine {
            program,
            registry,
            default_locale: default_locale.to_owned(),
        })
    }

    pub fn program(&self) -> &Arc<Program> {
        &self.program
    }

    /// Stateful conversation (Messenger, terminal): the paused position is kept in the store.
    #[tracing::instrument(skip_all, fields(channel = input.who.channel.as_str(), member.id))]
    pub async fn converse(&self, input: Input) -> Result<Turn, ProgramError> {
        let who = input.who.clone();
        let key = who.clone();
        let saved: Saved = self
            .program
            .blocking(move |s| s.conversation(&key))
            .await?
            .and_then(|c| serde_json::from_value(c.data).ok())
            .unwrap_or_default();
        let account = self.program.account(&who).await?;
        if let Some(a) = &account {
            tracing::Span::current().record("member.id", a.member.id.0);
        }
        let mut locale = self.locale(
            &input.profile,
            account.as_ref().and_then(|a| a.member.locale.as_deref()),
            saved.locale.as_deref(),
        );
        let dispatch = self.dispatch(&input.event, saved.paused, account.is_some(), &mut locale);
        let mut ctx = Ctx::new(
            &self.program,
            &self.registry,
            &who,
            &input.profile,
            account,
            locale.clone(),
            false,
        );
        let paused = match dispatch {
            Dispatch::Resume(pos, answer) => self.execute(&mut ctx, pos, Some(answer)).await?,
            Dispatch::Start(flow, vars) => {
                self.execute(&mut ctx, self.start(&flow, vars), None)
                    .await?
            }
        };
        let state = Saved {
            paused: paused.clone(),
            locale: Some(locale),
        };
        let data = serde_json::to_value(&state).unwrap_or_default();
        let turn = ctx.finish(paused.map(|p| self.awaiting(&p)));
        self.program
            .blocking(move |s| s.save_conversation(&who, &ConversationState { data }))
            .await?;
        Ok(turn)
    }

    /// Stateless run of one flow (ManyChat): `vars` carry what earlier calls collected; a
    /// question ends the run with [`Turn::awaiting`] set instead of saving anything.
    #[tracing::instrument(skip_all, fields(channel = who.channel.as_str(), flow = flow))]
    pub async fn run(
        &self,
        flow: &str,
        who: &ChatIdentity,
        profile: &Profile,
        vars: BTreeMap<String, String>,
    ) -> Result<Turn, ProgramError> {
        let account = self.program.account(who).await?;
        let locale = self.locale(
            profile,
            account.as_ref().and_then(|a| a.member.locale.as_deref()),
            None,
        );
        let flow = if self.registry.flows.contains_key(flow) {
            flow
        } else {
            &self.registry.fallback().id
        };
        let mut ctx = Ctx::new(
            &self.program,
            &self.registry,
            who,
            profile,
            account,
            locale,
            true,
        );
        let paused = self.execute(&mut ctx, self.start(flow, vars), None).await?;
        Ok(ctx.finish(paused.map(|p| self.awaiting(&p))))
    }

    /// What to tell a customer when their input could not be handled (the store or a task
    /// failed): the flows' `internal_error` message in the customer's language.
    pub fn apology(&self, profile: &Profile) -> Reply {
        let locale = self.locale(profile, None, None);
        Renderer {
            registry: &self.registry,
            catalogue: self.program.catalogue(),
            locale: &locale,
            is_member: false,
        }
        .reply("internal_error", &Default::default())
    }

    /// The flow and values a payload starts, e.g. `REDEEM:free-mug` → (`redeem`, reward_id=free-mug).
    pub fn route_payload(&self, payload: &str) -> Option<(String, BTreeMap<String, String>)> {
        for flow in self.registry.flows.values() {
            let t = &flow.triggers;
            if t.payloads.iter().any(|p| p == payload) {
                let mut vars = BTreeMap::new();
                if self.is_confirm_yes(flow, payload) {
                    vars.insert(CONFIRMED.to_owned(), "yes".to_owned());
                }
                return Some((flow.id.clone(), vars));
            }
            for (prefix, var) in &t.payload_prefixes {
                if let Some(rest) = payload
                    .strip_prefix(prefix.as_str())
                    .filter(|r| !r.is_empty())
                {
                    return Some((
                        flow.id.clone(),
                        BTreeMap::from([(var.clone(), rest.to_owned())]),
                    ));
                }
            }
        }
        None
    }

    /// The flow an m.me `ref` starts: `join`, `order-1001` → (`claim`, order_number=1001).
    pub fn route_ref(&self, r: &str) -> Option<(String, BTreeMap<String, String>)> {
        let r = r.trim();
        for flow in self.registry.flows.values() {
            let t = &flow.triggers;
            if t.refs.iter().any(|x| x.eq_ignore_ascii_case(r)) {
                return Some((flow.id.clone(), BTreeMap::new()));
            }
            for (prefix, var) in &t.ref_prefixes {
                if r.len() > prefix.len() && r[..prefix.len()].eq_ignore_ascii_case(prefix) {
                    return Some((
                        flow.id.clone(),
                        BTreeMap::from([(var.clone(), r[prefix.len()..].to_owned())]),
                    ));
                }
            }
        }
        None
    }

    fn is_confirm_yes(&self, flow: &Flow, payload: &str) -> bool {
        flow.steps
            .iter()
            .any(|(_, s)| matches!(s, Step::Confirm { yes, .. } if yes.payload == payload))
    }

    fn locale(&self, profile: &Profile, member: Option<&str>, saved: Option<&str>) -> String {
        [profile.locale.as_deref(), member, saved]
            .into_iter()
            .flatten()
            .find_map(locale_of)
            .unwrap_or(&self.default_locale)
            .to_owned()
    }

    fn start(&self, flow: &str, vars: BTreeMap<String, String>) -> Position {
        Position {
            flow: flow.to_owned(),
            step: 0,
            stack: vec![],
            vars,
        }
    }

    fn awaiting(&self, p: &Position) -> Awaiting {
        let root = p
            .stack
            .first()
            .map(|(f, _)| f.clone())
            .unwrap_or_else(|| p.flow.clone());
        let (var, expect) = match self.step(&p.flow, p.step) {
            Some(Step::Ask { var, input, .. }) => (
                var.clone(),
                match input {
                    InputKind::Email => Expect::Email,
                    InputKind::OrderNumber => Expect::OrderNumber,
                },
            ),
            Some(Step::ChooseReward { var, .. }) => (var.clone(), Expect::Choice),
            _ => (CONFIRMED.to_owned(), Expect::Choice),
        };
        Awaiting {
            flow: root,
            var,
            expect,
            vars: p.vars.clone(),
        }
    }

    fn step(&self, flow: &str, i: usize) -> Option<&Step> {
        self.registry
            .flows
            .get(flow)
            .and_then(|f| f.steps.get(i))
            .map(|(_, s)| s)
    }

    /// Decides whether an input answers the paused question or starts a flow.
    fn dispatch(
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
                    *locale = lang;
                    return Dispatch::Start(flow, BTreeMap::new());
                }
                if let Some(pos) = paused {
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
                    *locale = lang;
                    return Dispatch::Start(flow, BTreeMap::new());
                }
                fallback()
            }
        }
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

    async fn execute(
        &self,
        ctx: &mut Ctx<'_>,
        mut pos: Position,
        mut answer: Option<Answer>,
    ) -> Result<Option<Position>, ProgramError> {
        // Bounded so a flow file with a cycle through require_member cannot spin forever.
        for _ in 0..64 {
            let Some(flow) = self.registry.flows.get(&pos.flow) else {
                return Ok(None);
            };
            let Some((_, step)) = flow.steps.get(pos.step) else {
                match pos.stack.pop() {
                    Some((f, s)) => {
                        pos.flow = f;
                        pos.step = s;
                        continue;
                    }
                    None => return Ok(None),
                }
            };
            match step {
                Step::Say { say } => {
                    ctx.say(say);
                    pos.step += 1;
                }
                Step::SkipIfMember { say } => {
                    if ctx.is_member() {
                        ctx.say(say);
                        return Ok(None);
                    }
                    pos.step += 1;
                }
                Step::RequireMember { flow: join } => {
                    if ctx.is_member() {
                        pos.step += 1;
                    } else {
                        pos.stack.push((pos.flow.clone(), pos.step + 1));
                        pos.flow = join.clone();
                        pos.step = 0;
                    }
                }
                Step::Confirm {
                    ask,
                    yes,
                    no,
                    on_no,
                } => {
                    if ctx.stateless || pos.vars.get(CONFIRMED).is_some_and(|v| v == "yes") {
                        pos.step += 1;
                        continue;
                    }
                    let verdict = match answer.take() {
                        Some(Answer::Payload(p)) => Some(p == yes.payload),
                        Some(Answer::Text(t)) => actions::yes_no(&normalize(&t), &ctx.locale),
                        None => None,
                    };
                    match verdict {
                        Some(true) => pos.step += 1,
                        Some(false) => {
                            ctx.say(on_no);
                            return Ok(None);
                        }
                        None => {
                            let choices = [yes, no]
                                .iter()
                                .map(|c| Choice {
                                    title: ctx.text(&c.title),
                                    payload: c.payload.clone(),
                                })
                                .collect();
                            ctx.ask(ask, choices);
                            return Ok(Some(pos));
                        }
                    }
                }
                Step::Ask {
                    input,
                    var,
                    ask,
                    invalid,
                } => {
                    let given = pos.vars.remove(var).or_else(|| match answer.take() {
                        Some(Answer::Text(t) | Answer::Payload(t)) => Some(t),
                        None => None,
                    });
                    match given {
                        None => {
                            ctx.ask(ask, vec![]);
                            return Ok(Some(pos));
                        }
                        Some(raw) => match actions::parse_input(*input, &raw) {
                            Some(value) => {
                                pos.vars.insert(var.clone(), value);
                                pos.step += 1;
                            }
                            None => {
                                ctx.ask(invalid, vec![]);
                                return Ok(Some(pos));
                            }
                        },
                    }
                }
                Step::ChooseReward { ask, var } => {
                    let picked = pos.vars.get(var).cloned().or_else(|| match answer.take() {
                        Some(Answer::Payload(p)) => {
                            p.strip_prefix(payloads::REDEEM_PREFIX).map(str::to_owned)
                        }
                        Some(Answer::Text(t)) => {
                            actions::reward_by_text(self.program.catalogue(), &normalize(&t))
                                .map(|r| r.id.clone())
                        }
                        None => None,
                    });
                    match picked {
                        Some(id) => {
                            pos.vars.insert(var.clone(), id);
                            pos.step += 1;
                        }
                        None => {
                            let choices = ctx.renderer().reward_choices();
                            ctx.ask(ask, choices);
                            return Ok(Some(pos));
                        }
                    }
                }
                Step::Action { action, outcomes } => {
                    let go_on = ctx.act(*action, outcomes, &pos.vars).await?;
                    if !go_on {
                        return Ok(None);
                    }
                    pos.step += 1;
                }
            }
        }
        tracing::error!(flow = %pos.flow, "flow did not finish within 64 steps; check require_member cycles");
        Ok(None)
    }
}

/// Lower-case, trimmed, without surrounding punctuation: how typed commands are compared.
pub(super) fn normalize(text: &str) -> String {
    text.trim()
        .trim_matches(|c: char| c.is_ascii_punctuation() && c != '#')
        .trim()
        .to_lowercase()
}
