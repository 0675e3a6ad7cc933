//! Balances brought over from another loyalty program or a spreadsheet (`loyalty-bot
//! import-balances FILE.csv`, on a stopped store): each row becomes a balance waiting for its
//! email, credited on top of the signup bonus when the customer joins in chat with that email,
//! or at once to a member who already has it.
//!
//! The file is CSV in UTF-8 (a spreadsheet's "CSV UTF-8" export; a leading byte-order mark is
//! fine). Its first line must be a header row naming the columns, in any order and any case:
//! `email`, `points` (a whole number above zero, at most [`MAX_MANUAL_POINTS`]) and optionally
//! `joined_at` (an RFC 3339 time or a plain `YYYY-MM-DD` date, not in the future: when the
//! customer joined the other program, which becomes their "member since" if earlier). Any
//! other column is refused by name, so that a misspelt `joined_at` is not silently ignored.
//!
//! **All or nothing.** The whole file is checked before anything is written. If any row is
//! invalid (a bad email, points that are not a whole number above zero, a bad date, an email
//! twice in the file), every problem is reported with its line number and *nothing* is written.
//! A shop owner fixing a spreadsheet of thousands of rows gets the full list at once, fixes it
//! and runs the same file again; a partial import would leave them to work out which customers
//! were brought over and which were not, and a row written by mistake cannot be taken back
//! without a visible correction in the customer's ledger.
//!
//! **Once per email.** An email imported before (waiting or already credited) is skipped and
//! counted as such, so running the same file twice, or a second file overlapping the first,
//! imports nothing twice. Each row is written whole or not at all; after a crash part-way,
//! running the file again completes it.

use crate::domain::{Email, MAX_MANUAL_POINTS};
use crate::store::{ImportOutcome, ImportRow, LoyaltyStore, StoreError};
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::HashMap;

/// Rows written per store call (one flush each).
const BATCH: usize = 500;

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Data rows in the file (the header and blank lines not counted).
    pub rows: u64,
    /// Balances now waiting for a customer to join with their email.
    pub waiting: u64,
    /// Balances credited at once to existing members.
    pub credited: u64,
    /// Emails imported before (waiting or applied), skipped.
    pub already_imported: u64,
}

/// One problem with one row of the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct RowError {
    /// 1-based, counting the header as line 1.
    pub line: u64,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the file cannot be read as CSV")]
    Csv(#[from] csv::Error),
    #[error("{0}")]
    Header(String),
    /// Nothing was written; `errors` lists every problem found.
    #[error("{} problem(s) in {rows} rows; nothing was imported", errors.len())]
    InvalidRows { rows: u64, errors: Vec<RowError> },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reads the whole file, checks every row, and imports them all or none (see the module docs).
/// `progress` is called with the number of rows written so far, after each batch.
pub fn import_balances(
    store: &dyn LoyaltyStore,
    csv: impl std::io::Read,
    now: DateTime<Utc>,
    progress: &mut dyn FnMut(u64),
) -> Result<ImportReport, ImportError> {
    let rows = read_rows(csv, now)?;
    let mut report = ImportReport {
        rows: rows.len() as u64,
        ..ImportReport::default()
    };
    let mut done = 0;
    for batch in rows.chunks(BATCH) {
        for outcome in store.import_balances(batch, now)? {
            match outcome {
                ImportOutcome::Waiting => report.waiting += 1,
                ImportOutcome::Credited { .. } => report.credited += 1,
                ImportOutcome::AlreadyImported => report.already_imported += 1,
            }
        }
        done += batch.len() as u64;
        progress(done);
    }
    tracing::info!(
        rows = report.rows,
        waiting = report.waiting,
        credited = report.credited,
        already_imported = report.already_imported,
        "balances imported"
    );
    Ok(report)
}

/// The columns, by their place in the header.
struct Columns {
    email: usize,
    points: usize,
    joined_at: Option<usize>,
    count: usize,
}

/// Every row, checked; or every problem found.
fn read_rows(csv: impl std::io::Read, now: DateTime<Utc>) -> Result<Vec<ImportRow>, ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(csv);
    let columns = columns(reader.headers()?)?;
    let (mut rows, mut errors) = (Vec::new(), Vec::new());
    let mut seen: HashMap<Email, u64> = HashMap::new();
    let mut count = 0;
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => match e.kind() {
                csv::ErrorKind::Utf8 { pos, .. } => {
                    count += 1;
                    let line = pos.as_ref().map_or(0, csv::Position::line);
                    errors.push(RowError {
                        line,
                        message: "not UTF-8 text (save the file as \"CSV UTF-8\")".into(),
                    });
                    continue;
                }
                _ => return Err(e.into()),
            },
        };
        count += 1;
        let line = record.position().map_or(0, csv::Position::line);
        let mut problem = |message: String| errors.push(RowError { line, message });
        if record.len() != columns.count {
            problem(format!(
                "{} fields where the header names {}",
                record.len(),
                columns.count
            ));
            continue;
        }
        let email = Email::parse(&record[columns.email])
            .map_err(|e| problem(format!("email: {e}")))
            .ok();
        let points = points(&record[columns.points]).map_err(&mut problem).ok();
        let joined_at = match columns.joined_at.map(|i| &record[i]) {
            None | Some("") => Ok(None),
            Some(raw) => joined_at(raw, now).map(Some),
        }
        .map_err(&mut problem)
        .ok();
        if let Some(email) = &email {
            if let Some(first) = seen.get(email) {
                problem(format!("email {email} is also on line {first}"));
            } else {
                seen.insert(email.clone(), line);
            }
        }
        if let (Some(email), Some(points), Some(joined_at)) = (email, points, joined_at) {
            rows.push(ImportRow {
                email,
                points,
                joined_at,
            });
        }
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(ImportError::InvalidRows {
            rows: count,
            errors,
        })
    }
}

const EXPECTED: &str = "the first line must be a header row naming the columns \
                        `email,points` and optionally `joined_at`";

fn columns(header: &csv::StringRecord) -> Result<Columns, ImportError> {
    let (mut email, mut points, mut joined_at) = (None, None, None);
    for (i, name) in header.iter().enumerate() {
        let slot = match name.to_ascii_lowercase().as_str() {
            "email" => &mut email,
            "points" => &mut points,
            "joined_at" => &mut joined_at,
            _ if name.contains('@') => return Err(ImportError::Header(EXPECTED.into())),
            _ => {
                return Err(ImportError::Header(format!(
                    "unknown column `{name}` in the header (known: email, points, joined_at)"
                )))
            }
        };
        if slot.replace(i).is_some() {
            return Err(ImportError::Header(format!(
                "column `{name}` appears twice in the header"
            )));
        }
    }
    match (email, points) {
        (Some(email), Some(points)) => Ok(Columns {
            email,
            points,
            joined_at,
            count: header.len(),
        }),
        _ => Err(ImportError::Header(EXPECTED.into())),
    }
}

fn points(raw: &str) -> Result<crate::domain::Points, String> {
    let n: i128 = raw
        .parse()
        .map_err(|_| format!("points: `{raw}` is not a whole number"))?;
    if n <= 0 {
        return Err(format!("points: {n} is not above zero"));
    }
    u64::try_from(n)
        .ok()
        .filter(|&p| p <= MAX_MANUAL_POINTS)
        .map(crate::domain::Points)
        .ok_or_else(|| format!("points: {n} is above the limit of {MAX_MANUAL_POINTS}"))
}

fn joined_at(raw: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let at = match DateTime::parse_from_rfc3339(raw) {
        Ok(t) => t.with_timezone(&Utc),
        Err(_) => NaiveDate::parse_from_str(raw, "%Y-%m-%d")
            .map_err(|_| {
                format!("joined_at: `{raw}` is neither an RFC 3339 time nor a YYYY-MM-DD date")
            })?
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc())
            .ok_or_else(|| format!("joined_at: `{raw}` has no midnight"))?,
    };
    if at > now {
        return Err(format!("joined_at: {raw} is in the future"));
    }
    Ok(at)
}

#[cfg(test)]
mod tests;
