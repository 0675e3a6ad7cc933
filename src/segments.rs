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
use std::io::Write;
use std::ops::ControlFlow;

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
    let (mut written, mut failed) = (0u64, None);
    store.member_rows(filter, None, &mut |row| match sink.row(&row) {
        Ok(()) => {
            written += 1;
            if written % PROGRESS_EVERY == 0 {
                progress(written);
            }
            ControlFlow::Continue(())
        }
        Err(e) => {
            failed = Some(e);
            ControlFlow::Break(())
        }
    })?;
    if let Some(e) = failed {
        return Err(SegmentError::Write(e));
    }
    sink.finish().map_err(SegmentError::Write)?;
    progress(written);
    Ok(written)
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

enum Sink<'a> {
    /// With a buffer for the numbers, reused for every field.
    Csv(Box<csv::Writer<&'a mut dyn Write>>, String),
    JsonLines(std::io::BufWriter<&'a mut dyn Write>),
    Table(std::io::BufWriter<&'a mut dyn Write>),
}

/// The table's columns: (title, width); a negative width aligns left.
const TABLE: [(&str, i32); 11] = [
    ("id", 9),
    ("email", -32),
    ("points", 9),
    ("joined", -10),
    ("last active", -11),
    ("orders", 7),
    ("earned", 9),
    ("redeemed", 9),
    ("rewards", 8),
    ("locale", -6),
    ("channels", -9),
];

impl<'a> Sink<'a> {
    fn start(format: SegmentFormat, out: &'a mut dyn Write) -> std::io::Result<Sink<'a>> {
        Ok(match format {
            SegmentFormat::Csv => {
                let mut w = csv::Writer::from_writer(out);
                w.write_record(CSV_COLUMNS)?;
                Sink::Csv(Box::new(w), String::new())
            }
            SegmentFormat::JsonLines => Sink::JsonLines(std::io::BufWriter::new(out)),
            SegmentFormat::Table => {
                let mut w = std::io::BufWriter::new(out);
                table_line(&mut w, TABLE.map(|(title, _)| title.to_owned()))?;
                Sink::Table(w)
            }
        })
    }

    fn row(&mut self, row: &MemberRow) -> std::io::Result<()> {
        match self {
            Sink::Csv(w, buf) => csv_row(w, buf, row)?,
            Sink::JsonLines(w) => {
                serde_json::to_writer(&mut *w, &MemberJson::from(row))?;
                w.write_all(b"\n")?;
            }
            Sink::Table(w) => {
                let j = MemberJson::from(row);
                let date = |t: &str| t.get(..10).unwrap_or(t).to_owned();
                let cells = [
                    j.id.to_string(),
                    cut(j.email, 32),
                    j.points.to_string(),
                    date(&j.joined_at),
                    j.last_activity_at.as_deref().map(date).unwrap_or_default(),
                    j.orders_claimed.to_string(),
                    j.points_earned.to_string(),
                    j.points_redeemed.to_string(),
                    j.rewards_redeemed.to_string(),
                    j.locale.unwrap_or("").to_owned(),
                    j.channels.join(";"),
                ];
                table_line(w, cells)?;
            }
        }
        Ok(())
    }

    fn finish(self) -> std::io::Result<()> {
        match self {
            Sink::Csv(mut w, _) => w.flush(),
            Sink::JsonLines(mut w) | Sink::Table(mut w) => w.flush(),
        }
    }
}

/// One CSV record, the numbers written through `buf`: a segment is written at hundreds of
/// thousands of rows a second, and a string per field showed in its profile.
fn csv_row(
    w: &mut csv::Writer<&mut dyn Write>,
    buf: &mut String,
    row: &MemberRow,
) -> std::io::Result<()> {
    use std::fmt::Write as _;
    let (m, s) = (&row.member, &row.stats);
    let mut field = |w: &mut csv::Writer<_>, value: &dyn std::fmt::Display| {
        buf.clear();
        let _ = write!(buf, "{value}");
        w.write_field(buf.as_bytes())
    };
    field(w, &m.id.0)?;
    w.write_field(m.email.as_str())?;
    field(w, &row.points.0)?;
    w.write_field(time(m.joined_at))?;
    w.write_field(s.last_activity_at.map(time).unwrap_or_default())?;
    field(w, &s.orders_claimed)?;
    field(w, &s.points_earned)?;
    field(w, &s.points_redeemed)?;
    field(w, &s.rewards_redeemed)?;
    w.write_field(m.locale.as_deref().unwrap_or(""))?;
    w.write_field(m.identity.channel.as_str())?;
    w.write_record(None::<&[u8]>)?;
    Ok(())
}

fn table_line(w: &mut impl Write, cells: [String; 11]) -> std::io::Result<()> {
    let mut line = String::new();
    for ((_, width), cell) in TABLE.iter().zip(cells) {
        let n = width.unsigned_abs() as usize;
        if *width < 0 {
            line.push_str(&format!("{cell:<n$} "));
        } else {
            line.push_str(&format!("{cell:>n$} "));
        }
    }
    writeln!(w, "{}", line.trim_end())
}

/// `s` in at most `max` characters, the last one `…` if it was cut.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests;
