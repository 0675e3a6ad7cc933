//! Per-order turns: a claim and a shop's webhook about the same order, or two webhooks about
//! it, each read the shop and then write the store. Without turns, the one that read first may
//! write last and put back a state the shop has left (a refund lost under a claim's stale
//! read). The store's atomic writes keep each step whole; these turns keep the steps in order.
//! In memory: one process serves a store (sled's lock), so that is where the turns are.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::OwnedMutexGuard;

/// Drop the entries of finished turns once the map holds this many.
const PRUNE_AT: usize = 1024;

#[derive(Default)]
pub struct Turns {
    held: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl Turns {
    /// Waits for `key`'s turn; it lasts as long as the guard.
    pub async fn take(&self, key: String) -> OwnedMutexGuard<()> {
        let lock = {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            if held.len() >= PRUNE_AT {
                held.retain(|_, w| w.strong_count() > 0);
            }
            match held.get(&key).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(tokio::sync::Mutex::new(()));
                    held.insert(key, Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }
}

/// The turn key of an order's number (claims and webhooks after their read).
pub fn number_key(number: &str) -> String {
    format!("n:{}", number.to_ascii_uppercase())
}

/// The turn key of a shop's order id (webhooks, around their read).
pub fn id_key(id: &str) -> String {
    format!("i:{}", id.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_turn_per_key_at_a_time_and_other_keys_go_on() {
        let turns = Arc::new(Turns::default());
        let first = turns.take(number_key("1001")).await;
        let other = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            turns.take(number_key("1002")),
        )
        .await;
        assert!(other.is_ok(), "another order is not held up");
        let t = Arc::clone(&turns);
        let waiting = tokio::spawn(async move { t.take(number_key("1001")).await });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the same order waits");
        drop(first);
        let second = waiting.await.unwrap();
        drop(second);
    }
}
