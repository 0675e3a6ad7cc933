//! Order reversals and changes on sled: one atomic operation over the `orders` record, the
//! member's `Account` and the ledger, then the group-committed flush. The rules are in
//! [`crate::domain::reversals`] and [`crate::domain::order_changes`]; this file only applies
//! them atomically.

use chrono::{DateTime, Utc};

use super::atomic::{tx, Abort, Tx, TxTree};
use super::records::{
    decode, encode, tx_account, tx_append, tx_claim_under_number, Account, OrderRecord,
};
use super::SledStore;
use crate::domain::order_changes::reasons;
use crate::domain::{
    points_change, LedgerEntry, MemberId, OrderId, OrderNumber, OrderState, Points, PointsChange,
    Reversal, ReversalReason,
};
use crate::store::{keys, ReverseOutcome, SettleOutcome, StoreError};

/// The stored record of the order under `okey`, or an empty one.
fn tx_record(orders: &TxTree<'_>, okey: &[u8]) -> Tx<OrderRecord> {
    match orders.get(okey)? {
        Some(raw) => tx(decode("order record", &raw)),
        None => Ok(OrderRecord::default()),
    }
}

/// The number an entry about the order names: the record's, else the one reported.
fn number_of(record: &OrderRecord, reported: &OrderNumber) -> OrderNumber {
    record.number.clone().unwrap_or_else(|| reported.clone())
}

/// Inside an operation: reverses all that the claimed order stands at, for `member` whose
/// account is `acct`; the reversal, and the account after it.
fn tx_reverse_claimed(
    (members, ledger): (&TxTree<'_>, &TxTree<'_>),
    record: &OrderRecord,
    (id, number): (&OrderId, &OrderNumber),
    (member, acct): (MemberId, Account),
    reason: ReversalReason,
    now: DateTime<Utc>,
) -> Tx<(Reversal, Account)> {
    let reversal = Reversal::of_credit(reason, now, member, record.earned(), acct.balance);
    let entry = LedgerEntry::order_reversal(
        number_of(record, number),
        reversal.taken,
        reversal.shortfall,
        now,
    )
    .of_order(id)
    .because(reason.ledger_reason());
    let acct = tx_append(members, ledger, acct, &entry)?;
    Ok((reversal, acct))
}

impl SledStore {
    pub(super) fn reverse(
        &self,
        order: &OrderId,
        reason: ReversalReason,
        now: DateTime<Utc>,
    ) -> Result<ReverseOutcome, StoreError> {
        let okey = keys::order(order);
        let trees = [&self.orders, &self.members, &self.ledger];
        let writing = self.commit.writing();
        let outcome = self.atomic.run(trees, |[orders, members, ledger]| {
            let mut record = tx_record(&orders, &okey)?;
            if let Some(reversal) = record.reversal.clone() {
                return Ok(ReverseOutcome::AlreadyReversed { reversal });
            }
            // Without a number of its own, the order is keyed by it (the generic contract).
            let number = match record.number.clone() {
                Some(n) => n,
                None => tx(OrderNumber::parse(order.as_str())
                    .map_err(|_| Abort::Corrupt(format!("order {order} has no number"), None)))?,
            };
            let (reversal, balance) = match tx(record.claim())? {
                None => (Reversal::before_claim(reason, now), None),
                Some(claim) => {
                    let acct = tx_account(&members, claim.member)?;
                    let (reversal, acct) = tx_reverse_claimed(
                        (&members, &ledger),
                        &record,
                        (order, &number),
                        (claim.member, acct),
                        reason,
                        now,
                    )?;
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

    pub(super) fn settle(
        &self,
        state: &OrderState,
        credit_to: Option<MemberId>,
        now: DateTime<Utc>,
    ) -> Result<SettleOutcome, StoreError> {
        let okey = keys::order(&state.id);
        let trees = [&self.orders, &self.members, &self.ledger];
        let writing = self.commit.writing();
        let outcome = self.atomic.run(trees, |[orders, members, ledger]| {
            let mut record = tx_record(&orders, &okey)?;
            let claim = tx(record.claim())?;
            if record.reversal.is_some() {
                return Ok(SettleOutcome::Unchanged {
                    member: claim.map(|c| c.member),
                });
            }
            let Some(claim) = claim else {
                if let Some(c) = tx_claim_under_number(&orders, &state.id, &state.number)? {
                    // Claimed under the number before the shop had ids here: left as it is.
                    return Ok(SettleOutcome::Unchanged {
                        member: Some(c.member),
                    });
                }
                if let Some(reason) = state.ended {
                    let reversal = Reversal::before_claim(reason, now);
                    record.reversal = Some(reversal.clone());
                    record.name_order(&state.id, &state.number);
                    orders.insert(okey.as_slice(), tx(encode("order record", &record))?)?;
                    return Ok(SettleOutcome::EndedBeforeClaim { reversal });
                }
                let (Some(member), true) = (credit_to, state.earns > Points::ZERO) else {
                    return Ok(SettleOutcome::Unclaimed);
                };
                let acct = tx_account(&members, member)?;
                let entry = LedgerEntry::order_credit(state.number.clone(), state.earns, now)
                    .of_order(&state.id)
                    .because(reasons::AUTO_CREDIT);
                let acct = tx_append(&members, &ledger, acct, &entry)?;
                let record = OrderRecord::claimed(member, now, state.earns).with_order(
                    &state.id,
                    &state.number,
                    state.total,
                );
                orders.insert(okey.as_slice(), tx(encode("order record", &record))?)?;
                return Ok(SettleOutcome::AutoCredited {
                    member,
                    points: state.earns,
                    balance: acct.balance,
                });
            };
            let acct = tx_account(&members, claim.member)?;
            let from = record.earned();
            if let Some(reason) = state.ended {
                let (reversal, acct) = tx_reverse_claimed(
                    (&members, &ledger),
                    &record,
                    (&state.id, &state.number),
                    (claim.member, acct),
                    reason,
                    now,
                )?;
                record.reversal = Some(reversal.clone());
                orders.insert(okey.as_slice(), tx(encode("order record", &record))?)?;
                return Ok(SettleOutcome::Changed {
                    member: claim.member,
                    from,
                    to: Points::ZERO,
                    taken: reversal.taken,
                    shortfall: reversal.shortfall,
                    credited: Points::ZERO,
                    balance: acct.balance,
                    ended: Some(reversal),
                });
            }
            let to = state.earns;
            let number = number_of(&record, &state.number);
            let (entry, taken, shortfall, credited) = match points_change(from, to, acct.balance) {
                PointsChange::Unchanged => {
                    return Ok(SettleOutcome::Unchanged {
                        member: Some(claim.member),
                    })
                }
                PointsChange::Debit(s) => (
                    LedgerEntry::order_reversal(number, s.taken, s.shortfall, now)
                        .because(reasons::LOWERED),
                    s.taken,
                    s.shortfall,
                    Points::ZERO,
                ),
                PointsChange::Credit(p) => (
                    LedgerEntry::order_credit(number, p, now).because(reasons::RAISED),
                    Points::ZERO,
                    Points::ZERO,
                    p,
                ),
            };
            let acct = tx_append(&members, &ledger, acct, &entry.of_order(&state.id))?;
            record.earned = Some(to);
            orders.insert(okey.as_slice(), tx(encode("order record", &record))?)?;
            Ok(SettleOutcome::Changed {
                member: claim.member,
                from,
                to,
                taken,
                shortfall,
                credited,
                balance: acct.balance,
                ended: None,
            })
        })?;
        writing.wait()?;
        match &outcome {
            SettleOutcome::Changed {
                member, from, to, ..
            } => tracing::info!(
                order = %state.id,
                member.id = %member,
                from = from.0,
                to = to.0,
                "order points follow the shop"
            ),
            SettleOutcome::AutoCredited { member, points, .. } => tracing::info!(
                order = %state.id,
                member.id = %member,
                points = points.0,
                "paid order credited automatically"
            ),
            SettleOutcome::EndedBeforeClaim { .. } => {
                tracing::info!(order = %state.id, "unclaimed order ended; later claims refused")
            }
            SettleOutcome::Unclaimed | SettleOutcome::Unchanged { .. } => {}
        }
        Ok(outcome)
    }

    /// The stored record of an order, if the store knows it.
    pub(super) fn order_record(&self, order: &OrderId) -> Result<Option<OrderRecord>, StoreError> {
        match self.orders.get(keys::order(order))? {
            Some(raw) => Ok(Some(decode("order record", &raw)?)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests;
