//! The inbox's intake: events recorded but not yet processed, many to a record of the `intake`
//! tree, and in memory which of them are still pending.
//!
//! Why not a slot per event in the inbox: a sled insert per event was most of intake's cost,
//! and since event keys grow, about one insert in eight split a leaf and rewrote its parent
//! index node whole (`docs/benchmark.md`, items 24 and 29). Here intake appends each new event
//! to an open batch in memory, and the flusher writes the batch as one record at the start of
//! the flush that its writers wait for ([`GroupCommit::before_each_flush`]), so every 200
//! still waits for a flush that holds its event. An event's inbox slot is written when it is
//! done (as before, its replies live there), and a record goes once every event in it is done.
//!
//! Pending events are known by a 128-bit hash of their key (SHA-256, truncated) mapped to their
//! record, rebuilt from the records at open: about 40 bytes of memory per pending event, and
//! two keys would have to collide at 2^-128 odds for an event to be taken for a duplicate.
//!
//! [`GroupCommit::before_each_flush`]: crate::store::GroupCommit::before_each_flush

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use sled::{IVec, Tree};

use crate::store::{keys, StoreError};

/// Identifies a pending event: the first 128 bits of the SHA-256 of its key.
type KeyHash = u128;

fn hash(key: &str) -> KeyHash {
    let digest = Sha256::digest(key.as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(first)
}

/// The event fields a scan needs; the payload is skimmed.
#[derive(serde::Deserialize)]
pub(super) struct EventHead<'a> {
    #[serde(borrow)]
    pub key: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub sender: std::borrow::Cow<'a, str>,
    pub timestamp_ms: i64,
}

pub(super) struct Intake {
    tree: Tree,
    state: Mutex<State>,
}

struct State {
    /// Key of the record being filled.
    open_seq: u64,
    /// Its events: a JSON array without its closing bracket.
    open: Vec<u8>,
    open_events: usize,
    /// Every pending event, by key hash → the record holding it.
    pending: HashMap<KeyHash, u64>,
    /// Per record, how many of its events are pending.
    left: HashMap<u64, usize>,
}

impl State {
    fn reset_open(&mut self) {
        self.open.clear();
        self.open.push(b'[');
        self.open_events = 0;
    }

    /// One event of record `seq` is done; true when it was the record's last.
    fn settle(&mut self, seq: u64) -> bool {
        match self.left.get_mut(&seq) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                self.left.remove(&seq);
                true
            }
            None => false,
        }
    }
}

/// What a scan of the records yields: a pending event's head and its whole JSON.
pub(super) type Visit<'v> = dyn FnMut(EventHead<'_>, &RawValue) -> Result<(), StoreError> + 'v;

impl Intake {
    /// Reads the records: every event without a slot in `inbox` is pending. Records left with
    /// nothing pending (a crash came between an event's done slot and its record's removal)
    /// are removed.
    pub fn open(tree: Tree, inbox: &Tree) -> Result<Intake, StoreError> {
        let mut pending = HashMap::new();
        let mut left = HashMap::new();
        let mut last = 0;
        let mut settled = Vec::new();
        for kv in tree.iter() {
            let (k, v) = kv?;
            let Some(seq) = keys::read_u64(&k) else {
                unreadable(&k, "its key is not a record number");
                continue;
            };
            last = last.max(seq);
            let Ok(events) = serde_json::from_slice::<Vec<&RawValue>>(&v) else {
                unreadable(&k, "not a list of events");
                continue;
            };
            let mut n = 0;
            for raw in events {
                let Ok(head) = serde_json::from_str::<EventHead<'_>>(raw.get()) else {
                    unreadable(&k, "an event in it is unreadable");
                    continue;
                };
                let h = hash(&head.key);
                if inbox.contains_key(head.key.as_bytes())? || pending.contains_key(&h) {
                    continue;
                }
                pending.insert(h, seq);
                n += 1;
            }
            if n == 0 {
                settled.push(k);
            } else {
                left.insert(seq, n);
            }
        }
        for k in settled {
            tree.remove(k)?;
        }
        let mut state = State {
            open_seq: last + 1,
            open: Vec::new(),
            open_events: 0,
            pending,
            left,
        };
        state.reset_open();
        Ok(Intake {
            tree,
            state: Mutex::new(state),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update of the state is complete before anything that can panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds an event (`encoded`, its JSON) to the open record unless it is pending already or
    /// has a slot in `inbox` (done, or recorded by an earlier version); true when added. The
    /// caller then asks for a flush, which writes the record.
    pub fn add(&self, inbox: &Tree, key: &str, encoded: &[u8]) -> Result<bool, StoreError> {
        let h = hash(key);
        // Under the lock with the check of the inbox: finishing writes the slot before it
        // drops the pending entry, so a copy arriving meanwhile meets one or the other.
        let mut st = self.lock();
        if st.pending.contains_key(&h) || inbox.contains_key(key.as_bytes())? {
            return Ok(false);
        }
        if st.open_events > 0 {
            st.open.push(b',');
        }
        st.open.extend_from_slice(encoded);
        st.open_events += 1;
        let seq = st.open_seq;
        st.pending.insert(h, seq);
        *st.left.entry(seq).or_default() += 1;
        Ok(true)
    }

    /// Writes the open record, if it holds any event; run by the flusher before each flush.
    /// On failure the events stay in the open record, so the next flush writes them.
    pub fn write_open(&self) -> sled::Result<()> {
        let mut st = self.lock();
        if st.open_events == 0 {
            return Ok(());
        }
        let mut value = std::mem::take(&mut st.open);
        value.push(b']');
        let written = self.tree.insert(st.open_seq.to_be_bytes(), value.as_slice());
        value.pop();
        st.open = value;
        written?;
        st.open_seq += 1;
        st.reset_open();
        Ok(())
    }

    /// Call after the event's done slot is written: it is no longer pending, and its record is
    /// removed when it was the record's last pending event.
    pub fn finished(&self, key: &str) -> Result<(), StoreError> {
        let mut st = self.lock();
        let Some(seq) = st.pending.remove(&hash(key)) else {
            return Ok(());
        };
        // The open record is not written yet: nothing to remove (if it empties, `open`
        // removes the record it becomes).
        if st.settle(seq) && seq != st.open_seq {
            drop(st);
            self.tree.remove(seq.to_be_bytes())?;
        }
        Ok(())
    }

    /// Calls `visit` for every pending event in the written records, in record order.
    pub fn scan(&self, visit: &mut Visit<'_>) -> Result<(), StoreError> {
        for kv in self.tree.iter() {
            let (k, v) = kv?;
            self.scan_record(&k, &v, visit)?;
        }
        Ok(())
    }

    fn scan_record(&self, k: &IVec, v: &IVec, visit: &mut Visit<'_>) -> Result<(), StoreError> {
        let Some(seq) = keys::read_u64(k) else {
            return Ok(()); // reported at open
        };
        let Ok(events) = serde_json::from_slice::<Vec<&RawValue>>(v) else {
            unreadable(k, "not a list of events");
            return Ok(());
        };
        let mut heads = Vec::with_capacity(events.len());
        for raw in events {
            match serde_json::from_str::<EventHead<'_>>(raw.get()) {
                Ok(head) => heads.push((hash(&head.key), head, raw)),
                Err(_) => unreadable(k, "an event in it is unreadable"),
            }
        }
        let still: Vec<bool> = {
            let st = self.lock();
            heads
                .iter()
                .map(|(h, _, _)| st.pending.get(h) == Some(&seq))
                .collect()
        };
        for ((_, head, raw), pending) in heads.into_iter().zip(still) {
            if pending {
                visit(head, raw)?;
            }
        }
        Ok(())
    }

    /// How many events are pending, and in how many written or open records.
    #[cfg(test)]
    pub fn counts(&self) -> (usize, usize) {
        let st = self.lock();
        (st.pending.len(), st.left.len())
    }
}

fn unreadable(key: &[u8], why: &str) {
    tracing::error!(record = ?key, why, "unreadable intake record: events in it are not processed");
}
