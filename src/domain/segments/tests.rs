use super::*;
use crate::domain::{ChatIdentity, Email, MemberId, Reward};
use chrono::TimeZone;

fn catalogue() -> Catalogue {
    let reward = |id: &str, points: u64| Reward {
        id: id.into(),
        title: id.into(),
        points: Points(points),
        product_ids: vec![],
        checkout_url: String::new(),
        value: None,
        discount: Default::default(),
    };
    Catalogue::new(vec![reward("mug", 200), reward("bag", 500)])
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 15, 12, 0, 0).unwrap()
}

fn parse(pairs: &[(&str, &str)]) -> Result<SegmentFilter, FilterError> {
    SegmentFilter::parse(pairs.iter().copied(), &catalogue(), now())
}

fn member(channel: Channel, locale: Option<&str>, joined: DateTime<Utc>) -> Member {
    Member {
        id: MemberId(7),
        email: Email::parse("ana@example.com").unwrap(),
        identity: ChatIdentity::new(channel, "1").unwrap(),
        first_name: None,
        locale: locale.map(str::to_owned),
        joined_at: joined,
    }
}

#[test]
fn no_parameter_admits_everyone() {
    let f = parse(&[]).unwrap();
    assert_eq!(f, SegmentFilter::default());
    let m = member(Channel::Terminal, None, now());
    assert!(f.admits_member(&m, Points::ZERO));
    assert!(f.admits_stats(&MemberStats::default()));
    assert!(!f.needs_stats());
}

#[test]
fn every_parameter_is_read() {
    let f = parse(&[
        ("min_points", "100"),
        ("max_points", " 900 "),
        ("can_redeem", "MUG"),
        ("inactive_days", "30"),
        ("joined_after", "2024-05-01"),
        ("joined_before", "2025-01-01T10:00:00+02:00"),
        ("channel", "ManyChat"),
        ("locale", "de-at"),
    ])
    .unwrap();
    assert_eq!(f.min_points, Some(Points(100)));
    assert_eq!(f.max_points, Some(Points(900)));
    assert_eq!(f.can_redeem, Some(("mug".into(), Points(200))));
    assert_eq!(f.inactive_since, Some(now() - Duration::days(30)));
    assert_eq!(
        f.joined_after,
        Some(Utc.with_ymd_and_hms(2024, 5, 1, 0, 0, 0).unwrap()),
        "a plain date is 00:00 UTC"
    );
    assert_eq!(
        f.joined_before,
        Some(Utc.with_ymd_and_hms(2025, 1, 1, 8, 0, 0).unwrap())
    );
    assert_eq!(f.channel, Some(Channel::Manychat));
    assert_eq!(
        f.locale.as_ref().map(ToString::to_string).as_deref(),
        Some("de_AT")
    );
    assert!(f.needs_stats());
}

#[test]
fn bad_values_are_refused_naming_their_parameter() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("min_points", "-1")], "min_points"),
        (&[("min_points", "1.5")], "min_points"),
        (&[("max_points", "lots")], "max_points"),
        (&[("min_points", "10"), ("max_points", "9")], "min_points"),
        (&[("can_redeem", "yacht")], "can_redeem"),
        (&[("inactive_days", "0")], "inactive_days"),
        (&[("inactive_days", "99999999")], "inactive_days"),
        (&[("joined_after", "yesterday")], "joined_after"),
        (&[("joined_after", "2024-13-01")], "joined_after"),
        (&[("joined_before", "2024-05-01T10:00:00")], "joined_before"),
        (
            &[
                ("joined_after", "2024-06-01"),
                ("joined_before", "2024-06-01"),
            ],
            "joined_after",
        ),
        (&[("channel", "telegram")], "channel"),
        (&[("locale", "german")], "locale"),
        (&[("locale", "de_DE_x")], "locale"),
        (&[("channel", "")], "channel"),
        (&[("min_points", "1"), ("min_points", "2")], "min_points"),
        (&[("min_point", "1")], "min_point"),
    ];
    for (pairs, name) in cases {
        let e = parse(pairs).expect_err(&format!("{pairs:?} should be refused"));
        assert_eq!(e.parameter, *name, "{pairs:?}");
        assert!(e.to_string().starts_with(&format!("`{name}`")), "{e}");
    }
}

#[test]
fn an_unknown_reward_is_named_with_the_known_ones() {
    let e = parse(&[("can_redeem", "yacht")]).unwrap_err();
    assert!(e.to_string().contains("`yacht`"), "{e}");
    assert!(e.to_string().contains("mug, bag"), "{e}");
}

#[test]
fn a_misspelt_parameter_gets_the_nearest_known_one() {
    let e = parse(&[("min_point", "1")]).unwrap_err();
    assert!(e.to_string().contains("did you mean `min_points`?"), "{e}");
    let e = parse(&[("colour", "red")]).unwrap_err();
    assert!(e.to_string().contains("known: min_points"), "{e}");
}

#[test]
fn member_criteria_all_have_to_hold() {
    let f = parse(&[
        ("min_points", "100"),
        ("max_points", "300"),
        ("joined_after", "2025-01-01"),
        ("joined_before", "2025-02-01"),
        ("channel", "messenger"),
        ("locale", "de"),
    ])
    .unwrap();
    let jan = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    let ok = member(Channel::Messenger, Some("de_DE"), jan);
    assert!(f.admits_member(&ok, Points(100)), "bounds are inclusive");
    assert!(f.admits_member(&ok, Points(300)));
    assert!(!f.admits_member(&ok, Points(99)));
    assert!(!f.admits_member(&ok, Points(301)));
    let feb = Utc.with_ymd_and_hms(2025, 2, 1, 0, 0, 0).unwrap();
    let cases = [
        member(Channel::Manychat, Some("de_DE"), jan),
        member(Channel::Messenger, Some("en_US"), jan),
        member(Channel::Messenger, None, jan),
        member(Channel::Messenger, Some("de_DE"), feb),
        member(
            Channel::Messenger,
            Some("de_DE"),
            jan - Duration::seconds(1),
        ),
    ];
    for m in cases {
        assert!(!f.admits_member(&m, Points(200)), "{m:?}");
    }
}

#[test]
fn can_redeem_needs_the_reward_s_points() {
    let f = parse(&[("can_redeem", "bag")]).unwrap();
    let m = member(Channel::Manychat, None, now());
    assert!(f.admits_member(&m, Points(500)));
    assert!(!f.admits_member(&m, Points(499)));
}

#[test]
fn locales_match_by_language_or_by_language_and_region() {
    let de = LocaleFilter::parse("de").unwrap();
    let de_at = LocaleFilter::parse("DE_at").unwrap();
    assert!(de.admits("de_DE") && de.admits("de-AT") && de.admits("DE"));
    assert!(!de.admits("en_US") && !de.admits("dea") && !de.admits(""));
    assert!(de_at.admits("de-AT") && de_at.admits("de_at"));
    assert!(!de_at.admits("de_DE") && !de_at.admits("de"));
}

#[test]
fn inactive_days_counts_from_the_last_ledger_entry() {
    let f = parse(&[("inactive_days", "30")]).unwrap();
    let with_last = |t: DateTime<Utc>| MemberStats {
        last_activity_at: Some(t),
        entries: 1,
        ..MemberStats::default()
    };
    assert!(f.admits_stats(&with_last(now() - Duration::days(31))));
    assert!(!f.admits_stats(&with_last(now() - Duration::days(29))));
    assert!(!f.admits_stats(&with_last(now() - Duration::days(30))));
    assert!(
        f.admits_stats(&MemberStats::default()),
        "no entry at all is inactive"
    );
}
