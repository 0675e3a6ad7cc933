//! Writing the export format: the header, each record as the store yields it, the trailer.
//! Memory stays flat: a record is written as soon as it is read, through a buffer of fixed
//! size.

use std::io::{BufWriter, Write};
use std::ops::ControlFlow;

use chrono::Utc;

use super::{unbalanced, BackupError, Counts, Header, Trailer, END, FORMAT, VERSION};
use crate::store::LoyaltyStore;

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportSummary {
    pub counts: Counts,
    /// The file's size.
    pub bytes: u64,
}

const BUFFER: usize = 64 * 1024;

/// Writes the whole of `store` to `out` in the export format (see the module doc), also while
/// the store serves. `progress` is called after each record with the number written so far.
/// An error leaves `out` without its trailer, so that the file reads as cut short. Blocking:
/// run it on a thread that may wait on I/O.
pub fn export(
    store: &dyn LoyaltyStore,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
) -> Result<ExportSummary, BackupError> {
    let mut out = Counted {
        inner: BufWriter::with_capacity(BUFFER, out),
        bytes: 0,
    };
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        exported_at: Utc::now(),
        store_version: store.layout_version(),
    };
    line(&mut out, &header)?;
    let mut counts = Counts::default();
    let mut failed = None;
    store.backup(&mut |record| {
        if let Some(fault) = unbalanced(&record) {
            failed = Some(fault);
            return ControlFlow::Break(());
        }
        counts.add(&record);
        match line(&mut out, &record) {
            Ok(()) => {
                progress(counts.records());
                ControlFlow::Continue(())
            }
            Err(e) => {
                failed = Some(e);
                ControlFlow::Break(())
            }
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    let trailer = Trailer {
        kind: END.into(),
        counts,
    };
    line(&mut out, &trailer)?;
    out.flush().map_err(BackupError::Write)?;
    Ok(ExportSummary {
        counts,
        bytes: out.bytes,
    })
}

fn line(out: &mut Counted<'_>, value: &impl serde::Serialize) -> Result<(), BackupError> {
    serde_json::to_writer(&mut *out, value).map_err(|e| BackupError::Write(e.into()))?;
    out.write_all(b"\n").map_err(BackupError::Write)
}

/// The output, counting what passes.
struct Counted<'w> {
    inner: BufWriter<&'w mut dyn Write>,
    bytes: u64,
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
