//! The sled backend of [`super::LoyaltyStore`] and [`super::EventQueue`].
//!
//! Trees (keys from [`super::keys`], values serde_json unless noted):
//! - `members`: member id → `Account` (the member, cached balance, next ledger sequence)
//! - `identities`: chat identity key → member id; `emails`: email → member id
//! - `ledger`: (member id, seq) → `LedgerEntry`, append-only
//! - `orders`: upper-cased order id (the shop's own id; the number for shops without one) →
//!   `OrderRecord` (its claim, what it stands at, its reversal), global across members and
//!   channels
//! - `webhook_deliveries`: the delivery ids of shop webhooks seen in the last week, and the
//!   same by time for pruning (`deliveries.rs`)
//! - `coupons`: code → `Coupon`; `member_coupons`: (member id, seq of the redemption entry)
//!   → code; `pending_coupons`: code → empty, the coupons whose shop answer is outstanding
//! - `conversations`: chat identity key → `ConversationState`
//! - `intake`: record number → the events recorded in one group-commit flush, a JSON array,
//!   removed once all are processed (`intake.rs`)
//! - `inbox`: processed event key → `Done` (the done-at time and the replies not delivered
//!   yet)
//! - `adjustment_keys`: an operator's `Idempotency-Key` → `Adjusted` (the adjustment it applied)
//! - `imported_balances`: normalised email → `ImportedBalance` (waiting for a member with that
//!   email, or applied to one; `imports.rs`)
//! - `totals`: one record, the number of members and the sum of their balances (`totals.rs`)
//! - `pending_joins`: chat identity key → `PendingJoin`, a join waiting for its address's
//!   code (`verification.rs`)
//! - `mail_due`, `mail_due_by`, `mail_state`, `mail_outbox`, `mail_unsent`: email to members,
//!   the due-date index, per-member mail state and the sends (`mail/`)
//! - `journal`: the redo record of a multi-key operation while it is being applied
//! - `meta`: the layout version (`migrate.rs`, which also brings older layouts up to date at
//!   open), a mark while a backup is being imported (`restore.rs`), the key that signs
//!   unsubscribe links and the mark of the statement backfill (`mail/`), and who wrote on each
//!   chat channel in the day before the last graceful stop (`recent_senders.rs`)
//!
//! Business operations span trees and run as atomic operations (`atomic.rs`: a writer lock and
//! a redo journal; sled's own transactions stop the whole database and sync twice each). Every
//! balance change rewrites the member's `Account`. The inbox takes no lock: each of its writes
//! is a compare-and-swap of one slot (see `queue.rs`); intake appends to a record the flusher
//! writes. Every mutating method waits for a
//! group-committed flush before returning.
//!
//! Submodules: `atomic` (the writer lock and journal), `records` (stored shapes, codec, closure
//! helpers), `loyalty` ([`super::LoyaltyStore`]), `enrol` (a join inside an operation),
//! `verification` (joins waiting for a code), `mail` (the due index, mail state, the
//! outbox), `order_changes` (order reversals and changes), `deliveries` (webhook ids), `queue`
//! ([`super::EventQueue`]), `intake` (the records of pending events), `totals` and `depths`
//! (what the metrics' gauges read), `migrate` (layout versions), `backup` and `restore` (the
//! store as records, out and in).

mod adjust;
mod atomic;
mod backup;
mod deliveries;
mod depths;
mod enrol;
mod imports;
mod intake;
mod loyalty;
mod mail;
mod migrate;
mod order_changes;
mod queue;
mod recent_senders;
mod records;
mod restore;
mod segments;
#[cfg(test)]
mod test_members;
#[cfg(test)]
mod tests;
mod totals;
mod verification;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sled::Tree;

use super::durability::{AwaitDurable, Durability, Durable, FlushStats, Mark};
use super::flusher::{GroupCommit, Pacing};
use super::{keys, MemberAccount, StoreError};
use crate::domain::{Coupon, MemberId};
use atomic::Atomic;
use intake::Intake;
use records::{decode, decode_id, Account};

/// The sled store; share it as `Arc<SledStore>`. Dropping it stops the flusher thread.
pub struct SledStore {
    members: Tree,
    identities: Tree,
    emails: Tree,
    ledger: Tree,
    orders: Tree,
    coupons: Tree,
    member_coupons: Tree,
    pending_coupons: Tree,
    /// (member, request key) → coupon code: makes a replayed redemption return its coupon.
    redeem_requests: Tree,
    conversations: Tree,
    inbox: Tree,
    /// Pending events; shared with the flusher, which writes their unwritten records.
    intake: Arc<Intake>,
    /// Replies queued and not delivered, for the metrics (`depths.rs`).
    undelivered: depths::Undelivered,
    adjustment_keys: Tree,
    imported_balances: Tree,
    deliveries: Tree,
    /// Waiting joins, the mail due index, mail states and the mail outbox (`mail/`).
    mail: mail::MailTrees,
    atomic: Atomic,
    commit: GroupCommit,
    db: sled::Db,
    path: PathBuf,
}

/// How long an open waits for sled's file lock to be let go of (see [`open_db`]).
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Opens sled's database as `config` says, waiting up to [`LOCK_WAIT`] for its file lock. A
/// `sled::Db` dropped in this process lets go of the lock only when its last jobs (a log write
/// on sled's I/O pool) finish, a few milliseconds later, or longer on a loaded machine; so an
/// open right after a close (the snapshot at a graceful stop, a backup import, a store reopened
/// in a test) would otherwise fail at random. A lock held by another process outlasts the wait,
/// and its error is returned.
fn open_db(config: &sled::Config) -> Result<sled::Db, sled::Error> {
    let started = Instant::now();
    loop {
        match config.open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && started.elapsed() < LOCK_WAIT =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            opened => return opened,
        }
    }
}

/// The sled database at `path`, opened directly (to plant or inspect stored shapes in tests),
/// waiting out the lock of one just dropped as [`open_db`] does.
#[cfg(test)]
pub(crate) fn raw_db(path: &Path) -> sled::Db {
    open_db(&sled::Config::new().path(path)).expect("open the sled database")
}

/// A store closed by [`SledStore::close`]: everything written is on disk, and nothing of it is
/// open any more.
#[derive(Debug)]
pub struct ClosedStore {
    path: PathBuf,
}

impl ClosedStore {
    /// Opens the closed store once more and closes it again, for the snapshot sled writes when
    /// it opens a store. sled 0.34 writes its snapshot (every page's place in the log, as of a
    /// log position) at no other time, so a start recovers everything written since the last
    /// start: after weeks of running, or an import of a million members, the whole log, which
    /// from a cold page cache (after a reboot) took 1–3 s at a million members
    /// (`docs/benchmark.md`, Decisions: the snapshot at a graceful stop). Done at a graceful
    /// stop, sled's own recovery reads a log that is mostly still in the page cache, and the
    /// next start reads the snapshot and the short tail past it. Nothing depends on it: failed or cut off (a kill at the shutdown
    /// deadline; a half-written snapshot is ignored, `vendor/sled/LOYALTY-PATCHES.md` change
    /// 6), the next start recovers the log as it would have. Returns how long it took.
    pub fn write_snapshot(self) -> Result<Duration, StoreError> {
        let started = Instant::now();
        // The page cache's size does not change what recovery reads; a small one keeps the
        // stopping process small.
        let config = sled::Config::new().path(&self.path).cache_capacity(8 << 20);
        drop(open_db(&config)?);
        Ok(started.elapsed())
    }
}

/// sled's log file (`<path>/db`), for the `fdatasync` after each flush; `fdatasync` forces
/// the file's pages and size whichever descriptor it is called on. The directory is forced
/// once here so that the file itself survives a power loss on a new store.
fn forced_log(path: &Path) -> Result<std::fs::File, StoreError> {
    let io = |e: std::io::Error| StoreError::Backend(Box::new(e));
    let log = std::fs::File::open(path.join("db")).map_err(io)?;
    rustix::fs::fsync(std::fs::File::open(path).map_err(io)?).map_err(|e| io(e.into()))?;
    Ok(log)
}

impl AwaitDurable for SledStore {
    fn durable(&self, mark: Mark) -> Durable {
        self.commit.durable(mark)
    }

    fn flush_stats(&self) -> Option<FlushStats> {
        Some(self.commit.stats())
    }
}

impl SledStore {
    /// Opens (or creates) the database at `path`. `cache_capacity_bytes` bounds sled's page
    /// cache, which is what the process's memory follows.
    pub fn open(path: &Path, cache_capacity_bytes: u64) -> Result<SledStore, StoreError> {
        Self::open_tuned(
            path,
            cache_capacity_bytes,
            Pacing::gap(Duration::ZERO),
            Durability::default(),
        )
    }

    /// [`SledStore::open`] with the group commit's `pacing` (see [`Pacing`]). Under load a gap
    /// of a millisecond or two lets each flush serve more writers; fewer flushes were the
    /// largest CPU saving in the benchmark's profile. `durability` says what each flush must
    /// survive.
    ///
    /// A store whose import did not finish is refused ([`StoreError::RestoreUnfinished`]):
    /// it holds part of a backup. [`SledStore::open_for_restore`] opens it.
    pub fn open_tuned(
        path: &Path,
        cache_capacity_bytes: u64,
        pacing: Pacing,
        durability: Durability,
    ) -> Result<SledStore, StoreError> {
        Self::open_with(path, cache_capacity_bytes, pacing, durability, false)
    }

    /// Opens a store to import a backup into ([`crate::backup::import`]), also one where an
    /// earlier import did not finish (the import removes what it left and starts over).
    pub fn open_for_restore(
        path: &Path,
        cache_capacity_bytes: u64,
    ) -> Result<SledStore, StoreError> {
        let (pacing, durability) = (Pacing::gap(Duration::ZERO), Durability::default());
        Self::open_with(path, cache_capacity_bytes, pacing, durability, true)
    }

    fn open_with(
        path: &Path,
        cache_capacity_bytes: u64,
        pacing: Pacing,
        durability: Durability,
        for_restore: bool,
    ) -> Result<SledStore, StoreError> {
        let db = open_db(
            &sled::Config::new()
                .path(path)
                .cache_capacity(cache_capacity_bytes),
        )?;
        // The journal first: a migration reads what a crash may have left half-applied.
        let atomic = Atomic::recover(&db)?;
        migrate::to_current(&db, &atomic)?;
        if !for_restore && restore::unfinished(&db)? {
            return Err(StoreError::RestoreUnfinished);
        }
        let commit = match durability {
            Durability::ProcessCrash => GroupCommit::start(db.clone(), pacing)?,
            Durability::PowerLoss => {
                GroupCommit::start_forcing(db.clone(), pacing, forced_log(path)?)?
            }
        };
        let tree = |name: &str| db.open_tree(name);
        let inbox = tree("inbox")?;
        let intake = Arc::new(Intake::open(tree("intake")?, &inbox)?);
        let writer = Arc::clone(&intake);
        commit.before_each_flush(Box::new(move || writer.write_unwritten()));
        let store = SledStore {
            members: tree("members")?,
            identities: tree("identities")?,
            emails: tree("emails")?,
            ledger: tree("ledger")?,
            orders: tree("orders")?,
            coupons: tree("coupons")?,
            member_coupons: tree("member_coupons")?,
            pending_coupons: tree("pending_coupons")?,
            redeem_requests: tree("redeem_requests")?,
            conversations: tree("conversations")?,
            inbox,
            intake,
            undelivered: depths::Undelivered::unknown(),
            adjustment_keys: tree("adjustment_keys")?,
            imported_balances: tree("imported_balances")?,
            deliveries: tree("webhook_deliveries")?,
            mail: mail::MailTrees::open(&db)?,
            atomic,
            commit,
            db,
            path: path.to_path_buf(),
        };
        // No member count here: `Tree::len` walks the whole tree, seconds at a million members.
        // The totals record counts them instead, once for a store written before it existed.
        totals::ensure(store.atomic.totals_tree(), &store.members)?;
        tracing::info!(path = %path.display(), "store opened");
        Ok(store)
    }

    /// While intake records cannot be written, received events wait in memory up to `bytes`;
    /// beyond it new ones are refused (`store.max_unwritten_events_mb`).
    pub fn set_max_unwritten_event_bytes(&self, bytes: usize) {
        self.intake.set_max_unwritten_bytes(bytes);
    }

    #[cfg(test)]
    pub(crate) fn max_unwritten_event_bytes(&self) -> usize {
        self.intake.max_unwritten_bytes()
    }

    /// Tells `observe` how long each group-commit flush took (the metrics); it runs on the
    /// flusher thread after the flush's waiters are woken, so it must be quick.
    pub fn observe_flushes(&self, observe: impl Fn(Duration) + Send + Sync + 'static) {
        self.commit.after_each_flush(Box::new(observe));
    }

    /// Blocks until every write so far is on disk; for shutdown.
    pub fn flush_now(&self) -> Result<(), StoreError> {
        self.commit.wait()
    }

    /// Flushes every write and closes the store, for a graceful stop (sled's last jobs may
    /// hold its file lock a few milliseconds longer); [`ClosedStore::write_snapshot`] may
    /// follow. An error means the last writes may not be on disk; the store is closed all the
    /// same.
    pub fn close(self) -> Result<ClosedStore, StoreError> {
        let flushed = self.flush_now();
        let path = self.path.clone();
        drop(self);
        flushed.map(|()| ClosedStore { path })
    }

    #[cfg(test)]
    fn intake_tree(&self) -> Tree {
        self.db.open_tree("intake").unwrap()
    }

    fn account(&self, id: MemberId) -> Result<Option<Account>, StoreError> {
        match self.members.get(keys::member(id))? {
            Some(raw) => Ok(Some(decode("member record", &raw)?)),
            None => Ok(None),
        }
    }

    fn account_via(&self, index: &Tree, key: &[u8]) -> Result<Option<MemberAccount>, StoreError> {
        let Some(raw) = index.get(key)? else {
            return Ok(None);
        };
        Ok(self.account(decode_id(&raw)?)?.map(Account::view))
    }

    fn read_coupon(&self, code: &[u8]) -> Result<Option<Coupon>, StoreError> {
        match self.coupons.get(code)? {
            Some(raw) => Ok(Some(decode("coupon", &raw)?)),
            None => Ok(None),
        }
    }
}
