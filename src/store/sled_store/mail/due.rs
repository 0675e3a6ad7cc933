//! The due-date index: which mail is due for whom, when. A key is the whole entry, its due
//! time first, so the entries due by now are a range from the index's start, read without
//! touching members or the entries due later (`due_mails` stops at the first of those).
//!
//! `mail_due` key: seconds since the epoch (`i64` with its sign bit flipped, so that byte
//! order is time order across 1970), nanoseconds (`u32`), the member id (`u64`), the kind (one
//! byte) and the coupon code's bytes (none without a coupon); all big-endian. `mail_due_by`
//! key: the same from the member id on, its value the `mail_due` key: one entry per member,
//! kind and coupon.

use chrono::{DateTime, Duration, Utc};

use super::super::atomic::{Abort, Tx, TxTree};
use super::super::SledStore;
use crate::domain::mail::{DueMail, MailKind};
use crate::domain::{CouponCode, MemberId};
use crate::store::{keys, StoreError};

const TIME: usize = 12;

fn kind_byte(kind: MailKind) -> u8 {
    match kind {
        MailKind::Statement => 0,
        MailKind::RewardReminder => 1,
        MailKind::CouponReminder => 2,
        MailKind::Verification => 3,
    }
}

fn kind_of(byte: u8) -> Option<MailKind> {
    Some(match byte {
        0 => MailKind::Statement,
        1 => MailKind::RewardReminder,
        2 => MailKind::CouponReminder,
        3 => MailKind::Verification,
        _ => return None,
    })
}

/// The time part of a `mail_due` key.
pub(in crate::store::sled_store) fn time_key(at: DateTime<Utc>) -> [u8; TIME] {
    let mut k = [0u8; TIME];
    let secs = (at.timestamp() as u64) ^ (1 << 63);
    k[..8].copy_from_slice(&secs.to_be_bytes());
    k[8..].copy_from_slice(&at.timestamp_subsec_nanos().to_be_bytes());
    k
}

/// The `mail_due_by` key of a member's mail of `kind` (about `coupon`).
pub(super) fn slot_key(member: MemberId, kind: MailKind, coupon: Option<&CouponCode>) -> Vec<u8> {
    let code = coupon.map_or(&[][..], |c| c.as_str().as_bytes());
    let mut k = Vec::with_capacity(9 + code.len());
    k.extend_from_slice(&keys::member(member));
    k.push(kind_byte(kind));
    k.extend_from_slice(code);
    k
}

/// The `mail_due` key of an entry.
pub(super) fn due_key(due: &DueMail) -> Vec<u8> {
    let mut k = time_key(due.at).to_vec();
    k.extend_from_slice(&slot_key(due.member, due.kind, due.coupon.as_ref()));
    k
}

/// Reads an entry back from its `mail_due` key.
pub(super) fn read_due_key(k: &[u8]) -> Result<DueMail, Abort> {
    let bad = || Abort::Corrupt("mail due-index key".into(), None);
    if k.len() < TIME + 9 {
        return Err(bad());
    }
    let secs = keys::read_u64(&k[..8]).ok_or_else(bad)? ^ (1 << 63);
    let nanos = u32::from_be_bytes(k[8..TIME].try_into().map_err(|_| bad())?);
    let at = DateTime::from_timestamp(secs as i64, nanos).ok_or_else(bad)?;
    let member = MemberId(keys::read_u64(&k[TIME..TIME + 8]).ok_or_else(bad)?);
    let kind = kind_of(k[TIME + 8]).ok_or_else(bad)?;
    let code = &k[TIME + 9..];
    let coupon = match code.is_empty() {
        true => None,
        false => Some(CouponCode::from_stored(
            String::from_utf8(code.to_vec()).map_err(|_| bad())?,
        )),
    };
    Ok(DueMail {
        at,
        member,
        kind,
        coupon,
    })
}

/// Inside an operation: puts `due` in the index, replacing the entry of its member, kind and
/// coupon if there is one.
pub(in crate::store::sled_store) fn tx_schedule(
    index: &TxTree<'_>,
    by: &TxTree<'_>,
    due: &DueMail,
) -> Tx<()> {
    let slot = slot_key(due.member, due.kind, due.coupon.as_ref());
    let key = due_key(due);
    if let Some(old) = by.get(&slot)? {
        if *old == *key {
            return Ok(());
        }
        index.remove(&old)?;
    }
    index.insert(&key, &[][..])?;
    by.insert(&slot, key)
}

/// Inside an operation: takes `due` off the index if that very entry (same time) is there;
/// whether it was.
pub(super) fn tx_unschedule(index: &TxTree<'_>, by: &TxTree<'_>, due: &DueMail) -> Tx<bool> {
    let key = due_key(due);
    if index.get(&key)?.is_none() {
        return Ok(false);
    }
    index.remove(&key)?;
    let slot = slot_key(due.member, due.kind, due.coupon.as_ref());
    if by.get(&slot)?.is_some_and(|k| *k == *key) {
        by.remove(&slot)?;
    }
    Ok(true)
}

/// A member's entries, read through `mail_due_by` (for backups).
pub(in crate::store::sled_store) fn entries_of(
    store: &SledStore,
    member: MemberId,
) -> Result<Vec<DueMail>, StoreError> {
    let mut out = Vec::new();
    for kv in store.mail.due_by.scan_prefix(keys::member(member)) {
        let (_, key) = kv?;
        out.push(read_due_key(&key)?);
    }
    out.sort_by_key(|d| (d.at, d.kind));
    Ok(out)
}

impl SledStore {
    /// Puts `due` in the index (for a statement, that is the member's `next_statement_at`).
    pub(in crate::store::sled_store) fn put_due_mail(
        &self,
        due: DueMail,
    ) -> Result<(), StoreError> {
        let trees = [&self.mail.due, &self.mail.due_by];
        let writing = self.commit.writing();
        self.atomic
            .run(trees, |[index, by]| tx_schedule(&index, &by, &due))?;
        writing.wait()
    }

    /// The entries due at or before `now`, earliest first, up to `limit`: a range scan that
    /// ends before the first entry due later.
    pub(in crate::store::sled_store) fn read_due_mails(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DueMail>, StoreError> {
        let end = time_key(now + Duration::nanoseconds(1));
        let mut out = Vec::new();
        for kv in self.mail.due.range(..&end[..]).take(limit) {
            let (k, _) = kv?;
            out.push(read_due_key(&k)?);
        }
        self.commit.settle_read()?;
        Ok(out)
    }
}
