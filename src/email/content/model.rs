//! What a member mail says, as data: the figures of a statement or reminder (balance, rewards
//! now, the next reward, what was won so far, open coupons) or a verification code, each in the
//! form the templates print in the member's locale. Built by pure functions from plain domain
//! values; the templates (`flows/email/`) decide the words. `docs/email.md` lists every field.

use super::format;
pub use super::views::{
    AccountView, CodeView, CouponView, OrderChangeView, RewardView, Won, WonReward,
};
use crate::domain::mail::MailKind;
use crate::domain::verification::VerificationCode;
use crate::domain::{
    Catalogue, Coupon, CouponCode, CouponStatus, LedgerEntry, MemberAccount, Reward,
};
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

/// What the mail needs to know of the program: the same for every member.
#[derive(Debug, Clone, Copy)]
pub struct MailProgram<'a> {
    pub catalogue: &'a Catalogue,
    /// `program.currency`, the currency of `[[rewards]] value`.
    pub currency: &'a str,
    /// `messenger.page_username`: the chat link is `https://m.me/<it>`.
    pub page_username: Option<&'a str>,
    /// `program.shop_url`.
    pub shop_url: Option<&'a str>,
}

/// Why there is nothing to send for this member and kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("the member has no open coupon {0} (used up, cancelled, expired or not theirs)")]
    NoOpenCoupon(String),
    #[error("the member can afford no reward now")]
    NothingAffordable,
    #[error("marketing mail needs an unsubscribe link")]
    NoUnsubscribeUrl,
    #[error("verification mail is built with MailModel::verification")]
    Verification,
}

/// Everything a template may show. Fields of another kind of mail are absent (a template that
/// uses them fails the start-up check); optional values that belong to the kind are `none`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MailModel {
    pub kind: MailKind,
    pub locale: String,
    /// The name the member chats under; `none` when unknown (the templates greet without it).
    pub first_name: Option<String>,
    #[serde(flatten)]
    pub account: Option<AccountView>,
    #[serde(flatten)]
    pub verification: Option<CodeView>,
    pub chat_url: Option<String>,
    pub shop_url: Option<String>,
    /// Marketing mail only.
    pub unsubscribe_url: Option<String>,
}

impl MailModel {
    /// The model of a statement or reminder for `account`, whose coupons (oldest first) are
    /// `coupons`, in the member's stored locale. `about` names the coupon of a coupon reminder
    /// (`None`: the open coupon that expires first, e.g. for a preview).
    pub fn build(
        kind: MailKind,
        about: Option<&CouponCode>,
        account: &MemberAccount,
        coupons: &[Coupon],
        program: &MailProgram<'_>,
        unsubscribe_url: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<MailModel, ModelError> {
        if kind == MailKind::Verification {
            return Err(ModelError::Verification);
        }
        let unsubscribe_url = unsubscribe_url
            .filter(|u| !u.is_empty())
            .ok_or(ModelError::NoUnsubscribeUrl)?;
        let locale = format::locale(account.member.locale.as_deref());
        let mut view = AccountView::of(account, coupons, program, locale, now);
        match kind {
            MailKind::RewardReminder if view.rewards_now.is_empty() => {
                return Err(ModelError::NothingAffordable)
            }
            MailKind::CouponReminder => {
                let found = match about {
                    Some(code) => view.open_coupons.iter().find(|c| c.code == code.as_str()),
                    None => view.open_coupons.first(),
                };
                let shown = about.map(CouponCode::to_string).unwrap_or_default();
                view.coupon = Some(found.cloned().ok_or(ModelError::NoOpenCoupon(shown))?);
            }
            _ => {}
        }
        Ok(MailModel {
            kind,
            locale: locale.to_owned(),
            first_name: name(account.member.first_name.as_deref()),
            account: Some(view),
            verification: None,
            chat_url: chat_url(program.page_username),
            shop_url: non_empty(program.shop_url),
            unsubscribe_url: Some(unsubscribe_url.to_owned()),
        })
    }

    /// A statement lists the order changes the shop reported since `since` (the member's
    /// last statement, or the start of the period): news that may not have reached them in chat.
    pub fn with_order_changes(mut self, ledger: &[LedgerEntry], since: DateTime<Utc>) -> Self {
        if self.kind == MailKind::Statement {
            if let Some(view) = self.account.as_mut() {
                view.order_changes = order_changes(ledger, since, &self.locale);
            }
        }
        self
    }

    /// The model of a verification mail: the code and how long it can be typed. `locale` is the
    /// platform locale of the conversation (`de_DE`), `first_name` the chat's name if known.
    pub fn verification(
        code: &VerificationCode,
        valid_for: Duration,
        first_name: Option<&str>,
        locale: Option<&str>,
        program: &MailProgram<'_>,
    ) -> MailModel {
        MailModel {
            kind: MailKind::Verification,
            locale: format::locale(locale).to_owned(),
            first_name: name(first_name),
            account: None,
            verification: Some(CodeView {
                code: code.as_str().to_owned(),
                valid_minutes: valid_for.num_minutes(),
            }),
            chat_url: chat_url(program.page_username),
            shop_url: non_empty(program.shop_url),
            unsubscribe_url: None,
        }
    }
}

impl AccountView {
    fn of(
        account: &MemberAccount,
        coupons: &[Coupon],
        program: &MailProgram<'_>,
        locale: &str,
        now: DateTime<Utc>,
    ) -> AccountView {
        let catalogue = program.catalogue;
        let balance = account.balance;
        let next = catalogue.next_goal(balance);
        let progress_percent = match next {
            Some((r, _)) if r.points.0 > 0 => balance.0.saturating_mul(100) / r.points.0,
            _ => 100,
        };
        let mut open: Vec<&Coupon> = coupons
            .iter()
            .filter(|c| c.status == CouponStatus::Issued && c.expires_at > now)
            .collect();
        open.sort_by_key(|c| c.expires_at);
        AccountView {
            points: balance.0,
            currency: program.currency.to_owned(),
            rewards_now: catalogue.affordable(balance).map(reward_view).collect(),
            next_reward: next.map(|(r, _)| reward_view(r)),
            points_to_next: next.map(|(_, gap)| gap.0),
            progress_percent,
            won: won(coupons, program, locale),
            open_coupons: open
                .into_iter()
                .map(|c| {
                    let reward = catalogue.get(&c.reward_id);
                    CouponView {
                        code: c.code.to_string(),
                        reward: reward.map_or_else(|| c.reward_id.clone(), |r| r.title.clone()),
                        expires_on: format::date(c.expires_at, locale),
                        checkout_url: reward.and_then(|r| non_empty(Some(&r.checkout_url))),
                    }
                })
                .collect(),
            coupon: None,
            order_changes: Vec::new(),
        }
    }
}

/// The entries of `ledger` since `since` that the shop's reports wrote, as the statement shows
/// them.
fn order_changes(
    ledger: &[LedgerEntry],
    since: DateTime<Utc>,
    locale: &str,
) -> Vec<OrderChangeView> {
    use crate::domain::order_changes::reasons;
    ledger
        .iter()
        .filter(|e| e.at > since)
        .filter_map(|e| {
            let change = match e.reason.as_deref()? {
                reasons::AUTO_CREDIT => "credited",
                reasons::LOWERED => "lowered",
                reasons::RAISED => "raised",
                reasons::REFUNDED => "refunded",
                reasons::CANCELLED => "cancelled",
                _ => return None,
            };
            Some(OrderChangeView {
                order: e.order_number.as_ref()?.to_string(),
                change,
                points: e.points,
                shortfall: e.shortfall.map_or(0, |s| s.0),
                on: format::date(e.at, locale),
            })
        })
        .collect()
}

/// Redemptions are the member's coupons; a cancelled one gave its points back, so it was not
/// won. A reward gone from the catalogue still counts, under its id and without a value.
fn won(coupons: &[Coupon], program: &MailProgram<'_>, locale: &str) -> Won {
    let mut per_reward: Vec<(&str, u64)> = Vec::new();
    for c in coupons
        .iter()
        .filter(|c| c.status != CouponStatus::Cancelled)
    {
        match per_reward.iter_mut().find(|(id, _)| *id == c.reward_id) {
            Some((_, n)) => *n += 1,
            None => per_reward.push((&c.reward_id, 1)),
        }
    }
    let mut won = Won::default();
    for (id, count) in per_reward {
        let reward = program.catalogue.get(id);
        let value = reward
            .and_then(|r| r.value)
            .map(|v| v * Decimal::from(count));
        if let Some(v) = value {
            won.total_value = Some(won.total_value.unwrap_or_default() + v);
        }
        won.count += count;
        won.rewards.push(WonReward {
            title: reward.map_or_else(|| id.to_owned(), |r| r.title.clone()),
            count,
            value: value.map(|v| format::money(v, program.currency, locale)),
        });
    }
    won.total = won
        .total_value
        .map(|v| format::money(v, program.currency, locale));
    won
}

fn reward_view(r: &Reward) -> RewardView {
    RewardView {
        title: r.title.clone(),
        points: r.points.0,
        checkout_url: non_empty(Some(&r.checkout_url)),
    }
}

fn name(first_name: Option<&str>) -> Option<String> {
    non_empty(first_name)
}

fn chat_url(page_username: Option<&str>) -> Option<String> {
    non_empty(page_username).map(|u| format!("https://m.me/{}", u.trim_start_matches('@')))
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
