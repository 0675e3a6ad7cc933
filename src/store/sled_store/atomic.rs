//! Multi-tree atomic writes without sled transactions: one process-wide writer lock plus a
//! redo journal.
//!
//! Why not `sled::Transactional`: on 0.34 every transaction (and `apply_batch`) takes sled's
//! global write lock, which stops every other reader and writer, and rolls the I/O buffer twice,
//! each roll a `pwrite` + `sync_file_range` on one of sled's I/O threads. The benchmark's
//! profile showed about four synced writes per Messenger claim from that alone, on two cores.
//!
//! Here an operation runs its closure under [`Atomic`]'s lock against [`TxTree`] views that
//! read the trees (plus the operation's own staged writes) and stage writes. Nothing touches
//! sled until the closure returns `Ok`. Then, for more than one write, the whole write set goes
//! into the `journal` tree as ONE insert (atomic by itself), the writes are applied in staged
//! order, and the journal record is removed. sled recovers a prefix of its log after a crash, so
//! a recovered store either lacks the journal record (and every write after it), or has it and
//! is completed by replaying it at open ([`Atomic::recover`]); the writes are absolute values, so
//! replaying twice is harmless. Isolation comes from the lock: every multi-key writer holds it,
//! so the closure's reads see no half-applied operation. Single-key writers that do not take it
//! (webhook intake, conversation saves, the delivered mark) never write a key that an
//! operation's closure decides on in a way they could break; see `queue.rs`.
//!
//! Durability is unchanged: the caller waits for the group commit after the operation, and that
//! flush covers the journal record and the writes alike.

use std::cell::RefCell;
use std::sync::{Mutex, MutexGuard, PoisonError};

use sled::{IVec, Tree};

use crate::domain::{CouponCode, MemberId};
use crate::store::StoreError;

/// The writer lock and the journal; one per store.
pub(super) struct Atomic {
    state: Mutex<State>,
    journal: Tree,
    /// The store's totals (`totals.rs`), which every operation that adds a member or a ledger
    /// entry updates in its own write set.
    totals: Tree,
    db: sled::Db,
}

struct State {
    /// Key of the next journal record.
    next: u64,
    /// A write set journaled and being applied, or whose application failed half-way (an I/O
    /// error, a panic): it is completed before anything else is written, so no later operation
    /// builds on half of it.
    unfinished: Option<(u64, Vec<Write>)>,
}

/// One staged write: the tree (by name, so the journal can be replayed after a restart), the key,
/// and the new value (`None` removes).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Write {
    tree: IVec,
    key: IVec,
    value: Option<IVec>,
}

/// A tree as seen inside an operation: reads see the operation's own staged writes first.
pub(super) struct TxTree<'a> {
    tree: &'a Tree,
    staged: &'a RefCell<Vec<Write>>,
    totals: &'a Tree,
}

impl<'a> TxTree<'a> {
    /// The totals tree, as seen inside the same operation: its writes join this write set.
    pub fn totals(&self) -> TxTree<'a> {
        TxTree {
            tree: self.totals,
            staged: self.staged,
            totals: self.totals,
        }
    }

    pub fn get(&self, key: impl AsRef<[u8]>) -> Tx<Option<IVec>> {
        let key = key.as_ref();
        let name = self.tree.name();
        if let Some(w) = self
            .staged
            .borrow()
            .iter()
            .rev()
            .find(|w| w.tree == name && w.key == key)
        {
            return Ok(w.value.clone());
        }
        Ok(self.tree.get(key)?)
    }

    pub fn insert(&self, key: impl AsRef<[u8]>, value: impl Into<IVec>) -> Tx<()> {
        self.stage(key.as_ref(), Some(value.into()));
        Ok(())
    }

    pub fn remove(&self, key: impl AsRef<[u8]>) -> Tx<()> {
        self.stage(key.as_ref(), None);
        Ok(())
    }

    fn stage(&self, key: &[u8], value: Option<IVec>) {
        self.staged.borrow_mut().push(Write {
            tree: self.tree.name(),
            key: key.into(),
            value,
        });
    }
}

impl Atomic {
    /// Opens the journal of `db` and completes whatever a crash left in it: call before the
    /// store serves anything.
    pub fn recover(db: &sled::Db) -> Result<Atomic, StoreError> {
        let journal = db.open_tree("journal")?;
        let totals = db.open_tree("totals")?;
        let mut next = 0;
        let mut replayed = 0;
        for kv in journal.iter() {
            let (k, v) = kv?;
            let id = super::keys::read_u64(&k)
                .ok_or_else(|| Abort::Corrupt("journal key".into(), None))?;
            apply(db, &decode(&v)?)?;
            journal.remove(&k)?;
            next = id + 1;
            replayed += 1;
        }
        if replayed > 0 {
            db.flush()?;
            tracing::warn!(
                operations = replayed,
                "completed operations a crash had interrupted"
            );
        }
        Ok(Atomic {
            state: Mutex::new(State {
                next,
                unfinished: None,
            }),
            journal,
            totals,
            db: db.clone(),
        })
    }

    /// The totals tree, for reads outside an operation.
    pub fn totals_tree(&self) -> &Tree {
        &self.totals
    }

    /// Runs `f` against views of `trees` under the writer lock and applies what it staged, all or
    /// nothing. An `Err` from `f` writes nothing.
    pub fn run<const N: usize, T>(
        &self,
        trees: [&Tree; N],
        f: impl FnOnce([TxTree<'_>; N]) -> Tx<T>,
    ) -> Result<T, StoreError> {
        let mut state = self.lock();
        self.finish_unfinished(&mut state)?;
        let staged = RefCell::new(Vec::new());
        let out = f(std::array::from_fn(|i| TxTree {
            tree: trees[i],
            staged: &staged,
            totals: &self.totals,
        }))
        .map_err(StoreError::from)?;
        let writes = staged.into_inner();
        match writes.len() {
            0 => {}
            // One key is atomic in sled by itself.
            1 => apply(&self.db, &writes)?,
            _ => {
                let id = state.next;
                state.next += 1;
                self.journal
                    .insert(super::keys::journal(id), encode(&writes))?;
                // Recorded as unfinished before applying: if applying fails or panics half-way,
                // the next operation (or the next open) completes it first.
                state.unfinished = Some((id, writes));
                self.finish_unfinished(&mut state)?;
            }
        }
        Ok(out)
    }

    /// Runs a multi-key read under the writer lock, so it sees no operation half-applied.
    pub fn read<T>(&self, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut state = self.lock();
        if state.unfinished.is_some() {
            self.finish_unfinished(&mut state)?;
            // Those writes had no flush of their own (they failed earlier); this read may show
            // them, so they go to disk first. A rare recovery path: a blocking flush is fine.
            self.db.flush()?;
        }
        f()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a counter and an optional retry, both updated whole; a panic in a closure
        // (which writes nothing) cannot leave them half-written.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn finish_unfinished(&self, state: &mut State) -> Result<(), StoreError> {
        if let Some((id, writes)) = &state.unfinished {
            apply(&self.db, writes)?;
            self.journal.remove(super::keys::journal(*id))?;
            state.unfinished = None;
        }
        Ok(())
    }
}

/// Applies a write set in order. Order matters to readers outside the lock: an index entry is
/// staged after the record it points to, so whoever finds the index finds the record.
fn apply(db: &sled::Db, writes: &[Write]) -> Result<(), StoreError> {
    let mut tree: Option<Tree> = None;
    for w in writes {
        let t = match &tree {
            Some(t) if t.name() == w.tree => t,
            _ => tree.insert(db.open_tree(&w.tree)?),
        };
        match &w.value {
            Some(v) => t.insert(&w.key, v.clone())?,
            None => t.remove(&w.key)?,
        };
    }
    Ok(())
}

/// Journal record: for each write, `u16 name length, name, u32 key length, key, u8 0|1,
/// [u32 value length, value]`, big-endian.
fn encode(writes: &[Write]) -> Vec<u8> {
    let size: usize = writes
        .iter()
        .map(|w| 11 + w.tree.len() + w.key.len() + w.value.as_ref().map_or(0, |v| v.len()))
        .sum();
    let mut out = Vec::with_capacity(size);
    for w in writes {
        // Tree names are ours (short); keys and values are bounded by sled's own limits.
        out.extend_from_slice(&(w.tree.len() as u16).to_be_bytes());
        out.extend_from_slice(&w.tree);
        out.extend_from_slice(&(w.key.len() as u32).to_be_bytes());
        out.extend_from_slice(&w.key);
        match &w.value {
            Some(v) => {
                out.push(1);
                out.extend_from_slice(&(v.len() as u32).to_be_bytes());
                out.extend_from_slice(v);
            }
            None => out.push(0),
        }
    }
    out
}

fn decode(mut raw: &[u8]) -> Result<Vec<Write>, StoreError> {
    fn take<'a>(raw: &mut &'a [u8], n: usize) -> Result<&'a [u8], StoreError> {
        if raw.len() < n {
            return Err(Abort::Corrupt("journal record cut short".into(), None).into());
        }
        let (head, rest) = raw.split_at(n);
        *raw = rest;
        Ok(head)
    }
    fn len(raw: &mut &[u8], width: usize) -> Result<usize, StoreError> {
        let bytes = take(raw, width)?;
        Ok(bytes.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b)))
    }
    let mut out = Vec::new();
    while !raw.is_empty() {
        let n = len(&mut raw, 2)?;
        let tree = IVec::from(take(&mut raw, n)?);
        let n = len(&mut raw, 4)?;
        let key = IVec::from(take(&mut raw, n)?);
        let value = match take(&mut raw, 1)? {
            [0] => None,
            [1] => {
                let n = len(&mut raw, 4)?;
                Some(IVec::from(take(&mut raw, n)?))
            }
            _ => return Err(Abort::Corrupt("journal record tag".into(), None).into()),
        };
        out.push(Write { tree, key, value });
    }
    Ok(out)
}

/// Why an atomic operation gave up, described inside its closure and acted on by the caller.
#[derive(Debug)]
pub(super) enum Abort {
    UnknownMember(MemberId),
    UnknownCoupon(CouponCode),
    Corrupt(String, Option<serde_json::Error>),
}

impl From<Abort> for StoreError {
    fn from(a: Abort) -> Self {
        match a {
            Abort::UnknownMember(id) => StoreError::UnknownMember(id),
            Abort::UnknownCoupon(code) => StoreError::UnknownCoupon(code),
            Abort::Corrupt(what, source) => StoreError::Corrupt { what, source },
        }
    }
}

/// How an atomic operation's closure fails: a rule said no ([`Abort`]) or sled failed.
#[derive(Debug)]
pub(super) enum TxError {
    Abort(Abort),
    Storage(sled::Error),
}

impl From<TxError> for StoreError {
    fn from(e: TxError) -> Self {
        match e {
            TxError::Abort(a) => a.into(),
            TxError::Storage(e) => e.into(),
        }
    }
}

pub(super) type Tx<T> = Result<T, TxError>;

pub(super) fn abort<T>(a: Abort) -> Tx<T> {
    Err(TxError::Abort(a))
}

/// Lifts a plain [`Abort`] result into an operation closure's result.
pub(super) fn tx<T>(r: Result<T, Abort>) -> Tx<T> {
    r.map_err(TxError::Abort)
}

impl From<sled::Error> for TxError {
    fn from(e: sled::Error) -> Self {
        TxError::Storage(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, sled::Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        (dir, db)
    }

    fn w(tree: &str, key: &str, value: Option<&str>) -> Write {
        Write {
            tree: tree.as_bytes().into(),
            key: key.as_bytes().into(),
            value: value.map(|v| v.as_bytes().into()),
        }
    }

    #[test]
    fn a_journal_record_reads_back_as_written() {
        let writes = vec![
            w("members", "k1", Some("v1")),
            w("ledger", "", None),
            w("x", "k", Some("")),
        ];
        assert_eq!(decode(&encode(&writes)).unwrap(), writes);
        assert!(decode(&encode(&writes)[..5]).is_err());
    }

    #[test]
    fn an_operation_applies_all_its_writes_and_leaves_no_journal() {
        let (_d, db) = db();
        let (a, b) = (db.open_tree("a").unwrap(), db.open_tree("b").unwrap());
        let atomic = Atomic::recover(&db).unwrap();
        let seen = atomic
            .run([&a, &b], |[ta, tb]| {
                ta.insert("k", "1")?;
                tb.insert("k", "2")?;
                ta.insert("k", "3")?;
                ta.get("k")
            })
            .unwrap();
        assert_eq!(seen.as_deref(), Some(&b"3"[..]), "reads see staged writes");
        assert_eq!(a.get("k").unwrap().as_deref(), Some(&b"3"[..]));
        assert_eq!(b.get("k").unwrap().as_deref(), Some(&b"2"[..]));
        assert!(db.open_tree("journal").unwrap().is_empty());
    }

    #[test]
    fn a_failed_operation_writes_nothing() {
        let (_d, db) = db();
        let a = db.open_tree("a").unwrap();
        let atomic = Atomic::recover(&db).unwrap();
        let r: Result<(), _> = atomic.run([&a], |[ta]| {
            ta.insert("k", "1")?;
            ta.insert("j", "1")?;
            Err(TxError::Abort(Abort::Corrupt("no".into(), None)))
        });
        assert!(r.is_err());
        assert!(a.is_empty());
    }

    #[test]
    fn a_journal_left_by_a_crash_is_completed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::Config::new().path(dir.path()).open().unwrap();
            let a = db.open_tree("a").unwrap();
            // What a crash after the journal insert and the first write leaves behind.
            let writes = vec![
                w("a", "k1", Some("new")),
                w("b", "k2", Some("v")),
                w("a", "gone", None),
            ];
            a.insert("gone", "old").unwrap();
            db.open_tree("journal")
                .unwrap()
                .insert(crate::store::keys::journal(7), encode(&writes))
                .unwrap();
            a.insert("k1", "new").unwrap();
            db.flush().unwrap();
        }
        let db = crate::store::sled_store::raw_db(dir.path());
        let atomic = Atomic::recover(&db).unwrap();
        let (a, b) = (db.open_tree("a").unwrap(), db.open_tree("b").unwrap());
        assert_eq!(a.get("k1").unwrap().as_deref(), Some(&b"new"[..]));
        assert_eq!(b.get("k2").unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(a.get("gone").unwrap(), None);
        assert!(db.open_tree("journal").unwrap().is_empty());
        assert_eq!(atomic.lock().next, 8, "journal keys keep growing");
    }
}
