//! Operator adjustments on sled: one atomic operation over the `adjustment_keys` record of the
//! request key, the member's `Account` and the ledger, then the group-committed flush. The key
//! is recorded with the result in the same operation, so a crash leaves either both (a repeat
//! is answered from the record) or neither (a repeat applies it, once).

use chrono::{DateTime, Utc};

use super::atomic::tx;
use super::records::{decode, encode, tx_append, Account};
use super::SledStore;
use crate::domain::{Adjustment, LedgerEntry, MemberId, RequestKey};
use crate::store::{keys, AdjustOutcome, Adjusted, StoreError};

impl SledStore {
    pub(super) fn adjust_points(
        &self,
        member: MemberId,
        adjustment: &Adjustment,
        key: &RequestKey,
        now: DateTime<Utc>,
    ) -> Result<AdjustOutcome, StoreError> {
        let kkey = keys::request_key(key);
        let trees = [&self.adjustment_keys, &self.members, &self.ledger];
        let writing = self.commit.writing();
        let outcome = self.atomic.run(trees, |[requests, members, ledger]| {
            if let Some(raw) = requests.get(&kkey)? {
                let first: Adjusted = tx(decode("adjustment record", &raw))?;
                let same = first.member == member
                    && first.entry.points == adjustment.points()
                    && first.entry.reason.as_deref() == Some(adjustment.reason());
                return Ok(if same {
                    AdjustOutcome::Repeated(first)
                } else {
                    AdjustOutcome::KeyReused
                });
            }
            let Some(raw) = members.get(keys::member(member))? else {
                return Ok(AdjustOutcome::UnknownMember);
            };
            let acct: Account = tx(decode("member record", &raw))?;
            if i128::from(acct.balance.0) + i128::from(adjustment.points()) < 0 {
                return Ok(AdjustOutcome::Insufficient {
                    balance: acct.balance,
                });
            }
            let entry = LedgerEntry::adjustment(adjustment, now);
            let acct = tx_append(&members, &ledger, acct, &entry)?;
            let done = Adjusted {
                member,
                entry,
                balance: acct.balance,
            };
            requests.insert(&kkey, tx(encode("adjustment record", &done))?)?;
            Ok(AdjustOutcome::Applied(done))
        })?;
        // A repeat waits too: the record it answers from may be a concurrent request's, not
        // flushed yet.
        writing.wait()?;
        if let AdjustOutcome::Applied(a) = &outcome {
            tracing::info!(member.id = %member, points = a.entry.points, "balance adjusted by the operator");
        }
        Ok(outcome)
    }
}
