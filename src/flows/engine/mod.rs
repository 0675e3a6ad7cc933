//! Runs flows: picks the flow an input starts or continues, executes steps until one waits for
//! the customer, and collects the replies. Stateful for Messenger and the terminal (the paused
//! position lives in the store), stateless for ManyChat (the caller carries the values).

mod dispatch;
mod execute;

use super::actions::Ctx;
use super::definition::{FlowError, InputKind, Step};
use super::registry::{Flow, Registry};
use super::render::{locale_of, Renderer};
use super::turn::{Awaiting, Expect, Input, Reply, Turn};
use crate::domain::orders::strip_prefix_ignore_ascii_case;
use crate::domain::{ChatIdentity, MemberId, Profile};
use crate::program::{Program, ProgramError};
use chrono::{DateTime, Utc};
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
    paused_at: Option<DateTime<Utc>>,
    /// The language the customer chose by typing a keyword in it.
    #[serde(default)]
    locale: Option<String>,
    /// The input that left the conversation here, and where it stood before that input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    by: Option<Box<Turned>>,
}

/// A state is saved before its event is marked done, in a separate write: when the process dies
/// in between, the same event runs again. Run against the state it left behind, a reward typed
/// while the choice was open would be answered with help, and the coupon it bought never shown.
/// So the replay runs from where that input first found the conversation: it takes the same
/// path, and the effects on the way, idempotent per request, answer as the first run did.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Turned {
    request: String,
    before: Saved,
}

impl Saved {
    /// The state a new input of `request` starts from.
    fn for_request(self, request: Option<&str>) -> Saved {
        match (&self.by, request) {
            (Some(by), Some(r)) if by.request == r => by.before.clone(),
            _ => Saved { by: None, ..self },
        }
    }
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
/// How long a question waits for its answer (the same as ManyChat's typed-answer callback).
const PAUSE_TTL: chrono::Duration = chrono::Duration::hours(1);
/// The variable a stateless caller uses to name its request (see [`Input::request_id`]).
pub const REQUEST_ID: &str = "request_id";

impl Engine {
    /// Loads and checks the built-in flows, with the files of `flows_dir` (if given) replacing
    /// those of the same name; any mistake is an error naming file, step and key.
    pub fn load(
        program: Arc<Program>,
        flows_dir: Option<&Path>,
        default_locale: &str,
    ) -> Result<Engine, FlowError> {
        let registry = Registry::load_over_built_in(flows_dir)?;
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
        let stored = self.program.conversation(&who).await?;
        let stored_state: Saved = stored
            .clone()
            .and_then(|data| serde_json::from_value(data).ok())
            .unwrap_or_default();
        let saved = stored_state
            .clone()
            .for_request(input.request_id.as_deref());
        let account = self.program.account(&who).await?;
        if let Some(a) = &account {
            // As text, like every other `member.id`: one JSON type per log field.
            tracing::Span::current().record("member.id", tracing::field::display(a.member.id));
        }
        let mut locale = self.locale(
            &input.profile,
            account.as_ref().and_then(|a| a.member.locale.as_deref()),
            saved.locale.as_deref(),
        );
        let before = locale.clone();
        let member_locale = Self::member_locale(account.as_ref());
        // A question left unanswered for long is forgotten: the next message starts afresh.
        let paused = saved.paused.clone().filter(|_| {
            // Saved before expiry existed: keep it this once.
            saved.paused_at.is_none_or(|at| Utc::now() - at < PAUSE_TTL)
        });
        let dispatch = self.dispatch(&input.event, paused, account.is_some(), &mut locale);
        let mut ctx = Ctx::new(
            &self.program,
            &self.registry,
            &who,
            &input.profile,
            account,
            locale.clone(),
            false,
        );
        ctx.request = input.request_id.clone();
        let paused = match dispatch {
            Dispatch::Resume(pos, answer) => self.execute(&mut ctx, pos, Some(answer)).await?,
            Dispatch::Start(flow, vars) => {
                self.execute(&mut ctx, self.start(&flow, vars), None)
                    .await?
            }
        };
        self.follow_language(member_locale, &locale).await?;
        let mut state = Saved {
            paused_at: paused.as_ref().map(|_| Utc::now()),
            paused: paused.clone(),
            // Only a keyword typed in another language changes the conversation's language.
            locale: if locale != before {
                Some(locale)
            } else {
                saved.locale.clone()
            },
            by: None,
        };
        let turn = ctx.finish(paused.map(|p| self.awaiting(&p)));
        // Most turns (a claim, a balance) neither start nor end a question: writing the same
        // state again would cost a write and a flush per message for nothing. A replay that
        // ends where its first run did writes nothing either.
        let unchanged = |a: &Saved, b: &Saved| {
            serde_json::to_value(Saved {
                by: None,
                ..a.clone()
            })
            .ok()
                == serde_json::to_value(Saved {
                    by: None,
                    ..b.clone()
                })
                .ok()
        };
        if !unchanged(&stored_state, &state) {
            if let Some(request) = input.request_id.clone() {
                state.by = Some(Box::new(Turned {
                    request,
                    before: saved,
                }));
            }
            let data = serde_json::to_value(&state).unwrap_or_default();
            self.program.save_conversation(&who, data).await?;
        }
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
        let member_locale = Self::member_locale(account.as_ref());
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
        ctx.request = vars.get(REQUEST_ID).cloned();
        let paused = self.execute(&mut ctx, self.start(flow, vars), None).await?;
        self.follow_language(member_locale, &ctx.locale).await?;
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

    /// The chat text of order news (`order_news_*` in the messages), in `locale`: the order's
    /// number, the points it moved (`earned`) and the balance now (`points`).
    pub fn order_news(&self, locale: &str, news: &crate::program::OrderNews) -> String {
        use crate::program::OrderNews;
        let (key, order, points, balance) = match news {
            OrderNews::AutoCredited {
                order,
                points,
                balance,
            } => ("order_news_credited", order, points, balance),
            OrderNews::Raised {
                order,
                points,
                balance,
            } => ("order_news_raised", order, points, balance),
            OrderNews::Lowered {
                order,
                taken,
                ended: Some(_),
                balance,
            } => ("order_news_ended", order, taken, balance),
            OrderNews::Lowered {
                order,
                taken,
                balance,
                ..
            } => ("order_news_lowered", order, taken, balance),
        };
        let vars = [
            ("order_number", order.to_string()),
            ("earned", points.0.to_string()),
            ("points", balance.0.to_string()),
        ]
        .into_iter()
        .collect();
        Renderer {
            registry: &self.registry,
            catalogue: self.program.catalogue(),
            locale,
            is_member: true,
        }
        .text(key, &vars)
    }

    /// The locale (`en`, `de`) the engine would answer `profile` in when nothing else is known
    /// of them: for channels that word an answer of their own.
    pub fn locale_for(&self, profile: &Profile) -> String {
        self.locale(profile, None, None)
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
                if let Some(rest) =
                    strip_prefix_ignore_ascii_case(r, prefix).filter(|x| !x.is_empty())
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

    fn is_confirm_yes(&self, flow: &Flow, payload: &str) -> bool {
        flow.steps
            .iter()
            .any(|(_, s)| matches!(s, Step::Confirm { yes, .. } if yes.payload == payload))
    }

    /// The language the customer chose by typing a keyword in it wins; then the platform's
    /// locale for the person; then the member's language at joining; then the default.
    fn locale(&self, profile: &Profile, member: Option<&str>, saved: Option<&str>) -> String {
        [saved, profile.locale.as_deref(), member]
            .into_iter()
            .flatten()
            .find_map(locale_of)
            .unwrap_or(&self.default_locale)
            .to_owned()
    }

    /// The member (if any) and the language kept for their mail.
    fn member_locale(
        account: Option<&crate::domain::MemberAccount>,
    ) -> Option<(MemberId, Option<String>)> {
        account.map(|a| (a.member.id, a.member.locale.clone()))
    }

    /// Mail speaks the language the member chats in: when this turn's language is not the one
    /// kept for them, it is kept now (one write, only on a change).
    async fn follow_language(
        &self,
        member: Option<(MemberId, Option<String>)>,
        locale: &str,
    ) -> Result<(), ProgramError> {
        let Some((id, kept)) = member else {
            return Ok(());
        };
        // A member with no language kept gets mail in the first locale: no write needed
        // while they chat in it (most members, most turns).
        let mail_locale = kept
            .as_deref()
            .and_then(locale_of)
            .unwrap_or(super::definition::LOCALES[0]);
        if mail_locale != locale {
            self.program.set_member_locale(id, locale).await?;
        }
        Ok(())
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
            Some(Step::VerifyCode { var, .. }) => (var.clone(), Expect::Code),
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
}

/// Lower-case, trimmed, without surrounding punctuation: how typed commands are compared.
pub(in crate::flows) fn normalize(text: &str) -> String {
    text.trim()
        .trim_matches(|c: char| c.is_ascii_punctuation() && c != '#')
        .trim()
        .to_lowercase()
}
