//! [`crate::store::LoyaltyStore::member_rows`] on sled: one ordered pass over the `members`
//! and `ledger` trees together (both are ordered by member id, see `keys.rs`), so a segment
//! of a million members reads each record once and holds one batch of rows at a time.
//!
//! No lock is taken, and yet each row is as at one instant. The `Account` record carries the
//! balance and the next ledger sequence; every append writes its ledger entry before the
//! record (`records::tx_append`, applied in staged order); entries never change. So the entries
//! numbered below the record's `next_seq` are exactly the ledger whose sum the balance is, and
//! all of them exist once the record has been read. Entries appended since are left out. The
//! ledger, read ahead on its own thread, may have passed a member before a concurrent append
//! reached it; when it yields fewer entries than `next_seq`, that member's ledger is read again
//! on its own.

use std::ops::ControlFlow;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use chrono::{DateTime, Utc};

use super::atomic::Abort;
use super::records::{decode, Account};
use super::SledStore;
use crate::domain::{EntryKind, MemberId, MemberRow, MemberStats, SegmentFilter};
use crate::store::{keys, StoreError};

/// Rows read before they are handed out. Each batch first waits for a flush if a write it may
/// include is not durable yet (as every read whose answer leaves the store does).
const BATCH: usize = 1024;
/// Ledger entries per message from the reading thread, and messages it may read ahead.
const ENTRIES: usize = 1024;
const READ_AHEAD: usize = 4;

/// What the figures need of a ledger entry; serde skips the rest of the record unread.
#[derive(serde::Deserialize)]
struct Figures {
    kind: EntryKind,
    points: i64,
    at: DateTime<Utc>,
}

/// A ledger entry as the reading thread hands it over.
struct Entry {
    owner: u64,
    seq: u64,
    figures: Figures,
}

type Visit<'a> = &'a mut dyn FnMut(MemberRow) -> ControlFlow<()>;
type Entries = Result<Vec<Entry>, StoreError>;

impl SledStore {
    /// The ledger is read and decoded on a thread of its own, alongside the members: the two
    /// trees' page reads and decoding then share the CPUs (a third of a scan's time is the
    /// ledger's).
    pub(super) fn scan_member_rows(
        &self,
        filter: &SegmentFilter,
        after: Option<MemberId>,
        visit: Visit<'_>,
    ) -> Result<(), StoreError> {
        let first = match after {
            None => MemberId(0),
            Some(MemberId(u64::MAX)) => return Ok(()),
            Some(MemberId(id)) => MemberId(id + 1),
        };
        std::thread::scope(|scope| {
            let (tx, rx) = sync_channel(READ_AHEAD);
            let ledger = &self.ledger;
            std::thread::Builder::new()
                .name("segment-ledger".into())
                .spawn_scoped(scope, move || read_ledger(ledger, first, &tx))
                .map_err(|e| StoreError::Backend(Box::new(e)))?;
            // Dropping the feed (whatever the outcome) stops the reader at its next message.
            let mut feed = Feed {
                rx,
                batch: Vec::new().into_iter(),
                next: None,
            };
            self.merge(filter, first, &mut feed, visit)
        })
    }

    fn merge(
        &self,
        filter: &SegmentFilter,
        first: MemberId,
        ledger: &mut Feed,
        visit: Visit<'_>,
    ) -> Result<(), StoreError> {
        let mut batch = Vec::with_capacity(BATCH);
        for kv in self.members.range(keys::member(first)..) {
            let (_, raw) = kv?;
            let acct: Account = decode("member record", &raw)?;
            let id = acct.member.id;
            let wanted = filter.admits_member(&acct.member, acct.balance);
            let mut stats = MemberStats::default();
            ledger.pass(id, acct.next_seq, wanted.then_some(&mut stats))?;
            if !wanted {
                continue;
            }
            if stats.entries != acct.next_seq {
                stats = self.figures_of(id, acct.next_seq)?;
            }
            if !stats.add_up_to(acct.balance) {
                let what = format!("the ledger of member {id} does not add up to its balance");
                return Err(Abort::Corrupt(what, None).into());
            }
            if !filter.admits_stats(&stats) {
                continue;
            }
            batch.push(MemberRow {
                member: acct.member,
                points: acct.balance,
                stats,
            });
            if batch.len() == BATCH && self.hand_out(&mut batch, visit)?.is_break() {
                return Ok(());
            }
        }
        self.hand_out(&mut batch, visit).map(drop)
    }

    fn hand_out(
        &self,
        batch: &mut Vec<MemberRow>,
        visit: Visit<'_>,
    ) -> Result<ControlFlow<()>, StoreError> {
        if batch.is_empty() {
            return Ok(ControlFlow::Continue(()));
        }
        self.commit.settle_read()?;
        for row in batch.drain(..) {
            if visit(row).is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// The figures of the first `count` entries of the member's ledger, read afresh.
    fn figures_of(&self, id: MemberId, count: u64) -> Result<MemberStats, StoreError> {
        let mut stats = MemberStats::default();
        if count > 0 {
            let entries = self
                .ledger
                .range(keys::member_seq(id, 0)..keys::member_seq(id, count));
            for kv in entries {
                let f: Figures = decode("ledger entry", &kv?.1)?;
                stats.add(f.kind, f.points, f.at);
            }
        }
        if stats.entries != count {
            let what = format!("the ledger of member {id} lacks entries");
            return Err(Abort::Corrupt(what, None).into());
        }
        Ok(stats)
    }
}

/// The reading thread: the ledger from `first` on, in key order, decoded, until the end or
/// until nobody listens.
fn read_ledger(tree: &sled::Tree, first: MemberId, tx: &SyncSender<Entries>) {
    let mut batch = Vec::with_capacity(ENTRIES);
    for kv in tree.range(keys::member_seq(first, 0)..) {
        let entry = kv.map_err(StoreError::from).and_then(|(key, raw)| {
            let (owner, seq) = split(&key)?;
            let figures = decode("ledger entry", &raw)?;
            Ok(Entry {
                owner,
                seq,
                figures,
            })
        });
        match entry {
            Ok(e) => batch.push(e),
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        }
        if batch.len() == ENTRIES {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(ENTRIES));
            if tx.send(Ok(full)).is_err() {
                return;
            }
        }
    }
    let _ = tx.send(Ok(batch));
}

/// The ledger as the reading thread hands it over, consumed alongside the members.
struct Feed {
    rx: Receiver<Entries>,
    batch: std::vec::IntoIter<Entry>,
    /// An entry read past the member being read: it belongs to a later one.
    next: Option<Entry>,
}

impl Feed {
    /// Moves past the entries of members below `id` (a join being applied writes its ledger
    /// first) and those of `id`, folding those numbered below `count` into `stats`.
    fn pass(
        &mut self,
        id: MemberId,
        count: u64,
        mut stats: Option<&mut MemberStats>,
    ) -> Result<(), StoreError> {
        while let Some(e) = self.next_entry()? {
            if e.owner > id.0 {
                self.next = Some(e);
                return Ok(());
            }
            if let Some(stats) = stats
                .as_deref_mut()
                .filter(|_| e.owner == id.0 && e.seq < count)
            {
                stats.add(e.figures.kind, e.figures.points, e.figures.at);
            }
        }
        Ok(())
    }

    fn next_entry(&mut self) -> Result<Option<Entry>, StoreError> {
        if let Some(e) = self.next.take() {
            return Ok(Some(e));
        }
        loop {
            if let Some(e) = self.batch.next() {
                return Ok(Some(e));
            }
            match self.rx.recv() {
                Ok(batch) => self.batch = batch?.into_iter(),
                // The reader is done: the whole ledger was handed over.
                Err(_) => return Ok(None),
            }
        }
    }
}

/// A ledger key's member id and sequence.
fn split(key: &[u8]) -> Result<(u64, u64), StoreError> {
    let corrupt = || StoreError::from(Abort::Corrupt("ledger key".into(), None));
    let (owner, seq) = key.split_at_checked(8).ok_or_else(corrupt)?;
    Ok((
        keys::read_u64(owner).ok_or_else(corrupt)?,
        keys::read_u64(seq).ok_or_else(corrupt)?,
    ))
}

#[cfg(test)]
mod tests;
