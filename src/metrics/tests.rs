//! The exposition: exact names (counters once suffixed), types, labels and histogram buckets.

use super::*;
use crate::domain::{ChatIdentity, Email, Points, Profile};
use crate::store::{EventQueue, JoinOutcome, LoyaltyStore, NewMember, SledStore};
use std::sync::Arc;

/// The value of the one series named exactly `series` (name and labels).
fn value(text: &str, series: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(str::to_owned)
}

fn types(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_counter_and_histogram_has_its_exact_name_and_type() {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    metrics.joined(50);
    metrics.claimed(Channel::Manychat, "credited", 210);
    metrics.redeemed("free-mug", "redeemed", 250);
    metrics.webhook_events(Channel::Messenger).inc_by(3);
    metrics.rate_limited("admin_per_ip").inc();
    metrics.shop_requests("find_order").observe(0.2);
    metrics.flush_observer()(Duration::from_micros(1500));
    metrics.email_result("statement", true);
    metrics.email_result("verification", false);
    metrics.email_unsubscribed();
    let text = encode(&registry).unwrap();
    let want = [
        "loyalty_joins_total counter",
        "loyalty_points_credited_total counter",
        "loyalty_points_redeemed_total counter",
        "loyalty_order_claims_total counter",
        "loyalty_redemptions_total counter",
        "loyalty_webhook_events_total counter",
        "loyalty_rate_limited_total counter",
        "loyalty_shop_request_seconds histogram",
        "loyalty_store_flush_seconds histogram",
        "loyalty_emails_sent_total counter",
        "loyalty_emails_failed_total counter",
        "loyalty_email_unsubscribes_total counter",
    ];
    assert_eq!(types(&text), want, "{text}");
    assert_eq!(
        value(&text, "loyalty_emails_sent_total{kind=\"statement\"}").as_deref(),
        Some("1")
    );
    assert_eq!(
        value(&text, "loyalty_emails_failed_total{kind=\"verification\"}").as_deref(),
        Some("1")
    );
    assert_eq!(
        value(&text, "loyalty_emails_sent_total{kind=\"reward_reminder\"}").as_deref(),
        Some("0")
    );
    assert_eq!(
        value(&text, "loyalty_email_unsubscribes_total").as_deref(),
        Some("1")
    );
    assert!(!text.contains("_total_total"), "{text}");
    let v = |series: &str| value(&text, series).unwrap_or_else(|| panic!("{series}\n{text}"));
    assert_eq!(v("loyalty_joins_total"), "1");
    assert_eq!(v("loyalty_points_credited_total"), "260");
    assert_eq!(v("loyalty_points_redeemed_total"), "250");
    assert_eq!(
        v(r#"loyalty_order_claims_total{channel="manychat",result="credited"}"#),
        "1"
    );
    assert_eq!(
        v(r#"loyalty_order_claims_total{channel="messenger",result="not_found"}"#),
        "0",
        "known series exist from the start"
    );
    assert_eq!(
        v(r#"loyalty_redemptions_total{reward="free-mug",result="redeemed"}"#),
        "1"
    );
    assert_eq!(
        v(r#"loyalty_webhook_events_total{channel="messenger"}"#),
        "3"
    );
    assert_eq!(
        v(r#"loyalty_rate_limited_total{limit="admin_per_ip"}"#),
        "1"
    );
    assert_eq!(v(r#"loyalty_store_flush_seconds_bucket{le="0.001"}"#), "0");
    assert_eq!(v(r#"loyalty_store_flush_seconds_bucket{le="0.002"}"#), "1");
    assert_eq!(v(r#"loyalty_store_flush_seconds_bucket{le="+Inf"}"#), "1");
    assert_eq!(v("loyalty_store_flush_seconds_count"), "1");
    assert_eq!(
        v(r#"loyalty_shop_request_seconds_bucket{operation="find_order",le="0.25"}"#),
        "1"
    );
}

#[test]
fn default_metrics_count_into_nothing_and_never_fail() {
    let metrics = Metrics::default();
    metrics.joined(1);
    metrics.claimed(Channel::Terminal, "not_found", 0);
    metrics.flush_observer()(Duration::ZERO);
    let registry = Registry::default();
    assert_eq!(encode(&registry).unwrap(), "");
}

#[test]
fn the_store_gauges_read_the_totals_and_show_a_depth_only_once_known() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path(), 8 << 20).unwrap());
    let new = NewMember {
        identity: ChatIdentity::new(Channel::Messenger, "100").unwrap(),
        email: Email::parse("ana@example.com").unwrap(),
        profile: Profile::default(),
        bonus: Points(50),
    };
    assert!(matches!(
        store.join(new, chrono::Utc::now()).unwrap(),
        JoinOutcome::Joined(_)
    ));
    let mut registry = Registry::default();
    let (totals, queue): (Arc<dyn LoyaltyStore>, Arc<dyn EventQueue>) =
        (store.clone(), store.clone());
    registry.register_collector(Box::new(StoreGauges::new(totals, Some(queue))));
    let text = encode(&registry).unwrap();
    assert_eq!(value(&text, "loyalty_members_total").as_deref(), Some("1"));
    assert_eq!(
        value(&text, "loyalty_points_outstanding").as_deref(),
        Some("50")
    );
    assert_eq!(value(&text, "loyalty_inbox_pending").as_deref(), Some("0"));
    assert_eq!(
        value(&text, "loyalty_outbox_pending"),
        None,
        "unknown before the queue was read"
    );
    assert!(types(&text).contains(&"loyalty_members_total gauge".to_owned()));
    store.pending_outbound().unwrap();
    let text = encode(&registry).unwrap();
    assert_eq!(value(&text, "loyalty_outbox_pending").as_deref(), Some("0"));
}
