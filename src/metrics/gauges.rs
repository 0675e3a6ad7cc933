//! The gauges read from the store at each scrape: members, points outstanding, and the chat
//! queue's depths. Each read is a point read or an in-memory count, never a scan (see
//! [`crate::store::LoyaltyStore::totals`] for how the totals stay right without one, also after
//! a restart). A depth the store cannot tell yet is left out of the answer rather than shown
//! as a made-up 0.

use crate::store::{EventQueue, LoyaltyStore};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use std::sync::Arc;

/// Registered in the metrics [`prometheus_client::registry::Registry`] once the store is open.
pub struct StoreGauges {
    store: Arc<dyn LoyaltyStore>,
    /// The Messenger queue; `None` when no channel queues anything.
    queue: Option<Arc<dyn EventQueue>>,
}

impl StoreGauges {
    pub fn new(store: Arc<dyn LoyaltyStore>, queue: Option<Arc<dyn EventQueue>>) -> Self {
        StoreGauges { store, queue }
    }
}

impl std::fmt::Debug for StoreGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreGauges")
    }
}

impl Collector for StoreGauges {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        match self.store.totals() {
            Ok(totals) => {
                gauge(
                    &mut encoder,
                    "loyalty_members_total",
                    "Members in the store.",
                    totals.members,
                )?;
                gauge(
                    &mut encoder,
                    "loyalty_points_outstanding",
                    "Sum of all members' balances.",
                    totals.points,
                )?;
            }
            // A scrape must not fail for it: the other metrics still go out.
            Err(e) => tracing::warn!(error = %e, "cannot read the store's totals for /metrics"),
        }
        let depths = self.queue.as_ref().map(|q| q.queue_depths());
        if let Some(n) = depths.and_then(|d| d.inbox) {
            gauge(
                &mut encoder,
                "loyalty_inbox_pending",
                "Chat events received and not processed yet.",
                n,
            )?;
        }
        if let Some(n) = depths.and_then(|d| d.outbox) {
            gauge(
                &mut encoder,
                "loyalty_outbox_pending",
                "Replies queued and not delivered yet.",
                n,
            )?;
        }
        Ok(())
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(value);
    let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
    gauge.encode(metric)
}
