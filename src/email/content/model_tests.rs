use super::*;
use crate::email::content::sample::{self, account, catalogue, coupon, now};

const UNSUBSCRIBE: Option<&str> = Some("https://x.example/email/unsubscribe?t=T");

fn program(catalogue: &Catalogue) -> MailProgram<'_> {
    MailProgram {
        catalogue,
        currency: "EUR",
        page_username: Some("@shop.example"),
        shop_url: Some(" https://shop.example/ "),
    }
}

fn statement(balance: u64, coupons: &[Coupon], catalogue: &Catalogue) -> MailModel {
    let a = account(Some("Ana"), "de_DE", balance);
    MailModel::build(
        MailKind::Statement,
        None,
        &a,
        coupons,
        &program(catalogue),
        UNSUBSCRIBE,
        now(),
    )
    .unwrap()
}

fn view(m: &MailModel) -> &AccountView {
    m.account.as_ref().unwrap()
}

#[test]
fn balance_rewards_now_and_points_to_next_follow_the_catalogue() {
    let c = catalogue(true);
    let m = statement(250, &[], &c);
    let v = view(&m);
    assert_eq!(v.points, 250);
    let now: Vec<&str> = v.rewards_now.iter().map(|r| r.title.as_str()).collect();
    assert_eq!(now, ["Free coffee", "Mug"]);
    assert_eq!(v.next_reward.as_ref().unwrap().title, "Tote bag");
    assert_eq!(v.points_to_next, Some(250));
    assert_eq!(v.progress_percent, 50);
    assert_eq!(m.locale, "de");

    let rich = statement(900, &[], &c);
    assert!(
        view(&rich).next_reward.is_none(),
        "every reward affordable: no next"
    );
    assert_eq!(view(&rich).points_to_next, None);
    assert_eq!(view(&rich).progress_percent, 100);
    assert_eq!(view(&statement(0, &[], &c)).rewards_now.len(), 0);
}

#[test]
fn won_so_far_sums_exact_values_and_skips_cancelled_coupons() {
    let mut rewards = catalogue(true).all().to_vec();
    for r in &mut rewards {
        r.value = match r.id.as_str() {
            "mug" => Some(Decimal::new(1200, 2)),
            "coffee" => Some(Decimal::new(550, 2)),
            _ => None,
        };
    }
    let c = Catalogue::new(rewards);
    let coupons = [
        coupon("mug", "MUG-1", CouponStatus::Issued, -10),
        coupon("coffee", "COFFEE-1", CouponStatus::Issued, 3),
        coupon("mug", "MUG-2", CouponStatus::Pending, 10),
        coupon("bag", "BAG-1", CouponStatus::Issued, 10),
        coupon("mug", "MUG-3", CouponStatus::Cancelled, 10),
        coupon("gone", "GONE-1", CouponStatus::Issued, -1),
    ];
    let m = statement(10, &coupons, &c);
    let won = &view(&m).won;
    assert_eq!(won.count, 5, "the cancelled coupon gave its points back");
    assert_eq!(
        won.total_value,
        Some(Decimal::new(2950, 2)),
        "12.00 + 12.00 + 5.50"
    );
    assert_eq!(won.total.as_deref(), Some("29,50\u{a0}€"));
    let lines: Vec<(&str, u64, Option<&str>)> = won
        .rewards
        .iter()
        .map(|r| (r.title.as_str(), r.count, r.value.as_deref()))
        .collect();
    assert_eq!(
        lines,
        [
            ("Mug", 2, Some("24,00\u{a0}€")),
            ("Free coffee", 1, Some("5,50\u{a0}€")),
            ("Tote bag", 1, None),
            ("gone", 1, None),
        ]
    );
}

#[test]
fn nothing_won_has_no_total() {
    let c = catalogue(false);
    let coupons = [coupon("mug", "MUG-1", CouponStatus::Issued, 3)];
    let won = view(&statement(10, &coupons, &c)).won.clone();
    assert_eq!(
        (won.count, won.total),
        (1, None),
        "rewards without a value add nothing"
    );
    assert_eq!(view(&statement(10, &[], &c)).won, Won::default());
}

#[test]
fn open_coupons_are_issued_unexpired_and_soonest_first() {
    let c = catalogue(true);
    let coupons = [
        coupon("bag", "BAG-LATER", CouponStatus::Issued, 20),
        coupon("mug", "MUG-EXPIRED", CouponStatus::Issued, -1),
        coupon("mug", "MUG-SOON", CouponStatus::Issued, 2),
        coupon("mug", "MUG-PENDING", CouponStatus::Pending, 5),
        coupon("mug", "MUG-CANCELLED", CouponStatus::Cancelled, 5),
    ];
    let m = statement(0, &coupons, &c);
    let open: Vec<(&str, &str, &str)> = view(&m)
        .open_coupons
        .iter()
        .map(|c| (c.code.as_str(), c.reward.as_str(), c.expires_on.as_str()))
        .collect();
    assert_eq!(
        open,
        [
            ("MUG-SOON", "Mug", "04.03.2026"),
            ("BAG-LATER", "Tote bag", "22.03.2026")
        ]
    );
    assert!(
        view(&m).coupon.is_none(),
        "only a coupon reminder has `coupon`"
    );
}

#[test]
fn a_coupon_reminder_is_about_its_coupon_while_it_is_open() {
    let c = catalogue(true);
    let a = account(None, "en", 0);
    let coupons = [
        coupon("bag", "BAG-1", CouponStatus::Issued, 20),
        coupon("mug", "MUG-1", CouponStatus::Issued, 2),
        coupon("mug", "MUG-X", CouponStatus::Cancelled, 2),
    ];
    let build = |code: Option<&str>| {
        let code = code.map(|c| CouponCode::from_stored(c.into()));
        let p = program(&c);
        MailModel::build(
            MailKind::CouponReminder,
            code.as_ref(),
            &a,
            &coupons,
            &p,
            UNSUBSCRIBE,
            now(),
        )
    };
    let about = |m: MailModel| m.account.unwrap().coupon.unwrap().code;
    assert_eq!(about(build(Some("BAG-1")).unwrap()), "BAG-1");
    assert_eq!(
        about(build(None).unwrap()),
        "MUG-1",
        "none named: the one expiring first"
    );
    assert_eq!(
        build(Some("MUG-X")).unwrap_err(),
        ModelError::NoOpenCoupon("MUG-X".into())
    );
}

#[test]
fn a_reward_reminder_needs_an_affordable_reward_and_marketing_an_unsubscribe_link() {
    let c = catalogue(true);
    let a = account(None, "en", 99);
    let p = program(&c);
    let build = |kind, unsub| MailModel::build(kind, None, &a, &[], &p, unsub, now());
    assert_eq!(
        build(MailKind::RewardReminder, UNSUBSCRIBE).unwrap_err(),
        ModelError::NothingAffordable
    );
    assert_eq!(
        build(MailKind::Statement, None).unwrap_err(),
        ModelError::NoUnsubscribeUrl
    );
    assert_eq!(
        build(MailKind::Verification, UNSUBSCRIBE).unwrap_err(),
        ModelError::Verification
    );
}

#[test]
fn links_are_built_from_the_settings() {
    let c = catalogue(true);
    let m = statement(0, &[], &c);
    assert_eq!(m.chat_url.as_deref(), Some("https://m.me/shop.example"));
    assert_eq!(m.shop_url.as_deref(), Some("https://shop.example/"));
    assert_eq!(m.unsubscribe_url, UNSUBSCRIBE.map(str::to_owned));
    let bare = MailProgram {
        catalogue: &c,
        currency: "EUR",
        page_username: Some(""),
        shop_url: None,
    };
    let code = VerificationCode::parse("123456").unwrap();
    let v = MailModel::verification(
        &code,
        Duration::minutes(15),
        Some(" "),
        Some("fr_FR"),
        &bare,
    );
    assert_eq!(
        (v.chat_url, v.shop_url, v.unsubscribe_url),
        (None, None, None)
    );
    assert_eq!(v.first_name, None, "a blank name is no name");
    assert_eq!(v.locale, "en", "an unsupported locale gets the default");
    assert_eq!(v.verification.unwrap().valid_minutes, 15);
    assert!(v.account.is_none());
}

#[test]
fn kind_specific_fields_are_absent_from_other_kinds() {
    let c = catalogue(true);
    let fields = |m: &MailModel| match serde_json::to_value(m).unwrap() {
        serde_json::Value::Object(o) => o.keys().cloned().collect::<Vec<_>>(),
        _ => unreachable!(),
    };
    let s = fields(&statement(250, &[], &c));
    for f in [
        "points",
        "rewards_now",
        "won",
        "open_coupons",
        "unsubscribe_url",
        "chat_url",
    ] {
        assert!(s.contains(&f.to_string()), "{f} in {s:?}");
    }
    assert!(!s.contains(&"code".to_string()) && !s.contains(&"coupon".to_string()));
    let code = VerificationCode::parse("123456").unwrap();
    let v = fields(&MailModel::verification(
        &code,
        Duration::minutes(15),
        None,
        None,
        &program(&c),
    ));
    assert!(v.contains(&"code".to_string()) && v.contains(&"valid_minutes".to_string()));
    assert!(!v.contains(&"points".to_string()), "{v:?}");
}

#[test]
fn a_statement_lists_the_periods_order_changes_the_shop_reported_and_nothing_else() {
    let catalogue = sample::catalogue(true);
    let p = MailProgram {
        catalogue: &catalogue,
        currency: "EUR",
        page_username: None,
        shop_url: None,
    };
    let a = sample::account(None, "en", 100);
    let since = sample::now() - Duration::days(28);
    let build = |kind| {
        MailModel::build(kind, None, &a, &[], &p, Some("https://x/u"), sample::now())
            .unwrap()
            .with_order_changes(&sample::order_changes(), since)
    };
    let statement = build(MailKind::Statement);
    let changes = &statement.account.as_ref().unwrap().order_changes;
    let got: Vec<(&str, &str, i64, u64)> = changes
        .iter()
        .map(|c| (c.order.as_str(), c.change, c.points, c.shortfall))
        .collect();
    assert_eq!(
        got,
        vec![
            ("1001", "credited", 59, 0),
            ("1001", "lowered", -20, 0),
            ("1002", "raised", 5, 0),
            ("1002", "refunded", -10, 30),
            ("1003", "cancelled", -25, 0),
        ]
    );
    let reminder = build(MailKind::RewardReminder);
    assert!(reminder.account.unwrap().order_changes.is_empty());
}
