//! Imported balances on sled, in the `imported_balances` tree: normalised email →
//! [`ImportedBalance`]. A row for an email that is already a member's is credited in the same
//! atomic operation that records it; the others wait, and [`tx_take_import`] hands one to the
//! member who joins with its email, inside the join's own operation. Records are kept once
//! applied: they are what makes a second import of the same file add nothing.

use chrono::{DateTime, Utc};

use super::atomic::TxTree;
use super::atomic::{tx, Tx};
use super::records::{decode, decode_id, encode, tx_account, tx_append, Account};
use super::SledStore;
use crate::domain::{AppliedImport, Email, ImportedBalance, LedgerEntry};
use crate::store::{keys, ImportOutcome, ImportRow, StoreError};

impl SledStore {
    pub(super) fn import_rows(
        &self,
        rows: &[ImportRow],
        now: DateTime<Utc>,
    ) -> Result<Vec<ImportOutcome>, StoreError> {
        let trees = [
            &self.imported_balances,
            &self.emails,
            &self.members,
            &self.ledger,
        ];
        // One flush for the whole batch: each row is whole or absent after a crash, and a rerun
        // skips the rows that made it.
        let writing = self.commit.writing();
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let ekey = keys::email(&row.email);
            let outcome = self
                .atomic
                .run(trees, |[imports, emails, members, ledger]| {
                    if imports.get(&ekey)?.is_some() {
                        return Ok(ImportOutcome::AlreadyImported);
                    }
                    let mut record = ImportedBalance {
                        email: row.email.clone(),
                        points: row.points,
                        joined_at: row.joined_at,
                        imported_at: now,
                        applied: None,
                    };
                    let outcome = match emails.get(&ekey)? {
                        None => ImportOutcome::Waiting,
                        Some(raw) => {
                            let acct = tx_account(&members, tx(decode_id(&raw))?)?;
                            let acct = credit(&members, &ledger, acct, &mut record, now)?;
                            ImportOutcome::Credited {
                                member: acct.member.id,
                                balance: acct.balance,
                            }
                        }
                    };
                    imports.insert(&ekey, tx(encode("imported balance", &record))?)?;
                    Ok(outcome)
                })?;
            out.push(outcome);
        }
        writing.wait()?;
        Ok(out)
    }

    pub(super) fn read_imported_balance(
        &self,
        email: &Email,
    ) -> Result<Option<ImportedBalance>, StoreError> {
        let out = match self.imported_balances.get(keys::email(email))? {
            Some(raw) => Some(decode("imported balance", &raw)?),
            None => None,
        };
        self.commit.settle_read()?;
        Ok(out)
    }

    pub(super) fn read_imported_balances(
        &self,
        after: Option<&Email>,
        limit: usize,
    ) -> Result<Vec<ImportedBalance>, StoreError> {
        use std::ops::Bound::{Excluded, Unbounded};
        let start = after.map_or(Unbounded, |e| Excluded(keys::email(e)));
        let out = self
            .imported_balances
            .range::<Vec<u8>, _>((start, Unbounded))
            .take(limit)
            .map(|kv| Ok(decode("imported balance", &kv?.1)?))
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.commit.settle_read()?;
        Ok(out)
    }
}

/// Inside a join's operation, after the signup bonus: the balance waiting for the member's
/// email (`ekey`) becomes theirs, as an `import` entry, and is marked applied.
pub(super) fn tx_take_import(
    imports: &TxTree<'_>,
    members: &TxTree<'_>,
    ledger: &TxTree<'_>,
    acct: Account,
    ekey: &[u8],
    now: DateTime<Utc>,
) -> Tx<Account> {
    let Some(raw) = imports.get(ekey)? else {
        return Ok(acct);
    };
    let mut record: ImportedBalance = tx(decode("imported balance", &raw))?;
    if record.applied.is_some() {
        return Ok(acct);
    }
    let acct = credit(members, ledger, acct, &mut record, now)?;
    imports.insert(ekey, tx(encode("imported balance", &record))?)?;
    Ok(acct)
}

/// Appends the import entry, carries "member since" over, and marks `record` applied (the
/// caller stores it).
fn credit(
    members: &TxTree<'_>,
    ledger: &TxTree<'_>,
    mut acct: Account,
    record: &mut ImportedBalance,
    now: DateTime<Utc>,
) -> Tx<Account> {
    acct.member.joined_at = record.member_since(acct.member.joined_at);
    let acct = tx_append(
        members,
        ledger,
        acct,
        &LedgerEntry::import(record.points, now),
    )?;
    record.applied = Some(AppliedImport {
        member: acct.member.id,
        at: now,
    });
    Ok(acct)
}
