//! The ledger as a segment scan consumes it: in key order, alongside the members. The first
//! entries are read on the scan's own thread, so a page of a hundred members costs no thread.
//! A scan that goes on hands the reading over to a thread of its own, which decodes entries
//! ahead while the scan reads the members: the two trees' page reads and decoding then share
//! the CPUs (the ledger is about a third of a whole-store scan).

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::Scope;

use chrono::{DateTime, Utc};

use super::super::atomic::Abort;
use super::super::records::decode;
use crate::domain::{EntryKind, MemberId, MemberStats};
use crate::store::{keys, StoreError};

/// Entries read on the scan's thread before a reading thread takes over. Unit tests hand over
/// early and in small messages, so that their small stores go every way.
const INLINE: u64 = if cfg!(test) { 100 } else { 8 * 1024 };
/// Entries per message from the reading thread, and messages it may read ahead.
const ENTRIES: usize = if cfg!(test) { 64 } else { 1024 };
const READ_AHEAD: usize = 4;

/// What the figures need of a ledger entry; serde skips the rest of the record unread.
#[derive(serde::Deserialize)]
pub(super) struct Figures {
    pub kind: EntryKind,
    pub points: i64,
    pub at: DateTime<Utc>,
}

struct Entry {
    owner: u64,
    seq: u64,
    figures: Figures,
}

type Entries = Result<Vec<Entry>, StoreError>;

pub(super) struct Feed<'scope, 'env> {
    scope: &'scope Scope<'scope, 'env>,
    source: Source,
    /// An entry read past the member being read: it belongs to a later one.
    next: Option<Entry>,
    read_inline: u64,
}

enum Source {
    Inline(Box<sled::Iter>),
    Thread {
        rx: Receiver<Entries>,
        batch: std::vec::IntoIter<Entry>,
    },
}

impl<'scope, 'env> Feed<'scope, 'env> {
    /// `ledger`: the ledger tree from the scan's first member on.
    pub fn new(scope: &'scope Scope<'scope, 'env>, ledger: sled::Iter) -> Self {
        Feed {
            scope,
            source: Source::Inline(Box::new(ledger)),
            next: None,
            read_inline: 0,
        }
    }

    /// Moves past the entries of members below `id` (a join being applied writes its ledger
    /// first) and those of `id`, folding those numbered below `count` into `stats`.
    pub fn pass(
        &mut self,
        id: MemberId,
        count: u64,
        mut stats: Option<&mut MemberStats>,
    ) -> Result<(), StoreError> {
        while let Some(e) = self.next_entry()? {
            if e.owner > id.0 {
                self.next = Some(e);
                return Ok(());
            }
            let mine = e.owner == id.0 && e.seq < count;
            if let Some(stats) = stats.as_deref_mut().filter(|_| mine) {
                stats.add(e.figures.kind, e.figures.points, e.figures.at);
            }
        }
        Ok(())
    }

    fn next_entry(&mut self) -> Result<Option<Entry>, StoreError> {
        if let Some(e) = self.next.take() {
            return Ok(Some(e));
        }
        loop {
            match &mut self.source {
                Source::Inline(_) if self.read_inline == INLINE => self.hand_over()?,
                Source::Inline(iter) => {
                    self.read_inline += 1;
                    return iter.next().map(entry).transpose();
                }
                Source::Thread { rx, batch } => {
                    if let Some(e) = batch.next() {
                        return Ok(Some(e));
                    }
                    match rx.recv() {
                        Ok(next) => *batch = next?.into_iter(),
                        // The reader is done: it handed over the whole rest of the ledger.
                        Err(_) => return Ok(None),
                    }
                }
            }
        }
    }

    /// Moves the reading, where it stands, to a thread of the scan's scope.
    fn hand_over(&mut self) -> Result<(), StoreError> {
        let (tx, rx) = sync_channel(READ_AHEAD);
        let thread = Source::Thread {
            rx,
            batch: Vec::new().into_iter(),
        };
        let Source::Inline(iter) = std::mem::replace(&mut self.source, thread) else {
            return Ok(());
        };
        std::thread::Builder::new()
            .name("segment-ledger".into())
            .spawn_scoped(self.scope, move || read_ahead(*iter, &tx))
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        Ok(())
    }
}

/// The reading thread: the rest of the ledger, decoded, until its end or until nobody listens.
fn read_ahead(iter: sled::Iter, tx: &SyncSender<Entries>) {
    let mut batch = Vec::with_capacity(ENTRIES);
    for kv in iter {
        match entry(kv) {
            Ok(e) => batch.push(e),
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        }
        if batch.len() == ENTRIES {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(ENTRIES));
            if tx.send(Ok(full)).is_err() {
                return;
            }
        }
    }
    let _ = tx.send(Ok(batch));
}

fn entry(kv: sled::Result<(sled::IVec, sled::IVec)>) -> Result<Entry, StoreError> {
    let (key, raw) = kv?;
    let corrupt = || StoreError::from(Abort::Corrupt("ledger key".into(), None));
    let (owner, seq) = key.split_at_checked(8).ok_or_else(corrupt)?;
    Ok(Entry {
        owner: keys::read_u64(owner).ok_or_else(corrupt)?,
        seq: keys::read_u64(seq).ok_or_else(corrupt)?,
        figures: decode("ledger entry", &raw)?,
    })
}
