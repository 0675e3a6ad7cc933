//! The three ways a segment is written out, one member at a time: CSV through the `csv` crate
//! (quoting), JSON lines, and a table aligned for a terminal.

use super::{time, MemberJson, SegmentFormat, CSV_COLUMNS};
use crate::domain::MemberRow;
use std::io::Write;

pub(super) enum Sink<'a> {
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
    pub fn start(format: SegmentFormat, out: &'a mut dyn Write) -> std::io::Result<Sink<'a>> {
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

    pub fn row(&mut self, row: &MemberRow) -> std::io::Result<()> {
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

    pub fn finish(self) -> std::io::Result<()> {
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
pub(super) fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}
