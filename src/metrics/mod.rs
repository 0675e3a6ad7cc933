//! The service's Prometheus metrics. [`Metrics`] holds typed handles that the program, the
//! channels, the rate limits, the shop and the store's flusher count into; start-up registers
//! them in one [`Registry`] and hands the handles down explicitly (there is no global). The
//! gauges that describe the store (members, points outstanding, queue depths) are not kept
//! here: [`StoreGauges`] reads them from the store at each scrape, so they are right after a
//! restart too. [`encode`] writes the Prometheus text format (0.0.4), which every Prometheus
//! scrapes. Every name and label is listed in `docs/observability.md`.
//!
//! Label values come from small closed sets (channels, result words, limit names, the
//! configured reward ids), never from customer input, so the number of series stays bounded.

mod gauges;
mod settings;

pub use gauges::StoreGauges;
pub use settings::MetricsSettings;

use crate::domain::Channel;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Duration;

/// The `Content-Type` of what [`encode`] writes.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Shop calls take milliseconds to the shop's timeout (at most 60 s).
const SHOP_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// A group-commit flush takes about a millisecond; every answer waiting on a slow one waits.
const FLUSH_BUCKETS: [f64; 11] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// The channels whose series exist from the start (the terminal chat never runs in `serve`).
const SERVED_CHANNELS: [Channel; 2] = [Channel::Messenger, Channel::Manychat];
/// Every answer to a claim: [`crate::program::ClaimResult::label`], and `error`.
pub const CLAIM_RESULTS: [&str; 9] = [
    "credited",
    "already_claimed",
    "claimed_by_other",
    "not_found",
    "not_paid",
    "other_currency",
    "shop_unavailable",
    "limited",
    "error",
];
/// The rate limits, by their key under `[limits]`.
pub const LIMITS: [&str; 6] = [
    "claims_per_member",
    "failed_claims_per_member",
    "redemptions_per_member",
    "claims_per_ip",
    "redemptions_per_ip",
    "admin_per_ip",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClaimLabels {
    channel: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RedemptionLabels {
    reward: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    channel: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// Every kind of member email: [`crate::domain::mail::MailKind::as_str`].
pub const EMAIL_KINDS: [&str; 4] = [
    "statement",
    "reward_reminder",
    "coupon_reminder",
    "verification",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Handles to every counter and histogram; cheap to clone (each is shared). A default one
/// counts into handles no registry shows: for tools and tests that need no metrics.
#[derive(Clone, Debug)]
pub struct Metrics {
    joins: Counter,
    points_credited: Counter,
    points_redeemed: Counter,
    order_claims: Family<ClaimLabels, Counter>,
    redemptions: Family<RedemptionLabels, Counter>,
    webhook_events: Family<ChannelLabels, Counter>,
    rate_limited: Family<LimitLabels, Counter>,
    shop_request_seconds: Histograms<OperationLabels>,
    store_flush_seconds: Histogram,
    emails_sent: Family<KindLabels, Counter>,
    emails_failed: Family<KindLabels, Counter>,
    email_unsubscribes: Counter,
    order_updates: Family<OrderUpdateLabels, Counter>,
    order_news: Family<ClaimLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OrderUpdateLabels {
    source: &'static str,
    result: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            joins: Counter::default(),
            points_credited: Counter::default(),
            points_redeemed: Counter::default(),
            order_claims: Family::default(),
            redemptions: Family::default(),
            webhook_events: Family::default(),
            rate_limited: Family::default(),
            shop_request_seconds: Family::new_with_constructor(|| Histogram::new(SHOP_BUCKETS)),
            store_flush_seconds: Histogram::new(FLUSH_BUCKETS),
            emails_sent: Family::default(),
            emails_failed: Family::default(),
            email_unsubscribes: Counter::default(),
            order_updates: Family::default(),
            order_news: Family::default(),
        }
    }
}

impl Metrics {
    /// New handles, registered in `registry`. Counters are registered without their `_total`
    /// suffix: the encoder appends it (`loyalty_joins` is exposed as `loyalty_joins_total`).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Metrics::default();
        registry.register("loyalty_joins", "Members who joined", m.joins.clone());
        registry.register(
            "loyalty_points_credited",
            "Points credited to members: signup bonuses and claimed orders",
            m.points_credited.clone(),
        );
        registry.register(
            "loyalty_points_redeemed",
            "Points spent on rewards whose coupon the shop issued",
            m.points_redeemed.clone(),
        );
        registry.register(
            "loyalty_order_claims",
            "Order claims, by channel and result",
            m.order_claims.clone(),
        );
        registry.register(
            "loyalty_redemptions",
            "Reward redemptions, by reward and result",
            m.redemptions.clone(),
        );
        registry.register(
            "loyalty_webhook_events",
            "Chat events received on an authenticated webhook or Dynamic Block call, by channel",
            m.webhook_events.clone(),
        );
        registry.register(
            "loyalty_rate_limited",
            "Requests refused by a rate limit, by the limit's key under [limits]",
            m.rate_limited.clone(),
        );
        registry.register(
            "loyalty_shop_request_seconds",
            "Duration of calls to the shop, by operation",
            m.shop_request_seconds.clone(),
        );
        registry.register(
            "loyalty_store_flush_seconds",
            "Duration of the store's group-commit flushes",
            m.store_flush_seconds.clone(),
        );
        registry.register(
            "loyalty_emails_sent",
            "Member emails SMTP accepted, by kind",
            m.emails_sent.clone(),
        );
        registry.register(
            "loyalty_emails_failed",
            "Member email attempts SMTP refused or that did not reach it, by kind",
            m.emails_failed.clone(),
        );
        registry.register(
            "loyalty_email_unsubscribes",
            "Members who opted out of marketing email (link, one-click or chat)",
            m.email_unsubscribes.clone(),
        );
        registry.register(
            "loyalty_order_updates",
            "Shop order webhooks handled, by shop and what they did to the order's points",
            m.order_updates.clone(),
        );
        registry.register(
            "loyalty_order_news",
            "Order news for members, by channel and whether it went out in the chat (sent) or waits for the statement (closed_window, no_sender, busy, failed)",
            m.order_news.clone(),
        );
        for kind in EMAIL_KINDS {
            let _ = m.emails_sent.get_or_create_owned(&KindLabels { kind });
            let _ = m.emails_failed.get_or_create_owned(&KindLabels { kind });
        }
        // Zero series from the start, so that rates work from the first event.
        for channel in SERVED_CHANNELS {
            let _ = m.webhook_events(channel);
            for result in CLAIM_RESULTS {
                let labels = ClaimLabels {
                    channel: channel.as_str(),
                    result,
                };
                let _ = m.order_claims.get_or_create_owned(&labels);
            }
        }
        for limit in LIMITS {
            let _ = m.rate_limited(limit);
        }
        m
    }

    /// An email of `kind` was accepted by SMTP (`true`) or an attempt failed.
    pub fn email_result(&self, kind: &'static str, sent: bool) {
        let family = if sent {
            &self.emails_sent
        } else {
            &self.emails_failed
        };
        family.get_or_create(&KindLabels { kind }).inc();
    }

    /// A member opted out of marketing email.
    pub fn email_unsubscribed(&self) {
        self.email_unsubscribes.inc();
    }

    /// An order webhook from `source` ended with `result` (`changed`, `credited`, `unchanged`,
    /// `duplicate`, `shop_unavailable`, …).
    pub fn order_update(&self, source: &'static str, result: &'static str) {
        self.order_updates
            .get_or_create(&OrderUpdateLabels { source, result })
            .inc();
    }

    /// Order news for a member of `channel` ended with `result` (`sent`, `closed_window`,
    /// `no_sender`, `busy`, `failed`).
    pub fn order_news(&self, channel: &'static str, result: &'static str) {
        self.order_news
            .get_or_create(&ClaimLabels { channel, result })
            .inc();
    }

    /// Points credited without a claim (`program.auto_credit`).
    pub fn auto_credited(&self, points: u64) {
        self.points_credited.inc_by(points);
    }

    /// A member joined with `bonus` points.
    pub fn joined(&self, bonus: u64) {
        self.joins.inc();
        self.points_credited.inc_by(bonus);
    }

    /// A claim through `channel` ended with `result`; `credited` points went to the member.
    pub fn claimed(&self, channel: Channel, result: &'static str, credited: u64) {
        let channel = channel.as_str();
        self.order_claims
            .get_or_create(&ClaimLabels { channel, result })
            .inc();
        self.points_credited.inc_by(credited);
    }

    /// A redemption of `reward` (a configured id, or `unknown`) ended with `result`; `spent`
    /// points went on an issued coupon.
    pub fn redeemed(&self, reward: &str, result: &'static str, spent: u64) {
        let labels = RedemptionLabels {
            reward: reward.to_owned(),
            result,
        };
        self.redemptions.get_or_create(&labels).inc();
        self.points_redeemed.inc_by(spent);
    }

    /// The counter of events received on `channel`'s webhook.
    pub fn webhook_events(&self, channel: Channel) -> Counter {
        let channel = channel.as_str();
        self.webhook_events
            .get_or_create_owned(&ChannelLabels { channel })
    }

    /// The counter of refusals by the limit named `limit` (one of [`LIMITS`]).
    pub fn rate_limited(&self, limit: &'static str) -> Counter {
        self.rate_limited
            .get_or_create_owned(&LimitLabels { limit })
    }

    /// The histogram of the shop's `operation` (`find_order`, `create_coupon`).
    pub fn shop_requests(&self, operation: &'static str) -> Histogram {
        self.shop_request_seconds
            .get_or_create_owned(&OperationLabels { operation })
    }

    /// What the store's flusher calls after each flush, with its duration: one histogram
    /// observation (a short lock, no allocation).
    pub fn flush_observer(&self) -> impl Fn(Duration) + Send + Sync + 'static {
        let flushes = self.store_flush_seconds.clone();
        move |took| flushes.observe(took.as_secs_f64())
    }
}

/// Writes every metric of `registry` in the Prometheus text format ([`CONTENT_TYPE`]).
pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, registry)?;
    Ok(text)
}

#[cfg(test)]
mod tests;
