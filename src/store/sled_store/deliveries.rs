//! Shop webhook delivery ids already handled, so a redelivery is answered without asking the
//! shop again. (Handling one twice would change nothing: order changes converge. This saves
//! the shop call.) Kept a week, longer than Shopify's and WooCommerce's retry schedules.
//!
//! `webhook_deliveries` keys: `d` source NUL id → the time key it was recorded at; and
//! `t` time key source NUL id → empty, in time order, from which old ones are pruned a few
//! at a time as new ones come.

use chrono::{DateTime, Duration, Utc};

use super::mail::due::time_key;
use super::SledStore;
use crate::store::StoreError;

const KEEP_DAYS: i64 = 7;
/// Old ids dropped per new one: more than come in, so the tree stays about a week long.
const PRUNE_EACH: usize = 4;

fn id_key(source: &str, delivery: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + source.len() + delivery.len());
    k.push(b'd');
    k.extend_from_slice(source.as_bytes());
    k.push(0);
    k.extend_from_slice(delivery.as_bytes());
    k
}

fn time_prefixed(at: &[u8], id_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + at.len() + id_key.len());
    k.push(b't');
    k.extend_from_slice(at);
    k.extend_from_slice(&id_key[1..]);
    k
}

impl SledStore {
    pub(super) fn seen_delivery(&self, source: &str, delivery: &str) -> Result<bool, StoreError> {
        let seen = self.deliveries.contains_key(id_key(source, delivery))?;
        self.commit.settle_read()?;
        Ok(seen)
    }

    pub(super) fn write_delivery(
        &self,
        source: &str,
        delivery: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let key = id_key(source, delivery);
        let at = time_key(now);
        let cutoff = time_key(now - Duration::days(KEEP_DAYS));
        let writing = self.commit.writing();
        self.atomic.run([&self.deliveries], |[d]| {
            if d.get(&key)?.is_some() {
                return Ok(());
            }
            d.insert(key.as_slice(), &at[..])?;
            d.insert(time_prefixed(&at, &key), &[][..])?;
            Ok(())
        })?;
        // Pruning reads outside the operation: the oldest few, each removed with its pair.
        let end = time_prefixed(&cutoff, b"d");
        let old: Vec<_> = self
            .deliveries
            .range(&b"t"[..]..end.as_slice())
            .take(PRUNE_EACH)
            .collect::<Result<_, _>>()?;
        if !old.is_empty() {
            self.atomic.run([&self.deliveries], |[d]| {
                for (tkey, _) in &old {
                    let mut dkey = vec![b'd'];
                    dkey.extend_from_slice(&tkey[1 + at.len()..]);
                    d.remove(tkey)?;
                    d.remove(dkey)?;
                }
                Ok(())
            })?;
        }
        writing.wait()
    }
}

#[cfg(test)]
mod tests {
    use super::super::SledStore;
    use chrono::{Duration, TimeZone, Utc};

    #[test]
    fn a_delivery_is_seen_once_recorded_and_forgotten_after_a_week() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), 8 << 20).unwrap();
        let t0 = Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap();
        assert!(!store.seen_delivery("shopify", "abc").unwrap());
        store.write_delivery("shopify", "abc", t0).unwrap();
        assert!(store.seen_delivery("shopify", "abc").unwrap());
        assert!(
            !store.seen_delivery("woocommerce", "abc").unwrap(),
            "per source"
        );
        store
            .write_delivery("shopify", "later", t0 + Duration::days(8))
            .unwrap();
        assert!(!store.seen_delivery("shopify", "abc").unwrap());
        assert!(store.seen_delivery("shopify", "later").unwrap());
        assert_eq!(store.deliveries.len(), 2, "one id, kept twice");
    }

    #[test]
    fn delivery_ids_do_not_make_a_store_hold_data_for_an_import() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), 8 << 20).unwrap();
        store.write_delivery("shopify", "abc", Utc::now()).unwrap();
        assert!(!super::super::migrate::has_data(&store.db).unwrap());
    }
}
