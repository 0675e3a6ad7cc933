//! Order reversals on sled: one atomic operation over the `orders` record, the member's `Account`
//! and the ledger, then the group-committed flush. The rules are in
//! [`crate::domain::reversals`]; this file only applies them atomically.

use chrono::{DateTime, Utc};

use super::atomic::{abort, tx, Abort};
use super::records::{decode, encode, tx_account, tx_append, OrderRecord};
use super::SledStore;
use crate::domain::{EntryKind, LedgerEntry, OrderNumber, Points, Reversal, ReversalReason};
use crate::store::{keys, LoyaltyStore, ReverseOutcome, StoreError};

impl SledStore {
    pub(super) fn reverse(
        &self,
        order: &OrderNumber,
        reason: ReversalReason,
        now: DateTime<Utc>,
    ) -> Result<ReverseOutcome, StoreError> {
        let okey = keys::order(order);
        // Claims stored before reversals existed do not carry their points; their ledger
        // entry does, and it never changes, so it is read once here, outside the operation.
        let legacy = self.legacy_credit(order)?;
        let trees = [&self.orders, &self.members, &self.ledger];
        let writing = self.commit.writing();
        let outcome = self.atomic.run(trees, |[orders, members, ledger]| {
            let mut record: OrderRecord = match orders.get(&okey)? {
                Some(raw) => tx(decode("order record", &raw))?,
                None => OrderRecord::default(),
            };
            if let Some(reversal) = record.reversal.clone() {
                return Ok(ReverseOutcome::AlreadyReversed { reversal });
            }
            // The member's balance afterwards, when the order had been credited to someone.
            let (reversal, balance) = match tx(record.claim())? {
                None => (Reversal::before_claim(reason, now), None),
                Some(claim) => {
                    let Some(credited) = claim.points.or(legacy) else {
                        return abort(Abort::Corrupt(
                            format!("claim of order {order} without its credit"),
                            None,
                        ));
                    };
                    let acct = tx_account(&members, claim.member)?;
                    let reversal =
                        Reversal::of_credit(reason, now, claim.member, credited, acct.balance);
                    let entry = LedgerEntry::order_reversal(
                        order.clone(),
                        reversal.taken,
                        reversal.shortfall,
                        now,
                    );
                    let acct = tx_append(&members, &ledger, acct, &entry)?;
                    (reversal, Some(acct.balance))
                }
            };
            record.reversal = Some(reversal.clone());
            orders.insert(okey.as_slice(), tx(encode("order record", &record))?)?;
            Ok(match balance {
                Some(balance) => ReverseOutcome::Reversed { reversal, balance },
                None => ReverseOutcome::RecordedBeforeClaim { reversal },
            })
        })?;
        // A repeat waits too: the first reversal may be a concurrent one not flushed yet.
        writing.wait()?;
        match &outcome {
            ReverseOutcome::Reversed { reversal: r, .. } => tracing::info!(
                order = %order,
                member.id = %r.member.map_or(0, |m| m.0),
                taken = r.taken.0,
                shortfall = r.shortfall.0,
                "order credit reversed"
            ),
            ReverseOutcome::RecordedBeforeClaim { .. } => {
                tracing::info!(order = %order, "reversal of an unclaimed order recorded")
            }
            ReverseOutcome::AlreadyReversed { .. } => {}
        }
        Ok(outcome)
    }

    /// The stored record of an order, if the store knows it.
    pub(super) fn order_record(
        &self,
        order: &OrderNumber,
    ) -> Result<Option<OrderRecord>, StoreError> {
        match self.orders.get(keys::order(order))? {
            Some(raw) => Ok(Some(decode("order record", &raw)?)),
            None => Ok(None),
        }
    }

    /// For a claim stored without its points (before reversals existed): the points of its
    /// order-credit entry in the claiming member's ledger. `None` for every other order.
    fn legacy_credit(&self, order: &OrderNumber) -> Result<Option<Points>, StoreError> {
        let Some(record) = self.order_record(order)? else {
            return Ok(None);
        };
        let Some(claim) = record.claim()?.filter(|c| c.points.is_none()) else {
            return Ok(None);
        };
        let okey = keys::order(order);
        for entry in self.ledger(claim.member)? {
            let this_order = entry
                .order_number
                .as_ref()
                .is_some_and(|n| keys::order(n) == okey);
            if entry.kind == EntryKind::OrderCredit && this_order {
                return Ok(Some(Points(entry.points.unsigned_abs())));
            }
        }
        Err(Abort::Corrupt(format!("claim of order {order} without its credit"), None).into())
    }
}

#[cfg(test)]
mod tests;
