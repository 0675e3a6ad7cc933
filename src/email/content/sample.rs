//! Made-up members the templates are rendered for at start-up (and in previews of the
//! templates alone): one with everything a mail can show, one with as little as it can have,
//! so both sides of each `{% if %}` meet the strict-undefined check.

use super::model::{MailModel, MailProgram};
use crate::domain::mail::MailKind;
use crate::domain::verification::{VerificationCode, CODE_TTL};
use crate::domain::{
    Catalogue, Channel, ChatIdentity, Coupon, CouponCode, CouponStatus, Email, LedgerEntry, Member,
    MemberAccount, MemberId, OrderNumber, Points, Reward,
};
use chrono::{DateTime, Duration, TimeZone, Utc};
use rust_decimal::Decimal;

/// The sample's clock: fixed, so a check never depends on the day it runs.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0)
        .single()
        .unwrap_or_default()
}

pub fn catalogue(with_values: bool) -> Catalogue {
    let reward = |id: &str, title: &str, points: u64, value: i64| Reward {
        id: id.into(),
        title: title.into(),
        points: Points(points),
        discount: Default::default(),
        product_ids: vec![],
        checkout_url: format!("https://shop.example/cart/{id}"),
        value: with_values.then(|| Decimal::new(value, 2)),
    };
    Catalogue::new(vec![
        reward("coffee", "Free coffee", 100, 350),
        reward("mug", "Mug", 200, 1200),
        reward("bag", "Tote bag", 500, 2500),
    ])
}

pub fn account(first_name: Option<&str>, locale: &str, balance: u64) -> MemberAccount {
    MemberAccount {
        member: Member {
            id: MemberId(1),
            email: Email::parse("ana@example.com").unwrap_or_else(|_| unreachable!()),
            identity: ChatIdentity {
                channel: Channel::Messenger,
                id: "1".into(),
            },
            first_name: first_name.map(str::to_owned),
            locale: Some(locale.to_owned()),
            joined_at: now() - Duration::days(90),
        },
        balance: Points(balance),
    }
}

pub fn coupon(reward: &str, code: &str, status: CouponStatus, expires_in_days: i64) -> Coupon {
    Coupon {
        code: CouponCode::from_stored(code.into()),
        member: MemberId(1),
        reward_id: reward.into(),
        product_ids: vec![],
        points: Points(200),
        created_at: now() - Duration::days(20),
        expires_at: now() + Duration::days(expires_in_days),
        status,
    }
}

/// The models a template of `kind` in `locale` is checked with.
pub fn models(kind: MailKind, locale: &str) -> Vec<MailModel> {
    let full_catalogue = catalogue(true);
    let bare_catalogue = catalogue(false);
    let full = MailProgram {
        catalogue: &full_catalogue,
        currency: "EUR",
        page_username: Some("shop.example"),
        shop_url: Some("https://shop.example/"),
    };
    let bare = MailProgram {
        catalogue: &bare_catalogue,
        currency: "EUR",
        page_username: None,
        shop_url: None,
    };
    if kind == MailKind::Verification {
        let code = VerificationCode::parse("042917").unwrap_or_else(VerificationCode::generate);
        return vec![
            MailModel::verification(&code, CODE_TTL, Some("Ana"), Some(locale), &full),
            MailModel::verification(&code, CODE_TTL, None, Some(locale), &bare),
        ];
    }
    let coupons = vec![
        coupon("mug", "MUG-7QX4-K2PA-9RTD-XW3M", CouponStatus::Issued, 4),
        coupon("mug", "MUG-H8RT-2K4P-QX9D-M3WA", CouponStatus::Issued, -3),
        coupon(
            "coffee",
            "COFFEE-ZX4N-7HQ2-RT8K-P3DW",
            CouponStatus::Issued,
            20,
        ),
        coupon(
            "bag",
            "BAG-4WQ8-N2TP-7KXD-H9RA",
            CouponStatus::Cancelled,
            20,
        ),
    ];
    let one_open = vec![coupon(
        "coffee",
        "COFFEE-ZX4N-7HQ2-RT8K-P3DW",
        CouponStatus::Issued,
        4,
    )];
    let unsubscribe = Some("https://loyalty.shop.example/email/unsubscribe?t=sample");
    let mut cases: Vec<(MemberAccount, &[Coupon], &MailProgram<'_>)> = vec![
        (account(Some("Ana"), locale, 250), &coupons, &full),
        (account(None, locale, 900), &one_open, &bare),
    ];
    if kind == MailKind::Statement {
        cases.push((account(None, locale, 0), &[], &bare));
    }
    let changes = order_changes();
    cases
        .into_iter()
        .filter_map(|(a, c, p)| MailModel::build(kind, None, &a, c, p, unsubscribe, now()).ok())
        .map(|m| m.with_order_changes(&changes, now() - Duration::days(28)))
        .collect()
}

/// One entry of each order change the shop's reports write, for the statement.
pub fn order_changes() -> Vec<LedgerEntry> {
    use crate::domain::order_changes::reasons;
    let n = |s: &str| OrderNumber::parse(s).expect("a sample number");
    let at = |days: i64| now() - Duration::days(days);
    vec![
        LedgerEntry::order_credit(n("1001"), Points(59), at(20)).because(reasons::AUTO_CREDIT),
        LedgerEntry::order_reversal(n("1001"), Points(20), Points::ZERO, at(15))
            .because(reasons::LOWERED),
        LedgerEntry::order_credit(n("1002"), Points(5), at(12)).because(reasons::RAISED),
        LedgerEntry::order_reversal(n("1002"), Points(10), Points(30), at(10))
            .because(reasons::REFUNDED),
        LedgerEntry::order_reversal(n("1003"), Points(25), Points::ZERO, at(5))
            .because(reasons::CANCELLED),
        // Before the period, and a claim: neither is listed.
        LedgerEntry::order_credit(n("999"), Points(5), at(40)).because(reasons::AUTO_CREDIT),
        LedgerEntry::order_credit(n("1004"), Points(5), at(2)),
    ]
}
