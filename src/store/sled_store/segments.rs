//! [`crate::store::LoyaltyStore::member_rows`] on sled: one ordered pass over the `members`
//! and `ledger` trees together (both are ordered by member id, see `keys.rs`), so a segment
//! of a million members reads each record once and holds one batch of rows at a time.
//!
//! No lock is taken, and yet each row is as at one instant. The `Account` record carries the
//! balance and the next ledger sequence; every append writes its ledger entry before the
//! record (`records::tx_append`, applied in staged order); entries never change. So the entries
//! numbered below the record's `next_seq` are exactly the ledger whose sum the balance is, and
//! all of them exist once the record has been read. Entries appended since are left out. The
//! ledger, read ahead (`feed.rs`), may have passed a member before a concurrent append reached
//! it; when it yields fewer entries than `next_seq`, that member's ledger is read again on its
//! own.

mod feed;

use std::ops::ControlFlow;

use super::atomic::Abort;
use super::records::{decode, Account};
use super::SledStore;
use crate::domain::{MemberId, MemberRow, MemberStats, SegmentFilter};
use crate::store::{keys, StoreError};
use feed::{Feed, Figures};

/// Rows read before they are handed out. Each batch first waits for a flush if a write it may
/// include is not durable yet (as every read whose answer leaves the store does).
const BATCH: usize = 1024;

type Visit<'a> = &'a mut dyn FnMut(MemberRow) -> ControlFlow<()>;

impl SledStore {
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
        // The feed may hand its reading to a thread of this scope; dropping it (whatever the
        // outcome) stops that thread at its next message.
        std::thread::scope(|scope| {
            let ledger = self.ledger.range(keys::member_seq(first, 0)..);
            self.merge(filter, first, &mut Feed::new(scope, ledger), visit)
        })
    }

    fn merge(
        &self,
        filter: &SegmentFilter,
        first: MemberId,
        ledger: &mut Feed<'_, '_>,
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

#[cfg(test)]
mod tests;
