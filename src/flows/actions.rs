//! What a flow step does when it runs: the per-turn context (who, locale, replies so far) and
//! the actions that call the program (join, claim, balance, redeem) and pick the outcome message.

use super::definition::{Action, InputKind};
use super::registry::Registry;
use super::render::{self, Renderer, Vars};
use super::turn::{Awaiting, Choice, Reply, Turn};
use crate::domain::MemberAccount;
use crate::domain::{
    Catalogue, ChatIdentity, Email, OrderNumber, OrderStatus, Points, Profile, Reward,
};
use crate::limits::Limited;
use crate::program::{ClaimResult, JoinResult, Program, ProgramError, RedeemResult};
use std::collections::BTreeMap;

mod verify;

pub use verify::Verified;

pub struct Ctx<'a> {
    program: &'a Program,
    registry: &'a Registry,
    who: &'a ChatIdentity,
    profile: &'a Profile,
    account: Option<MemberAccount>,
    pub locale: String,
    /// ManyChat: no stored conversation; confirmations are implied by the call itself.
    pub stateless: bool,
    /// Names this input for idempotent effects (a replayed redemption returns its coupon).
    pub request: Option<String>,
    replies: Vec<Reply>,
    points_changed: bool,
    limited: Option<Limited>,
}

impl<'a> Ctx<'a> {
    pub fn new(
        program: &'a Program,
        registry: &'a Registry,
        who: &'a ChatIdentity,
        profile: &'a Profile,
        account: Option<MemberAccount>,
        locale: String,
        stateless: bool,
    ) -> Self {
        Ctx {
            program,
            registry,
            who,
            profile,
            account,
            locale,
            stateless,
            request: None,
            replies: vec![],
            points_changed: false,
            limited: None,
        }
    }

    pub fn is_member(&self) -> bool {
        self.account.is_some()
    }

    pub fn renderer(&self) -> Renderer<'_> {
        Renderer {
            registry: self.registry,
            catalogue: self.program.catalogue(),
            locale: &self.locale,
            is_member: self.is_member(),
        }
    }

    pub fn text(&self, key: &str) -> String {
        self.renderer().text(key, &self.vars())
    }

    pub fn say(&mut self, key: &str) {
        self.say_with(key, &Vars::new());
    }

    /// A question: the message plus the choices that answer it.
    pub fn ask(&mut self, key: &str, choices: Vec<Choice>) {
        let mut reply = self.renderer().reply(key, &self.vars());
        if !choices.is_empty() {
            reply.choices = choices;
        }
        self.replies.push(reply);
    }

    fn say_with(&mut self, key: &str, extra: &Vars) {
        let mut vars = self.vars();
        vars.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
        let reply = self.renderer().reply(key, &vars);
        self.replies.push(reply);
    }

    fn balance(&self) -> Points {
        self.account.as_ref().map(|a| a.balance).unwrap_or_default()
    }

    /// Values every template may use.
    fn vars(&self) -> Vars {
        let rules = self.program.rules();
        let catalogue = self.program.catalogue();
        let balance = self.balance();
        let first_name = self
            .profile
            .first_name
            .clone()
            .or_else(|| {
                self.account
                    .as_ref()
                    .and_then(|a| a.member.first_name.clone())
            })
            .filter(|n| !n.trim().is_empty());
        let mut v = Vars::new();
        v.insert("points", balance.to_string());
        v.insert("bonus", rules.signup_bonus.to_string());
        v.insert(
            "rate",
            rules.points_per_currency_unit.normalize().to_string(),
        );
        v.insert("currency", rules.currency.clone());
        v.insert("valid_days", rules.coupon_valid_days.to_string());
        if let Some(c) = catalogue.cheapest() {
            v.insert("cheapest_reward", c.title.clone());
            v.insert("cheapest_points", c.points.to_string());
        }
        let now: Vec<&str> = catalogue
            .affordable(balance)
            .map(|r| r.title.as_str())
            .collect();
        v.insert("rewards_now", now.join(", "));
        if let Some((r, gap)) = catalogue.next_goal(balance) {
            v.insert("next_reward", r.title.clone());
            v.insert("points_to_next", gap.to_string());
        }
        let name =
            first_name.unwrap_or_else(|| self.renderer().text("name_fallback", &Vars::new()));
        v.insert("first_name", name);
        let status = self.reward_status(catalogue, balance, &v);
        v.insert("reward_status", status);
        v
    }

    /// "You can redeem now: … / N more points to …", composed from the status_* messages.
    fn reward_status(&self, catalogue: &Catalogue, balance: Points, v: &Vars) -> String {
        let r = self.renderer();
        let mut parts = vec![];
        if catalogue.affordable(balance).next().is_some() {
            parts.push(r.text("status_can_redeem", v));
        }
        match catalogue.next_goal(balance) {
            Some(_) => parts.push(r.text("status_next", v)),
            None if !catalogue.all().is_empty() => parts.push(r.text("status_all_rewards", v)),
            None => {}
        }
        parts.join(" ")
    }

    async fn refresh(&mut self) -> Result<(), ProgramError> {
        self.account = self.program.account(self.who).await?;
        Ok(())
    }

    /// Runs an action and says the message for its outcome. `Ok(false)` ends the flow.
    pub async fn act(
        &mut self,
        action: Action,
        outcomes: &BTreeMap<String, String>,
        vars: &BTreeMap<String, String>,
    ) -> Result<bool, ProgramError> {
        let (outcome, extra, go_on) = match action {
            Action::Join => self.join(vars).await?,
            Action::ClaimOrder => self.claim(vars).await?,
            Action::ShowBalance => ("balance", Vars::new(), true),
            Action::Redeem => self.redeem(vars).await?,
            Action::EmailsOff => self.emails(false).await?,
            Action::EmailsOn => self.emails(true).await?,
        };
        if let Some(key) = outcomes.get(outcome) {
            self.say_with(key, &extra);
        }
        Ok(go_on)
    }

    async fn join(
        &mut self,
        vars: &BTreeMap<String, String>,
    ) -> Result<(&'static str, Vars, bool), ProgramError> {
        // A code typed into a stateless run (ManyChat's callback carries the whole flow's
        // values): the code went out on an earlier call; the verify step takes it from here.
        if vars.contains_key(verify::CODE_VAR) && self.program.verifies_email() {
            return Ok(("", Vars::new(), true));
        }
        let Some(email) = vars.get("email").and_then(|e| Email::parse(e).ok()) else {
            return Ok(("email_taken", Vars::new(), false));
        };
        let mut profile = self.profile.clone();
        profile.locale = profile.locale.or_else(|| Some(self.locale.clone()));
        let out = self.program.join(self.who, email, profile).await?;
        Ok(match out {
            JoinResult::Joined(a) => {
                self.account = Some(a);
                self.points_changed = true;
                ("joined", Vars::new(), true)
            }
            JoinResult::AlreadyMember(a) => {
                self.account = Some(a);
                ("already_member", Vars::new(), true)
            }
            JoinResult::EmailTaken => ("email_taken", Vars::new(), false),
            JoinResult::CodeSent(email) => ("code_sent", verify::email_vars(&email), true),
            JoinResult::CodeCoolingDown { wait_secs } => {
                ("code_wait", verify::wait_vars(wait_secs), true)
            }
            JoinResult::CodeNotSent => ("code_not_sent", Vars::new(), true),
        })
    }

    async fn claim(
        &mut self,
        vars: &BTreeMap<String, String>,
    ) -> Result<(&'static str, Vars, bool), ProgramError> {
        let (Some(acc), Some(order)) = (
            self.account.clone(),
            vars.get("order_number")
                .and_then(|o| OrderNumber::parse(o).ok()),
        ) else {
            return Ok(("not_found", Vars::new(), false));
        };
        let mut extra = Vars::new();
        extra.insert("order_number", order.to_string());
        let out = self.program.claim(&acc.member, order).await?;
        let outcome = match out {
            ClaimResult::Credited { points, .. } => {
                self.refresh().await?;
                self.points_changed = true;
                extra.insert("earned", points.to_string());
                "credited"
            }
            ClaimResult::AlreadyClaimedByYou { at, .. } => {
                extra.insert("claimed_on", render::date(at, &self.locale));
                "already_claimed_by_you"
            }
            ClaimResult::AlreadyClaimedByOther => "already_claimed",
            ClaimResult::NotFound => "not_found",
            ClaimResult::NotPaid(status) => {
                let word = match status {
                    OrderStatus::Pending => "order_status_pending",
                    OrderStatus::Cancelled => "order_status_cancelled",
                    OrderStatus::Refunded => "order_status_refunded",
                    OrderStatus::Test => "order_status_test",
                    _ => "order_status_other",
                };
                extra.insert("status", self.renderer().text(word, &Vars::new()));
                "not_paid"
            }
            ClaimResult::OtherCurrency(c) => {
                extra.insert("status", c);
                "other_currency"
            }
            ClaimResult::EmailWithheld => "email_withheld",
            ClaimResult::ShopUnavailable => "shop_unavailable",
            ClaimResult::Limited(limited) => return Ok(self.limited(limited, "claims_limited")),
        };
        Ok((outcome, extra, outcome == "credited"))
    }

    async fn redeem(
        &mut self,
        vars: &BTreeMap<String, String>,
    ) -> Result<(&'static str, Vars, bool), ProgramError> {
        let Some(acc) = self.account.clone() else {
            return Ok(("unknown_reward", Vars::new(), false));
        };
        let reward_id = vars.get("reward_id").cloned().unwrap_or_default();
        let out = self
            .program
            .redeem(&acc.member, &reward_id, self.request.as_deref())
            .await?;
        let mut extra = Vars::new();
        let outcome = match out {
            RedeemResult::Redeemed { coupon, reward, .. } => {
                self.refresh().await?;
                self.points_changed = true;
                reward_vars(&mut extra, &reward);
                extra.insert("code", coupon.code.to_string());
                extra.insert("expires_on", render::date(coupon.expires_at, &self.locale));
                "redeemed"
            }
            RedeemResult::Insufficient { reward, gap, .. } => {
                reward_vars(&mut extra, &reward);
                extra.insert("gap", gap.to_string());
                "insufficient"
            }
            RedeemResult::UnknownReward => "unknown_reward",
            RedeemResult::ShopUnavailable { .. } => {
                self.refresh().await?;
                "shop_unavailable"
            }
            RedeemResult::Limited(limited) => {
                return Ok(self.limited(limited, "redemptions_limited"))
            }
        };
        Ok((outcome, extra, outcome == "redeemed"))
    }

    /// A rate limit said no: the engine's own polite message (not a flow outcome, so every
    /// flow file gets it without declaring it), and the flow ends.
    fn limited(&mut self, limited: Limited, message: &'static str) -> (&'static str, Vars, bool) {
        let mut extra = Vars::new();
        let minutes = limited.retry_after_secs().div_ceil(60);
        extra.insert("wait_minutes", minutes.to_string());
        self.say_with(message, &extra);
        self.limited = Some(limited);
        ("limited", Vars::new(), false)
    }

    pub fn finish(self, awaiting: Option<Awaiting>) -> Turn {
        Turn {
            replies: self.replies,
            member: self.account.as_ref().map(|a| a.member.id),
            balance: self.account.as_ref().map(|a| a.balance),
            points_changed: self.points_changed,
            awaiting,
            limited: self.limited.map(|l| l.retry_after),
        }
    }
}

fn reward_vars(v: &mut Vars, r: &Reward) {
    v.insert("reward", r.title.clone());
    v.insert("reward_points", r.points.to_string());
    v.insert("checkout_url", r.checkout_url.clone());
}

/// `yes`/`ja`/`no`/`nein` and friends; `None` when the text is neither.
pub fn yes_no(norm: &str, _locale: &str) -> Option<bool> {
    const YES: &[&str] = &[
        "yes",
        "y",
        "yeah",
        "yep",
        "sure",
        "ok",
        "okay",
        "yes please",
        "ja",
        "j",
        "klar",
        "gerne",
        "ja bitte",
        "jo",
    ];
    const NO: &[&str] = &[
        "no",
        "n",
        "nope",
        "no thanks",
        "nein",
        "ne",
        "nee",
        "nein danke",
    ];
    if YES.contains(&norm) {
        Some(true)
    } else if NO.contains(&norm) {
        Some(false)
    } else {
        None
    }
}

/// A reward named by its title or id in typed text.
pub fn reward_by_text<'c>(catalogue: &'c Catalogue, norm: &str) -> Option<&'c Reward> {
    catalogue.all().iter().find(|r| {
        let title = r.title.to_lowercase();
        norm == title || norm == r.id.to_lowercase() || norm.starts_with(&format!("{title} ("))
    })
}

/// Reads an email or order number from what the customer typed, also from within a sentence
/// ("my email is ana@example.com", "it's #1001").
pub fn parse_input(kind: InputKind, raw: &str) -> Option<String> {
    let candidates = std::iter::once(raw).chain(raw.split_whitespace());
    let mut found = None;
    for c in candidates {
        let c = c.trim_matches(|ch: char| {
            matches!(
                ch,
                ',' | '.' | '!' | '?' | ';' | ':' | '"' | '\'' | '(' | ')'
            ) && ch != '#'
        });
        found = match kind {
            InputKind::Email if c.contains('@') => Email::parse(c).ok().map(|e| e.to_string()),
            InputKind::OrderNumber => OrderNumber::parse(c).ok().map(|o| o.to_string()),
            _ => None,
        };
        if found.is_some() {
            break;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_found_inside_sentences() {
        assert_eq!(
            parse_input(InputKind::Email, "my email is Ana@Example.com.").as_deref(),
            Some("ana@example.com")
        );
        assert_eq!(
            parse_input(InputKind::Email, "ana at example dot com"),
            None
        );
        assert_eq!(
            parse_input(InputKind::OrderNumber, "#1001").as_deref(),
            Some("1001")
        );
        assert_eq!(
            parse_input(InputKind::OrderNumber, "it's 1001!").as_deref(),
            Some("1001")
        );
        assert_eq!(parse_input(InputKind::OrderNumber, "no idea"), None);
    }

    #[test]
    fn yes_and_no_in_both_languages() {
        assert_eq!(yes_no("ja", "de"), Some(true));
        assert_eq!(yes_no("yes", "en"), Some(true));
        assert_eq!(yes_no("nein", "de"), Some(false));
        assert_eq!(yes_no("maybe", "en"), None);
    }
}
