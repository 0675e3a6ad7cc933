//! The inbox's intake: events recorded but not yet processed, many to a record of the `intake`
//! tree, and in memory which of them are still pending.
//!
//! Why not a slot per event in the inbox: a sled insert per event was most of intake's cost,
//! and since event keys grow, about one insert in eight split a leaf and rewrote its parent
//! index node whole (`docs/benchmark.md`, Decisions: intake records). Here intake appends each
//! new event to an open batch in memory, and the flusher writes the batch as one record at the
//! start of the flush that its writers wait for ([`GroupCommit::before_each_flush`]), so every
//! 200 still waits for a flush that holds its event. An event's inbox slot is written when it is
//! done (as before, its replies live there), and a record goes once every event in it is done.
//!
//! Pending events are known by a 128-bit hash of their key (SHA-256, truncated) mapped to their
//! record, rebuilt from the records at open: about 40 bytes of memory per pending event, and
//! two keys would have to collide at 2^-128 odds for an event to be taken for a duplicate.
//!
//! [`GroupCommit::before_each_flush`]: crate::store::GroupCommit::before_each_flush

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use sled::Tree;

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

/// A record's events stop growing past this size, so that a leaf of the `intake` tree (up to
/// 17 records) stays under sled's blob threshold (a quarter of its 512 KiB segment): sled
/// writes larger pages to blob files, which it never syncs and the group commit's
/// `fdatasync` of the log does not cover. One event larger than this gets a record alone.
pub(super) const RECORD_BYTES: usize = 6 * 1024;

/// While record writes fail (a full or broken disk), events wait in memory for the next try,
/// up to about this many bytes of them; beyond it a new event is refused (the webhook answers
/// 500 and Meta delivers it again later) instead of memory growing for as long as the disk
/// stays broken. About 13,000 events of a typical size. The default of
/// `store.max_unwritten_events_mb`.
pub(super) const UNWRITTEN_MAX_BYTES: usize = 8 * 1024 * 1024;

pub(super) struct Intake {
    tree: Tree,
    state: Mutex<State>,
    /// [`UNWRITTEN_MAX_BYTES`] until the configuration (`store.max_unwritten_events_mb`) sets it.
    max_unwritten_bytes: AtomicUsize,
    /// Makes this many of the next record writes fail (`u32::MAX`: all), as a full disk would.
    #[cfg(test)]
    pub fail_writes: std::sync::atomic::AtomicU32,
}

/// A record not yet written (the last one is being filled): its events as a JSON array
/// without the closing bracket.
struct Unwritten {
    seq: u64,
    events: Vec<u8>,
    count: usize,
    /// A write of it failed: whoever recorded its events got an error, not a 200.
    failed: bool,
}

impl Unwritten {
    fn new(seq: u64) -> Self {
        Unwritten {
            seq,
            events: vec![b'['],
            count: 0,
            failed: false,
        }
    }

    fn value(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.events.len() + 1);
        v.extend_from_slice(&self.events);
        v.push(b']');
        v
    }
}

struct State {
    /// Oldest first; the last is the open one, never absent.
    unwritten: Vec<Unwritten>,
    /// Every pending event, by key hash → the record holding it.
    pending: HashMap<KeyHash, u64>,
    /// Per record, how many of its events are pending.
    left: HashMap<u64, usize>,
}

impl State {
    fn filling(&mut self) -> &mut Unwritten {
        self.unwritten
            .last_mut()
            .expect("the open record is always there")
    }

    fn unwritten(&self, seq: u64) -> Option<&Unwritten> {
        self.unwritten.iter().find(|u| u.seq == seq)
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

/// A record's events, as read: each pending one's head and JSON, and whether it held any
/// event that is not pending (done, or unreadable).
struct Read<'v> {
    pending: Vec<(EventHead<'v>, &'v RawValue)>,
    others: bool,
    unreadable: bool,
}

/// What a scan of the records yields: a pending event's head and its whole JSON.
pub(super) type Visit<'v> = dyn FnMut(EventHead<'_>, &RawValue) -> Result<(), StoreError> + 'v;

impl Intake {
    /// Reads the records: every event without a slot in `inbox` is pending. Records left with
    /// nothing pending (a crash came between an event's done slot and its record's removal)
    /// are removed; one with an unreadable event stays, for an operator to look at.
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
            let Some(record) = parse(&k, &v) else {
                continue;
            };
            let mut n = 0;
            for (h, head, _) in &record.events {
                if inbox.contains_key(head.key.as_bytes())? || pending.contains_key(h) {
                    continue;
                }
                pending.insert(*h, seq);
                n += 1;
            }
            let kept = record.unreadable;
            if n > 0 {
                left.insert(seq, n);
            } else if !kept {
                settled.push(k);
            }
        }
        for k in settled {
            tree.remove(k)?;
        }
        Ok(Intake {
            tree,
            state: Mutex::new(State {
                unwritten: vec![Unwritten::new(last + 1)],
                pending,
                left,
            }),
            max_unwritten_bytes: AtomicUsize::new(UNWRITTEN_MAX_BYTES),
            #[cfg(test)]
            fail_writes: Default::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update of the state is complete before anything that can panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds an event (`encoded`, its JSON) to the open record unless it is pending already or
    /// has a slot in `inbox` (done); true when it is new.
    /// The caller then asks for a flush, which writes the record.
    ///
    /// A copy of a pending event whose record failed to be written also counts as new (it is
    /// not added twice): the first copy's sender got an error, so nobody is handing that
    /// event to the worker, and the worker's read-backs cannot see it until it is written.
    /// The worker runs a key at most once (it asks whether it is done first).
    pub fn add(&self, inbox: &Tree, key: &str, encoded: &[u8]) -> Result<bool, StoreError> {
        let h = hash(key);
        // Under the lock with the check of the inbox: finishing writes the slot before it
        // drops the pending entry, so a copy arriving meanwhile meets one or the other.
        let mut st = self.lock();
        if let Some(&seq) = st.pending.get(&h) {
            return Ok(st.unwritten(seq).is_some_and(|u| u.failed));
        }
        if inbox.contains_key(key.as_bytes())? {
            return Ok(false);
        }
        // Only while writes fail: otherwise what waits is at most one flush's worth.
        if st.unwritten[0].failed {
            let waiting: usize = st.unwritten.iter().map(|u| u.events.len()).sum();
            if waiting + encoded.len() > self.max_unwritten_bytes.load(Relaxed) {
                return Err(StoreError::Backend(
                    "the store cannot write events now; this one is refused until it can".into(),
                ));
            }
        }
        let open = st.filling();
        if open.count > 0 && open.events.len() + encoded.len() > RECORD_BYTES {
            let next = Unwritten::new(open.seq + 1);
            st.unwritten.push(next);
        }
        let open = st.filling();
        if open.count > 0 {
            open.events.push(b',');
        }
        open.events.extend_from_slice(encoded);
        open.count += 1;
        let seq = open.seq;
        st.pending.insert(h, seq);
        *st.left.entry(seq).or_default() += 1;
        Ok(true)
    }

    /// Writes every record not written yet; run by the flusher (one thread) at the start of
    /// each flush. Each write is of a copy, made outside the lock one record at a time (so a
    /// retry during an outage copies one record, not all that wait), and a record leaves the
    /// queue only once written: a failure (or a panic) leaves it for the next flush.
    pub fn write_unwritten(&self) -> sled::Result<()> {
        // Closes the record being filled: events added from now on wait for the next flush.
        let open = {
            let mut st = self.lock();
            let filling = st.filling();
            if filling.count > 0 {
                let next = Unwritten::new(filling.seq + 1);
                st.unwritten.push(next);
            }
            st.filling().seq
        };
        loop {
            // Only this thread removes records, so the oldest stays the oldest meanwhile.
            let next = {
                let st = self.lock();
                let oldest = &st.unwritten[0];
                (oldest.seq < open).then(|| (oldest.seq, oldest.value()))
            };
            let Some((seq, value)) = next else {
                return Ok(());
            };
            let written = self.write(seq, &value);
            let mut st = self.lock();
            if let Err(e) = written {
                for u in st.unwritten.iter_mut().take_while(|u| u.seq < open) {
                    u.failed = true;
                }
                return Err(e);
            }
            st.unwritten.remove(0);
        }
    }

    /// One record's write (in tests, failed when the test asks for it).
    fn write(&self, seq: u64, value: &[u8]) -> sled::Result<()> {
        #[cfg(test)]
        if self.failing() {
            return Err(sled::Error::Unsupported(
                "a failure made by the test".into(),
            ));
        }
        self.tree.insert(seq.to_be_bytes(), value).map(drop)
    }

    /// Call after the event's done slot is written: it is no longer pending, and its record is
    /// removed when it was the record's last pending event.
    pub fn finished(&self, key: &str) -> Result<(), StoreError> {
        let mut st = self.lock();
        let Some(seq) = st.pending.remove(&hash(key)) else {
            return Ok(());
        };
        // A record not written yet has nothing to remove; if it is written empty after all,
        // the next open removes it.
        if st.settle(seq) && st.unwritten(seq).is_none() {
            drop(st);
            self.tree.remove(seq.to_be_bytes())?;
        }
        Ok(())
    }

    fn read<'v>(&self, k: &[u8], v: &'v [u8]) -> Option<Read<'v>> {
        let seq = keys::read_u64(k)?; // reported at open
        let Parsed {
            events: heads,
            unreadable: unreadable_event,
        } = parse(k, v)?;
        let still: Vec<bool> = {
            let st = self.lock();
            heads
                .iter()
                .map(|(h, _, _)| st.pending.get(h) == Some(&seq))
                .collect()
        };
        let mut read = Read {
            pending: Vec::with_capacity(heads.len()),
            others: unreadable_event,
            unreadable: unreadable_event,
        };
        for ((_, head, raw), pending) in heads.into_iter().zip(still) {
            if pending {
                read.pending.push((head, raw));
            } else {
                read.others = true;
            }
        }
        Some(read)
    }

    /// Calls `visit` for every pending event in the written records, in record order.
    pub fn scan(&self, visit: &mut Visit<'_>) -> Result<(), StoreError> {
        for kv in self.tree.iter() {
            let (k, v) = kv?;
            if let Some(read) = self.read(&k, &v) {
                for (head, raw) in read.pending {
                    visit(head, raw)?;
                }
            }
        }
        Ok(())
    }

    /// Rewrites each record holding done events to hold its pending (and unreadable) ones
    /// alone. Run before the inbox forgets old done slots: a record kept by one event that
    /// never finishes would otherwise, at the next open, count its done neighbours as pending
    /// again once their slots are gone.
    pub fn compact(&self) -> Result<usize, StoreError> {
        let mut rewritten = 0;
        for kv in self.tree.iter() {
            let (k, v) = kv?;
            let Some(read) = self.read(&k, &v) else {
                continue;
            };
            if !read.others || read.unreadable {
                // Nothing to drop; or an unreadable event, kept as it was for an operator.
                continue;
            }
            if read.pending.is_empty() {
                // All done: its last `finished` has not removed it yet, or it was written
                // after its events were done. Gone either way, unless it changed meanwhile.
                let absent: Option<&[u8]> = None;
                if self.tree.compare_and_swap(&k, Some(&v), absent)?.is_ok() {
                    rewritten += 1;
                }
                continue;
            }
            let mut value = b"[".to_vec();
            for (i, (_, raw)) in read.pending.iter().enumerate() {
                if i > 0 {
                    value.push(b',');
                }
                value.extend_from_slice(raw.get().as_bytes());
            }
            value.push(b']');
            // Compare-and-swap: a record that changed or went meanwhile is left alone.
            if self
                .tree
                .compare_and_swap(&k, Some(&v), Some(value))?
                .is_ok()
            {
                rewritten += 1;
            }
        }
        Ok(rewritten)
    }

    /// Forgets every pending event and every record not yet written: for a store emptied by
    /// a failed import, whose `intake` tree is cleared after a flush wrote what waited.
    pub fn forget_all(&self) {
        let mut st = self.lock();
        let next = st.filling().seq + 1;
        st.unwritten = vec![Unwritten::new(next)];
        st.pending.clear();
        st.left.clear();
    }

    /// Whether the test made this write fail.
    #[cfg(test)]
    fn failing(&self) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        let left = |n: u32| (n > 0).then(|| if n == u32::MAX { n } else { n - 1 });
        self.fail_writes.fetch_update(SeqCst, SeqCst, left).is_ok()
    }

    pub fn set_max_unwritten_bytes(&self, bytes: usize) {
        self.max_unwritten_bytes.store(bytes, Relaxed);
    }

    #[cfg(test)]
    pub fn max_unwritten_bytes(&self) -> usize {
        self.max_unwritten_bytes.load(Relaxed)
    }

    /// How many events are pending.
    pub fn pending_count(&self) -> usize {
        self.lock().pending.len()
    }

    /// How many events are pending, and in how many records.
    #[cfg(test)]
    pub fn counts(&self) -> (usize, usize) {
        let st = self.lock();
        (st.pending.len(), st.left.len())
    }
}

/// A record's events, each with its key's hash, and whether any of them was unreadable.
struct Parsed<'v> {
    events: Vec<(KeyHash, EventHead<'v>, &'v RawValue)>,
    unreadable: bool,
}

/// `None` (reported) when the record is not a list of events.
fn parse<'v>(k: &[u8], v: &'v [u8]) -> Option<Parsed<'v>> {
    let Ok(raws) = serde_json::from_slice::<Vec<&RawValue>>(v) else {
        unreadable(k, "not a list of events");
        return None;
    };
    let mut parsed = Parsed {
        events: Vec::with_capacity(raws.len()),
        unreadable: false,
    };
    for raw in raws {
        match serde_json::from_str::<EventHead<'_>>(raw.get()) {
            Ok(head) => parsed.events.push((hash(&head.key), head, raw)),
            Err(_) => {
                unreadable(k, "an event in it is unreadable");
                parsed.unreadable = true;
            }
        }
    }
    Some(parsed)
}

fn unreadable(key: &[u8], why: &str) {
    tracing::error!(record = ?key, why, "unreadable intake record: events in it are not processed");
}
