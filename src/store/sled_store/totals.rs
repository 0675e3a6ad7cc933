//! The store's totals: how many members there are and the sum of their balances, in one record
//! of the `totals` tree, so that the metrics' gauges read one key instead of scanning a
//! million members (seconds), at every scrape and after every restart.
//!
//! Why a persisted record and not a count in memory: a count must start from somewhere, and
//! after a restart that is either a scan (which a start must not wait for, and which races
//! the writes made while it runs) or a gauge that is wrong until the scan ends. The record is
//! always right instead, because it is written where the numbers change: every new member in
//! `join` and every ledger entry in [`super::records::tx_append`] stage the record's new value
//! in the same atomic operation (`atomic.rs`) as the member record they write. The whole write
//! set is journaled, so a crash keeps or loses the record together with the change it counts.
//! The price is one more small write per operation, under the writer lock it already holds.
//!
//! A store written before the record existed has members and no record: it is counted once at
//! open, as a migration (one pass over the `members` tree, reading only the balances: 7 s for
//! 300,000 members in an unoptimised build, so a second or a few per million in a release
//! build, once in the store's life), and the record written. Tools that write members outside
//! the atomic operations (an import) call [`SledStore::recount_totals`].
//!
//! The record: members, then points, each a big-endian `u64`.

use std::time::Instant;

use serde::Deserialize;
use sled::Tree;

use super::atomic::TxTree;
use super::atomic::{tx, Abort, Tx};
use super::records::decode;
use super::SledStore;
use crate::domain::Points;
use crate::store::{StoreError, Totals};

const KEY: &[u8] = b"totals";

fn encode(t: Totals) -> [u8; 16] {
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(&t.members.to_be_bytes());
    raw[8..].copy_from_slice(&t.points.to_be_bytes());
    raw
}

fn read_record(raw: &[u8]) -> Result<Totals, Abort> {
    let bad = || Abort::Corrupt("totals record".into(), None);
    let raw = <[u8; 16]>::try_from(raw).map_err(|_| bad())?;
    let half = |r: &[u8]| u64::from_be_bytes(r.try_into().expect("8 bytes"));
    Ok(Totals {
        members: half(&raw[..8]),
        points: half(&raw[8..]),
    })
}

/// Inside an atomic operation: `members` more members and `points` more (or, negative,
/// fewer) points. Saturating: a record made wrong by a tool must not fail a redemption.
pub(super) fn tx_add(totals: &TxTree<'_>, members: u64, points: i64) -> Tx<()> {
    let mut t = match totals.get(KEY)? {
        Some(raw) => tx(read_record(&raw))?,
        None => Totals::default(),
    };
    t.members = t.members.saturating_add(members);
    t.points = t.points.saturating_add_signed(points);
    totals.insert(KEY, &encode(t)[..])
}

/// The record as last written; zero before the first.
pub(super) fn read(tree: &Tree) -> Result<Totals, StoreError> {
    match tree.get(KEY)? {
        Some(raw) => Ok(read_record(&raw)?),
        None => Ok(Totals::default()),
    }
}

/// At open, before anything else writes: counts the members of a store that has no record
/// yet (written before it existed) and writes it.
pub(super) fn ensure(totals: &Tree, members: &Tree) -> Result<(), StoreError> {
    if totals.contains_key(KEY)? {
        return Ok(());
    }
    let started = Instant::now();
    let counted = count(totals, members)?;
    if counted.members > 0 {
        tracing::info!(
            members = counted.members,
            points = counted.points,
            elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "members counted once for the store's totals"
        );
    }
    Ok(())
}

/// Counts the members and their balances and writes the record.
fn count(totals: &Tree, members: &Tree) -> Result<Totals, StoreError> {
    /// A member record's balance alone; the rest is skipped unread.
    #[derive(Deserialize)]
    struct Balance {
        balance: Points,
    }
    let mut t = Totals::default();
    for kv in members.iter() {
        let (_, raw) = kv?;
        let b: Balance = decode("member record", &raw)?;
        t.members += 1;
        t.points = t.points.saturating_add(b.balance.0);
    }
    totals.insert(KEY, &encode(t)[..])?;
    Ok(t)
}

impl SledStore {
    /// Counts the members again and rewrites the totals, under the writer lock (no operation
    /// runs meanwhile). For tools that wrote members without the atomic operations.
    pub fn recount_totals(&self) -> Result<Totals, StoreError> {
        let writing = self.commit.writing();
        let t = self
            .atomic
            .read(|| count(self.atomic.totals_tree(), &self.members))?;
        writing.wait()?;
        Ok(t)
    }

    pub(super) fn read_totals(&self) -> Result<Totals, StoreError> {
        read(self.atomic.totals_tree())
    }
}

#[cfg(test)]
mod tests;
