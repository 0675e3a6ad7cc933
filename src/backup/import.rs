//! Reading the export format into an empty store: the header is checked before the store is
//! touched, each record is checked and written as it is read, and the trailer's counts are
//! compared at the end. At the first fault everything written is removed again
//! ([`LoyaltyStore::restore_abort`]), so a refused file leaves the store empty. The
//! adjustments of the ledgers read are held until their keys come ([`LedgerAdjustments`]).

use std::io::BufRead;

use super::{unbalanced, BackupError, Counts, Header, Trailer, END, FORMAT, VERSION};
use crate::store::backup::{BackupRecord, LedgerAdjustments};
use crate::store::{LoyaltyStore, StoreError};

/// What an import wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportSummary {
    pub counts: Counts,
}

/// Loads a file in the export format into `store`, which must be empty (else
/// [`BackupError::NotEmpty`], and nothing changes). `progress` is called after each record
/// with the number read so far. All or nothing: see the module doc. Blocking.
pub fn import(
    store: &dyn LoyaltyStore,
    input: &mut dyn BufRead,
    progress: &mut dyn FnMut(u64),
) -> Result<ImportSummary, BackupError> {
    let mut lines = Lines {
        input,
        text: String::new(),
        number: 0,
    };
    let (_, header) = lines
        .next()?
        .ok_or(BackupError::NotAnExport("the file is empty".into()))?;
    check_header(header)?;
    store.restore_begin().map_err(|e| match e {
        StoreError::NotEmpty => BackupError::NotEmpty,
        other => other.into(),
    })?;
    match records(store, &mut lines, progress) {
        Ok(counts) => {
            store.restore_finish()?;
            Ok(ImportSummary { counts })
        }
        Err(e) => {
            if let Err(undo) = store.restore_abort() {
                tracing::error!(error = %undo, "could not remove what the refused import wrote");
            }
            Err(e)
        }
    }
}

fn check_header(line: &str) -> Result<(), BackupError> {
    let header: Header = serde_json::from_str(line)
        .map_err(|e| BackupError::NotAnExport(format!("its first line is no header ({e})")))?;
    if header.format != FORMAT {
        let found = header.format;
        return Err(BackupError::NotAnExport(format!("its format is `{found}`")));
    }
    if header.version > VERSION {
        return Err(BackupError::NewerFormat {
            found: header.version,
            known: VERSION,
        });
    }
    Ok(())
}

/// Reads and writes every record up to and including the trailer; the counts.
fn records(
    store: &dyn LoyaltyStore,
    lines: &mut Lines<'_>,
    progress: &mut dyn FnMut(u64),
) -> Result<Counts, BackupError> {
    let mut counts = Counts::default();
    let mut adjustments = LedgerAdjustments::default();
    loop {
        let Some((line, text)) = lines.next()? else {
            return Err(BackupError::Truncated);
        };
        let invalid = |message: String| BackupError::Invalid { line, message };
        let record = match BackupRecord::from_json(text) {
            Ok(Some(record)) => record,
            Ok(None) => {
                let trailer: Trailer = serde_json::from_str(text).map_err(|_| {
                    invalid("a record of a kind this loyalty-bot does not know".into())
                })?;
                if trailer.kind != END {
                    return Err(invalid(format!("unknown record kind `{}`", trailer.kind)));
                }
                check_counts(&trailer.counts, &counts)?;
                if lines.next()?.is_some() {
                    return Err(invalid("lines after the trailer".into()));
                }
                return Ok(counts);
            }
            Err(e) => return Err(invalid(e.to_string())),
        };
        if let Some(fault) = unbalanced(&record) {
            return Err(invalid(fault.to_string()));
        }
        counts.add(&record);
        let unmatched = unmatched_key(&mut adjustments, &record);
        // The store names a key twice or of an unknown member first: neither matches either.
        store.restore(record).map_err(|e| match e {
            StoreError::Conflict(message) => invalid(message),
            other => other.into(),
        })?;
        if let Some(message) = unmatched {
            return Err(invalid(message));
        }
        progress(counts.records());
    }
}

/// Notes a member's adjustments; for an adjustment key whose adjustment is not among those
/// noted (or answers another key already), the fault.
fn unmatched_key(adjustments: &mut LedgerAdjustments, record: &BackupRecord) -> Option<String> {
    match record {
        BackupRecord::Member(m) => {
            adjustments.add(m);
            None
        }
        BackupRecord::AdjustmentKey(k) if !adjustments.take(&k.adjusted) => Some(format!(
            "adjustment key {}: its adjustment is not in member {}'s ledger",
            k.key, k.adjusted.member
        )),
        _ => None,
    }
}

fn check_counts(expected: &Counts, found: &Counts) -> Result<(), BackupError> {
    for ((what, expected), (_, found)) in expected.named().into_iter().zip(found.named()) {
        if expected != found {
            return Err(BackupError::Counts {
                what,
                expected,
                found,
            });
        }
    }
    Ok(())
}

/// The file's lines, each ending in a newline (one that does not is cut short); blank lines
/// are skipped.
struct Lines<'r> {
    input: &'r mut dyn BufRead,
    text: String,
    /// Of the line returned last, from 1.
    number: u64,
}

impl Lines<'_> {
    /// The next line and its number.
    fn next(&mut self) -> Result<Option<(u64, &str)>, BackupError> {
        loop {
            self.text.clear();
            let n = self
                .input
                .read_line(&mut self.text)
                .map_err(BackupError::Read)?;
            if n == 0 {
                return Ok(None);
            }
            self.number += 1;
            if !self.text.ends_with('\n') {
                return Err(BackupError::Truncated);
            }
            if !self.text.trim().is_empty() {
                return Ok(Some((self.number, self.text.trim_end())));
            }
        }
    }
}
