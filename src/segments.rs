//! A segment of members out of the store, one member per line, in constant memory: CSV (for
//! spreadsheets and mailing tools), JSON lines (for scripts) or an aligned table (for a
//! terminal). The admin API's `format=csv` and the command line's `members` both write
//! through [`write_segment`], so the two give the same file for the same filter.
//!
//! CSV: a header row, then the [`CSV_COLUMNS`] in that order, quoted where needed (the `csv`
//! crate). Times are RFC 3339 in UTC with milliseconds; `last_activity_at` and `locale` are
//! empty when unknown; `channels` lists the member's chat channels separated by `;`. The
//! figures are defined in [`crate::domain::member_stats`].

use crate::domain::{FilterError, MemberRow, SegmentFilter};
use crate::store::{LoyaltyStore, StoreError};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sink::Sink;
use std::io::Write;
use std::ops::ControlFlow;
use std::sync::mpsc::{sync_channel, SyncSender};

/// The CSV header, in column order.
pub const CSV_COLUMNS: [&str; 11] = [
    "id",
    "email",
    "points",
    "joined_at",
    "last_activity_at",
    "orders_claimed",
    "points_earned",
    "points_redeemed",
    "rewards_redeemed",
    "locale",
    "channels",
];

/// How often [`write_segment`] reports progress, in rows.
const PROGRESS_EVERY: u64 = 10_000;
/// Rows per message from the scanning thread to the writing one, and messages in flight.
const ROWS: usize = 256;
const ROWS_AHEAD: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentFormat {
    Csv,
    /// One JSON object per line, [`MemberJson`]'s shape.
    JsonLines,
    /// Columns aligned for a terminal; long emails are cut.
    Table,
}

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error("cannot read the members")]
    Store(#[from] StoreError),
    #[error("cannot write the segment")]
    Write(#[source] std::io::Error),
    #[error("cannot start the thread that reads the members")]
    Thread(#[source] std::io::Error),
}

/// One member as the admin API's pages and the JSON lines show it: the CSV's columns, with
/// `locale` null when unknown and `channels` a list.
#[derive(Debug, Serialize)]
pub struct MemberJson<'a> {
    pub id: u64,
    pub email: &'a str,
    pub points: u64,
    pub joined_at: String,
    pub last_activity_at: Option<String>,
    pub orders_claimed: u64,
    pub points_earned: i64,
    pub points_redeemed: i64,
    pub rewards_redeemed: i64,
    pub locale: Option<&'a str>,
    pub channels: [&'static str; 1],
}

impl<'a> From<&'a MemberRow> for MemberJson<'a> {
    fn from(row: &'a MemberRow) -> Self {
        let (m, s) = (&row.member, &row.stats);
        MemberJson {
            id: m.id.0,
            email: m.email.as_str(),
            points: row.points.0,
            joined_at: time(m.joined_at),
            last_activity_at: s.last_activity_at.map(time),
            orders_claimed: s.orders_claimed,
            points_earned: s.points_earned,
            points_redeemed: s.points_redeemed,
            rewards_redeemed: s.rewards_redeemed,
            locale: m.locale.as_deref(),
            channels: [m.identity.channel.as_str()],
        }
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Writes every member `filter` admits to `out` in `format`, in id order, and returns how many
/// were written. Blocking: it walks the whole store (call it from a blocking thread, or on a
/// stopped store from the command line). `progress` is told the rows written so far every
/// 10,000 rows and once at the end. Memory stays flat whatever the store's size; `out` is
/// written in pieces (wrap a slow one in a `BufWriter`). An error may come after part of the
/// segment was written.
pub fn write_segment(
    store: &dyn LoyaltyStore,
    filter: &SegmentFilter,
    format: SegmentFormat,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, SegmentError> {
    let mut sink = Sink::start(format, out).map_err(SegmentError::Write)?;
    let mut written = 0u64;
    // The store is read on a thread of its own while this one writes: formatting is a fair
    // part of an export's time.
    std::thread::scope(|scope| {
        let (tx, rx) = sync_channel(ROWS_AHEAD);
        let scan = std::thread::Builder::new()
            .name("segment-scan".into())
            .spawn_scoped(scope, move || scan(store, filter, &tx))
            .map_err(SegmentError::Thread)?;
        let mut wrote = Ok(());
        'rows: for batch in &rx {
            for row in &batch {
                if let Err(e) = sink.row(row) {
                    wrote = Err(e);
                    break 'rows;
                }
                written += 1;
                if written % PROGRESS_EVERY == 0 {
                    progress(written);
                }
            }
        }
        // Stops the scan at its next batch, if a failed write left it running.
        drop(rx);
        let scanned = scan.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        wrote.map_err(SegmentError::Write)?;
        Ok::<_, SegmentError>(scanned?)
    })?;
    sink.finish().map_err(SegmentError::Write)?;
    progress(written);
    Ok(written)
}

/// The scanning thread: the segment's rows, in batches, until the end or until nobody listens.
fn scan(
    store: &dyn LoyaltyStore,
    filter: &SegmentFilter,
    tx: &SyncSender<Vec<MemberRow>>,
) -> Result<(), StoreError> {
    let mut batch = Vec::with_capacity(ROWS);
    store.member_rows(filter, None, &mut |row| {
        batch.push(row);
        if batch.len() < ROWS {
            return ControlFlow::Continue(());
        }
        match tx.send(std::mem::replace(&mut batch, Vec::with_capacity(ROWS))) {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(()),
        }
    })?;
    if !batch.is_empty() {
        let _ = tx.send(batch);
    }
    Ok(())
}

/// [`write_segment`] as CSV.
pub fn write_segment_csv(
    store: &dyn LoyaltyStore,
    filter: &SegmentFilter,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, SegmentError> {
    write_segment(store, filter, SegmentFormat::Csv, out, progress)
}

mod sink;
#[cfg(test)]
mod tests;
