//! Order reversals on sled: one atomic operation over the `orders` record, the member's `Account`
//! and the ledger, then the group-committed flush. The rules are in
//! [`crate::domain::reversals`]; this file only applies them atomically.

use chrono::{DateTime, Utc};

use super::atomic::tx;
use super::records::{decode, encode, tx_account, tx_append, OrderRecord};
use super::SledStore;
use crate::domain::{LedgerEntry, OrderNumber, Reversal, ReversalReason};
use crate::store::{keys, ReverseOutcome, StoreError};

impl SledStore {
    pub(super) fn reverse(
        &self,
        order: &OrderNumber,
        reason: ReversalReason,
        now: DateTime<Utc>,
    ) -> Result<ReverseOutcome, StoreError> {
        let okey = keys::order(order);
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
                    let credited = claim.points;
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
}

#[cfg(test)]
mod tests;
