//! The store's layout version, and the migrations that bring an older layout up to it, once,
//! at open.
//!
//! The `meta` tree's `version` key holds the layout version (ASCII decimal). A store without
//! one is either new (no tree holds a key: it gets [`CURRENT`] at once) or was written before
//! versions were recorded: layout 0, migrated here. A store of a newer layout than this binary
//! knows is refused, since this binary would misread it.
//!
//! Layout 0 → 1:
//! - Order claims stored before reversals existed (`{"member":…,"at":…}`) get their points:
//!   those of the claiming member's `order_credit` ledger entry for the order (0, with a
//!   warning, if that ledger has none: then the claim credited nothing).
//! - Events waiting in `inbox` slots (`{"state":"pending","event":…}`) move to intake
//!   records (`intake.rs`): one record, and the removal of its events' slots, per atomic
//!   operation.
//! - Replies waiting in the separate `outbox` tree move into their event's done slot in the
//!   inbox, ahead of any replies queued in the inbox (they are older), and the reply queue is
//!   renumbered in that order: one atomic operation. Then the empty `outbox` tree is dropped.
//!
//! Crash safety: each step only touches records still in the old shape, so running it again is
//! harmless; each write of more than one key goes through the journal (`atomic.rs`), which the
//! next open completes before this runs; and the version is written last, after a flush of
//! everything before it. sled recovers a prefix of its log, so a store that has the new version
//! has every migrated record, and a `kill -9` anywhere before leaves version 0 with part of the
//! work done, which the next open finishes.

use std::collections::HashMap;

use chrono::Utc;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sled::{IVec, Tree};

use super::atomic::Abort;
use super::atomic::Atomic;
use super::intake::RECORD_BYTES;
use super::records::{decode, encode, Done, DoneRaw};
use crate::domain::{EntryKind, LedgerEntry, MemberId, OrderNumber};
use crate::store::{keys, StoreError};

/// The layout this binary writes.
pub(crate) const CURRENT: u32 = 1;

const VERSION: &[u8] = b"version";

/// Brings the store in `db` to [`CURRENT`] (see the module doc). Run at open, after the
/// journal's recovery and before anything else reads the store.
pub(super) fn to_current(db: &sled::Db, atomic: &Atomic) -> Result<(), StoreError> {
    let meta = db.open_tree("meta")?;
    match version(&meta)? {
        Some(CURRENT) => return Ok(()),
        Some(found) if found > CURRENT => {
            return Err(StoreError::NewerLayout {
                found,
                known: CURRENT,
            })
        }
        None if !has_data(db)? => {}
        _ => {
            let orders = claims_get_their_points(db)?;
            let events = pending_slots_to_intake(db, atomic)?;
            let replies = outbox_into_inbox(db, atomic)?;
            db.flush()?;
            tracing::warn!(
                orders,
                events,
                replies,
                "store migrated from layout 0 to layout {CURRENT}"
            );
        }
    }
    meta.insert(VERSION, CURRENT.to_string().as_bytes())?;
    db.flush()?;
    Ok(())
}

/// The layout version recorded in `meta`, if any.
pub(super) fn version(meta: &Tree) -> Result<Option<u32>, StoreError> {
    let Some(raw) = meta.get(VERSION)? else {
        return Ok(None);
    };
    let corrupt = || Abort::Corrupt("the store's layout version".into(), None);
    let text = std::str::from_utf8(&raw).map_err(|_| corrupt())?;
    Ok(Some(text.parse().map_err(|_| corrupt())?))
}

/// Whether any tree but `meta`, `totals` and `webhook_deliveries` holds a key.
pub(super) fn has_data(db: &sled::Db) -> Result<bool, StoreError> {
    for name in db.tree_names() {
        // `meta` describes the store, `totals` is derived from the members (`totals.rs`), and
        // the delivery ids of shop webhooks are no one's data (a new server may have seen some
        // before its backup is imported).
        if matches!(&*name, b"meta" | b"totals" | b"webhook_deliveries") {
            continue;
        }
        if !db.open_tree(&name)?.is_empty() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Order records of claims without `points` get the points of their ledger credit; returns how
/// many. Each is a single-key write.
fn claims_get_their_points(db: &sled::Db) -> Result<usize, StoreError> {
    let (orders, ledger) = (db.open_tree("orders")?, db.open_tree("ledger")?);
    let mut mended = 0;
    for kv in orders.iter() {
        let (okey, raw) = kv?;
        let mut record: Map<String, Value> = decode("order record", &raw)?;
        if record.contains_key("points") || !record.contains_key("at") {
            continue;
        }
        let Some(member) = record.get("member").and_then(Value::as_u64) else {
            continue; // half a claim: reported as corrupt when read, as before
        };
        let points = credit_of(&ledger, MemberId(member), &okey)?.unwrap_or_else(|| {
            let order = String::from_utf8_lossy(&okey);
            tracing::warn!(%order, member, "claim without an order credit in the member's ledger: recorded as 0 points");
            0
        });
        record.insert("points".into(), points.into());
        orders.insert(&okey, encode("order record", &record)?)?;
        mended += 1;
    }
    Ok(mended)
}

/// The points of the member's `order_credit` entry for the order keyed `okey`.
fn credit_of(ledger: &Tree, member: MemberId, okey: &[u8]) -> Result<Option<u64>, StoreError> {
    for kv in ledger.scan_prefix(keys::member(member)) {
        let entry: LedgerEntry = decode("ledger entry", &kv?.1)?;
        let this_order = entry
            .order_number
            .as_ref()
            .is_some_and(|n: &OrderNumber| keys::order(&n.into()) == okey);
        if entry.kind == EntryKind::OrderCredit && this_order {
            return Ok(Some(entry.points.unsigned_abs()));
        }
    }
    Ok(None)
}

/// A layout-0 inbox slot of an event waiting to be processed.
#[derive(Deserialize)]
struct PendingSlot {
    state: String,
    event: Option<Box<RawValue>>,
}

/// Moves the events of pending inbox slots into intake records; returns how many. A slot that
/// does not read as one is left as it was (it was unreadable before too).
fn pending_slots_to_intake(db: &sled::Db, atomic: &Atomic) -> Result<usize, StoreError> {
    let (inbox, intake) = (db.open_tree("inbox")?, db.open_tree("intake")?);
    let mut seq = match intake.last()? {
        Some((k, _)) => keys::read_u64(&k).unwrap_or(0) + 1,
        None => 1,
    };
    let mut moved = 0;
    let mut batch: (Vec<IVec>, Vec<u8>) = (Vec::new(), b"[".to_vec());
    let mut write = |batch: &mut (Vec<IVec>, Vec<u8>)| -> Result<(), StoreError> {
        let (slots, mut events) = std::mem::replace(batch, (Vec::new(), b"[".to_vec()));
        if slots.is_empty() {
            return Ok(());
        }
        events.push(b']');
        atomic.run([&intake, &inbox], |[intake, inbox]| {
            intake.insert(seq.to_be_bytes(), events)?;
            for k in &slots {
                inbox.remove(k)?;
            }
            Ok(())
        })?;
        seq += 1;
        Ok(())
    };
    for kv in inbox.iter() {
        let (k, v) = kv?;
        let Ok(PendingSlot {
            state,
            event: Some(event),
        }) = serde_json::from_slice(&v)
        else {
            continue;
        };
        if state != "pending" {
            continue;
        }
        if !batch.0.is_empty() && batch.1.len() + event.get().len() > RECORD_BYTES {
            write(&mut batch)?;
        }
        if !batch.0.is_empty() {
            batch.1.push(b',');
        }
        batch.1.extend_from_slice(event.get().as_bytes());
        batch.0.push(k);
        moved += 1;
    }
    write(&mut batch)?;
    Ok(moved)
}

/// An inbox slot whose replies are being requeued: the outbox's replies for its event go
/// before its own undelivered ones.
struct Requeued {
    slot: DoneRaw,
    outboxed: Vec<Box<RawValue>>,
    own: Vec<Box<RawValue>>,
}

impl Requeued {
    fn of(inbox: &Tree, key: &[u8]) -> Result<Requeued, StoreError> {
        let read = inbox
            .get(key)?
            .map(|raw| decode::<DoneRaw>("inbox entry", &raw));
        let mut slot = match read {
            Some(Ok(slot)) => slot,
            Some(Err(e)) => {
                let key = String::from_utf8_lossy(key);
                tracing::error!(%key, error = %StoreError::from(e), "unreadable inbox slot replaced by the replies queued for its event");
                Done::new(Utc::now(), Vec::new(), 0)
            }
            None => Done::new(Utc::now(), Vec::new(), 0),
        };
        let own = slot.replies.split_off(slot.delivered as usize);
        slot.replies.clear();
        slot.delivered = 0;
        Ok(Requeued {
            slot,
            outboxed: Vec::new(),
            own,
        })
    }
}

/// The event a layout-0 outbox reply answers.
#[derive(Deserialize)]
struct ReplyTo {
    in_reply_to: String,
}

/// Moves the `outbox` tree's replies into their events' inbox slots and drops the tree;
/// returns how many replies moved.
fn outbox_into_inbox(db: &sled::Db, atomic: &Atomic) -> Result<usize, StoreError> {
    if !db.tree_names().iter().any(|n| &**n == b"outbox") {
        return Ok(0);
    }
    let (outbox, inbox) = (db.open_tree("outbox")?, db.open_tree("inbox")?);
    // Slot keys in the order their replies go out, and what each will hold.
    let mut order: Vec<IVec> = Vec::new();
    let mut slots: HashMap<IVec, Requeued> = HashMap::new();
    let mut taken = Vec::new();
    for kv in outbox.iter() {
        let (k, v) = kv?;
        taken.push(k.clone());
        let (Ok(to), Ok(reply)) = (
            serde_json::from_slice::<ReplyTo>(&v),
            serde_json::from_slice::<Box<RawValue>>(&v),
        ) else {
            tracing::error!(outbox.id = ?keys::read_u64(&k), "unreadable queued reply dropped");
            continue;
        };
        let key = IVec::from(to.in_reply_to.as_bytes());
        if !slots.contains_key(&key) {
            slots.insert(key.clone(), Requeued::of(&inbox, &key)?);
            order.push(key.clone());
        }
        if let Some(r) = slots.get_mut(&key) {
            r.outboxed.push(reply);
        }
    }
    // Then the events whose replies the inbox held already, in their queue order.
    let mut queued = Vec::new();
    for kv in inbox.iter() {
        let (k, v) = kv?;
        if slots.contains_key(&k) {
            continue;
        }
        if let Ok(slot) = decode::<DoneRaw>("inbox entry", &v) {
            if slot.replies.len() > slot.delivered as usize {
                queued.push((slot.seq, k));
            }
        }
    }
    queued.sort();
    for (_, k) in queued {
        slots.insert(k.clone(), Requeued::of(&inbox, &k)?);
        order.push(k);
    }
    let mut writes = Vec::with_capacity(order.len());
    let mut moved = 0;
    for key in order {
        let Some(Requeued {
            mut slot,
            outboxed,
            own,
        }) = slots.remove(&key)
        else {
            continue;
        };
        moved += outboxed.len();
        slot.replies = outboxed.into_iter().chain(own).collect();
        slot.seq = db.generate_id()? + 1;
        writes.push((key, encode("inbox entry", &slot)?));
    }
    atomic.run([&inbox, &outbox], |[inbox, outbox]| {
        for (key, slot) in writes {
            inbox.insert(key, slot)?;
        }
        for k in &taken {
            outbox.remove(k)?;
        }
        Ok(())
    })?;
    db.drop_tree("outbox")?;
    Ok(moved)
}

#[cfg(test)]
mod tests;
