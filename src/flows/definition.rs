//! The flow-file format (serde types) and its checks. A flow file is TOML: `id`, `[triggers]`,
//! `[[steps]]`, and `[messages.<locale>]` templates. Mistakes are reported with the file, the
//! step and the key, and stop the service at start-up.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Locales every message must exist in.
pub const LOCALES: [&str; 2] = ["en", "de"];

/// Placeholders a template may use (filled by the engine; unknown ones are a start-up error).
pub const PLACEHOLDERS: &[&str] = &[
    "first_name",
    "points",
    "bonus",
    "earned",
    "order_number",
    "reward",
    "reward_points",
    "points_to_next",
    "next_reward",
    "code",
    "expires_on",
    "checkout_url",
    "status",
    "currency",
    "cheapest_reward",
    "cheapest_points",
    "rate",
    "claimed_on",
    "rewards_now",
    "reward_status",
    "valid_days",
    "gap",
    "wait_minutes",
    "email",
    "wait_seconds",
    "tries_left",
    "code_minutes",
];

#[derive(Debug, thiserror::Error)]
#[error("{file}: {problem}")]
pub struct FlowError {
    pub file: PathBuf,
    pub problem: String,
}

impl FlowError {
    pub fn new(file: &Path, problem: impl Into<String>) -> Self {
        FlowError {
            file: file.to_owned(),
            problem: problem.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowFile {
    pub id: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub triggers: Triggers,
    #[serde(default)]
    pub steps: Vec<StepDef>,
    /// locale → message key → template.
    #[serde(default)]
    pub messages: BTreeMap<String, BTreeMap<String, MessageDef>>,
    /// Named choice lists (e.g. `member`, `guest`) messages can show with `choices = "menu"`.
    #[serde(default)]
    pub menu: BTreeMap<String, Vec<ChoiceDef>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Triggers {
    /// Quick-reply / postback payloads that start the flow.
    #[serde(default)]
    pub payloads: Vec<String>,
    /// Payload prefixes that start the flow and store the rest in a variable: `"REDEEM:" = "reward_id"`.
    #[serde(default)]
    pub payload_prefixes: BTreeMap<String, String>,
    /// m.me `ref` values that start the flow.
    #[serde(default)]
    pub refs: Vec<String>,
    /// m.me `ref` prefixes that start the flow with the rest in a variable: `"order-" = "order_number"`.
    #[serde(default)]
    pub ref_prefixes: BTreeMap<String, String>,
    /// locale → words that start the flow when typed.
    #[serde(default)]
    pub keywords: BTreeMap<String, Vec<String>>,
    /// The Get Started button (without a ref this flow knows) starts this flow.
    #[serde(default)]
    pub get_started: bool,
    /// A typed order number (`1001`, `#1001`, `order 1001`) starts this flow, in this variable.
    #[serde(default)]
    pub order_number_var: Option<String>,
    /// Anything nobody else understood lands here.
    #[serde(default)]
    pub fallback: bool,
}

/// A step as written in the file; checked and turned into a [`Step`] at load.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepDef {
    pub id: String,
    #[serde(rename = "do")]
    pub kind: String,
    pub say: Option<String>,
    pub ask: Option<String>,
    pub invalid: Option<String>,
    pub input: Option<String>,
    pub var: Option<String>,
    pub flow: Option<String>,
    pub yes: Option<ChoiceDef>,
    pub no: Option<ChoiceDef>,
    pub on_no: Option<String>,
    pub action: Option<String>,
    /// Action outcome → message key.
    #[serde(default)]
    pub outcomes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChoiceDef {
    /// Message key of the title.
    pub title: String,
    pub payload: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum MessageDef {
    Text(String),
    Full {
        text: String,
        #[serde(default)]
        choices: Option<ChoicesDef>,
        #[serde(default)]
        buttons: Vec<ButtonDef>,
    },
}

impl MessageDef {
    pub fn text(&self) -> &str {
        match self {
            MessageDef::Text(t) | MessageDef::Full { text: t, .. } => t,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ChoicesDef {
    /// `"menu"`: the member or guest menu; `"rewards"`: the reward catalogue.
    Named(String),
    List(Vec<ChoiceDef>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ButtonDef {
    /// Message key of the title.
    pub title: String,
    /// URL template, e.g. `"{checkout_url}"`.
    pub url: Option<String>,
    pub payload: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    Email,
    OrderNumber,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Join,
    ClaimOrder,
    ShowBalance,
    Redeem,
    /// `stop emails`: no more statements or reminders.
    EmailsOff,
    /// `start emails`: statements and reminders again.
    EmailsOn,
}

impl Action {
    fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "join" => Action::Join,
            "claim_order" => Action::ClaimOrder,
            "show_balance" => Action::ShowBalance,
            "redeem" => Action::Redeem,
            "emails_off" => Action::EmailsOff,
            "emails_on" => Action::EmailsOn,
            _ => return None,
        })
    }

    /// Outcomes the flow file must give a message for.
    pub fn outcomes(self) -> &'static [&'static str] {
        match self {
            Action::Join => &[
                "joined",
                "already_member",
                "email_taken",
                "code_sent",
                "code_wait",
                "code_not_sent",
            ],
            Action::ClaimOrder => &[
                "credited",
                "already_claimed_by_you",
                "already_claimed",
                "not_found",
                "not_paid",
                "other_currency",
                "email_withheld",
                "shop_unavailable",
            ],
            Action::ShowBalance => &["balance"],
            Action::Redeem => &[
                "redeemed",
                "insufficient",
                "unknown_reward",
                "shop_unavailable",
            ],
            Action::EmailsOff | Action::EmailsOn => &["changed", "unchanged", "not_member"],
        }
    }
}

/// Outcomes of a `verify_code` step, each needing a message.
pub const VERIFY_OUTCOMES: [&str; 11] = [
    "joined",
    "already_member",
    "email_taken",
    "wrong",
    "expired",
    "locked",
    "resent",
    "code_wait",
    "code_not_sent",
    "no_code",
    "invalid",
];

/// A checked step.
#[derive(Debug, Clone)]
pub enum Step {
    Say {
        say: String,
    },
    RequireMember {
        flow: String,
    },
    SkipIfMember {
        say: String,
    },
    Confirm {
        ask: String,
        yes: ChoiceDef,
        no: ChoiceDef,
        on_no: String,
    },
    Ask {
        input: InputKind,
        var: String,
        ask: String,
        invalid: String,
    },
    ChooseReward {
        ask: String,
        var: String,
    },
    Action {
        action: Action,
        outcomes: BTreeMap<String, String>,
    },
    /// Waits for the code a verified join sent (passes when the customer is a member), takes
    /// `resend` for a new one, and says the outcome's message.
    VerifyCode {
        var: String,
        outcomes: BTreeMap<String, String>,
    },
}

impl StepDef {
    /// Checks the step's keys for its kind; `Err` names the missing or unexpected key.
    pub fn check(&self) -> Result<Step, String> {
        let need = |v: &Option<String>, key: &str| -> Result<String, String> {
            v.clone().ok_or_else(|| {
                format!(
                    "step `{}` (do = \"{}\"): missing key `{key}`",
                    self.id, self.kind
                )
            })
        };
        let step = match self.kind.as_str() {
            "say" => Step::Say { say: need(&self.say, "say")? },
            "require_member" => Step::RequireMember { flow: need(&self.flow, "flow")? },
            "skip_if_member" => Step::SkipIfMember { say: need(&self.say, "say")? },
            "confirm" => Step::Confirm {
                ask: need(&self.ask, "ask")?,
                yes: self.yes.clone().ok_or_else(|| format!("step `{}`: missing key `yes`", self.id))?,
                no: self.no.clone().ok_or_else(|| format!("step `{}`: missing key `no`", self.id))?,
                on_no: need(&self.on_no, "on_no")?,
            },
            "ask" => Step::Ask {
                input: match need(&self.input, "input")?.as_str() {
                    "email" => InputKind::Email,
                    "order_number" => InputKind::OrderNumber,
                    other => return Err(format!("step `{}`: input = \"{other}\" is not one of email, order_number", self.id)),
                },
                var: need(&self.var, "var")?,
                ask: need(&self.ask, "ask")?,
                invalid: need(&self.invalid, "invalid")?,
            },
            "choose_reward" => Step::ChooseReward {
                ask: need(&self.ask, "ask")?,
                var: need(&self.var, "var")?,
            },
            "verify_code" => {
                for o in VERIFY_OUTCOMES {
                    if !self.outcomes.contains_key(o) {
                        return Err(format!("step `{}`: [steps.outcomes] needs a message for `{o}`", self.id));
                    }
                }
                for o in self.outcomes.keys() {
                    if !VERIFY_OUTCOMES.contains(&o.as_str()) {
                        return Err(format!("step `{}`: `{o}` is not an outcome of verify_code", self.id));
                    }
                }
                Step::VerifyCode {
                    var: need(&self.var, "var")?,
                    outcomes: self.outcomes.clone(),
                }
            }
            "action" => {
                let name = need(&self.action, "action")?;
                let action = Action::parse(&name).ok_or_else(|| {
                    format!("step `{}`: action = \"{name}\" is not one of join, claim_order, show_balance, redeem, emails_off, emails_on", self.id)
                })?;
                for o in action.outcomes() {
                    if !self.outcomes.contains_key(*o) {
                        return Err(format!("step `{}`: [steps.outcomes] needs a message for `{o}`", self.id));
                    }
                }
                for o in self.outcomes.keys() {
                    if !action.outcomes().contains(&o.as_str()) {
                        return Err(format!("step `{}`: `{o}` is not an outcome of action {name}", self.id));
                    }
                }
                Step::Action {
                    action,
                    outcomes: self.outcomes.clone(),
                }
            }
            other => {
                return Err(format!(
                    "step `{}`: do = \"{other}\" is not one of say, require_member, skip_if_member, confirm, ask, choose_reward, action, verify_code",
                    self.id
                ))
            }
        };
        Ok(step)
    }
}

impl Step {
    /// Message keys the step refers to, for the all-locales check.
    pub fn message_keys(&self) -> Vec<&str> {
        match self {
            Step::Say { say } | Step::SkipIfMember { say } => vec![say],
            Step::RequireMember { .. } => vec![],
            Step::Confirm {
                ask,
                yes,
                no,
                on_no,
            } => vec![ask, &yes.title, &no.title, on_no],
            Step::Ask { ask, invalid, .. } => vec![ask, invalid],
            Step::ChooseReward { ask, .. } => vec![ask],
            Step::Action { outcomes, .. } | Step::VerifyCode { outcomes, .. } => {
                outcomes.values().map(String::as_str).collect()
            }
        }
    }
}

/// Checks that `{placeholders}` are known and braces balanced.
pub fn check_template(text: &str) -> Result<(), String> {
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("unclosed `{{` in {text:?}"))?;
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{name}}} (known: {})",
                PLACEHOLDERS.join(", ")
            ));
        }
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("stray `}}` in {text:?}"));
    }
    Ok(())
}
