//! The sled store read as backup records ([`BackupRecord`]) while it serves.
//!
//! Each member's records are read under the writer lock (`atomic.rs`), which every operation
//! that changes a balance, a ledger, an order claim or a coupon holds: so the member's balance
//! is their ledger's sum, and their claimed orders and coupons are the ones that ledger names,
//! all as at one instant. The lock is held for one member's reads at a time, never while the
//! caller writes them out; a member's records are all that is held in memory, apart from the
//! adjustments of the ledgers written ([`LedgerAdjustments`]) and the keys of events whose
//! replies wait (see [`SledStore::processed_events`]).
//!
//! An adjustment's request key is written with its entry, in one operation, so the export
//! writes a key exactly when it wrote the adjustment in its member's ledger: a key whose
//! adjustment came after the member was read is left out with it, and a retry after an
//! import applies it, once.
//!
//! A member's mail (their mail state and due-index entries) is read with their other records,
//! under the same lock, which every mail operation holds too. After the processed events come
//! the unsubscribe links' key and the outbox mail not confirmed sent; joins waiting for their
//! code are left out (they live for minutes).
//!
//! Records written while the export runs may or may not be in it, each whole: a member who
//! joins after the members were read is not, an event processed meanwhile is. Pending events
//! are read before processed ones, so that an event processed in between is in the export
//! twice (harmless: it is done) rather than not at all.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;

use serde_json::value::RawValue;

use super::atomic::Abort;
use super::records::{decode, Done, DoneRaw, OrderRecord};
use super::SledStore;
use crate::domain::{EntryKind, LedgerEntry, MemberId, OrderId, OrderNumber};
use crate::store::backup::{
    AdjustmentKeyRecord, BackupRecord, ConversationRecord, CouponRecord, ImportedBalanceRecord,
    LedgerAdjustments, MailLinkKeyRecord, MemberRecord, OrderClaim, OrderRecord as OrderLine,
    ProcessedEventRecord,
};
use crate::store::{keys, Adjusted, InboundEvent, StoreError};

/// The caller's visitor: [`ControlFlow::Break`] stops the backup.
type Visit<'v> = dyn FnMut(BackupRecord) -> ControlFlow<()> + 'v;

/// Why a read of the records ended early.
enum Stop {
    /// The visitor asked to stop.
    Visitor,
    Store(StoreError),
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Stop::Store(e)
    }
}

impl From<sled::Error> for Stop {
    fn from(e: sled::Error) -> Self {
        Stop::Store(e.into())
    }
}

impl From<Abort> for Stop {
    fn from(e: Abort) -> Self {
        Stop::Store(e.into())
    }
}

fn emit(visit: &mut Visit<'_>, record: BackupRecord) -> Result<(), Stop> {
    match visit(record) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(()) => Err(Stop::Visitor),
    }
}

impl SledStore {
    pub(super) fn backup_records(&self, visit: &mut Visit<'_>) -> Result<(), StoreError> {
        match self.read_all(visit) {
            // Nothing read may be lost to a crash once it is in a backup.
            Ok(()) => self.commit.settle_read(),
            Err(Stop::Visitor) => Ok(()),
            Err(Stop::Store(e)) => Err(e),
        }
    }

    fn read_all(&self, visit: &mut Visit<'_>) -> Result<(), Stop> {
        let mut adjustments = LedgerAdjustments::default();
        for kv in self.members.iter() {
            let (k, _) = kv?;
            let id = MemberId(keys::read_u64(&k).ok_or_else(|| corrupt("member key"))?);
            for record in self.atomic.read(|| self.member_records(id))? {
                if let BackupRecord::Member(m) = &record {
                    adjustments.add(m);
                }
                emit(visit, record)?;
            }
        }
        self.written_adjustment_keys(adjustments, visit)?;
        self.unclaimed_orders(visit)?;
        // The balance import's tree; empty where no balance was ever imported.
        for kv in self.db.open_tree("imported_balances")?.iter() {
            let fields = decode("imported balance", &kv?.1)?;
            emit(
                visit,
                BackupRecord::ImportedBalance(ImportedBalanceRecord { fields }),
            )?;
        }
        for kv in self.conversations.iter() {
            let (k, v) = kv?;
            let identity =
                String::from_utf8(k.to_vec()).map_err(|_| corrupt("conversation key"))?;
            let state = decode::<Box<RawValue>>("conversation", &v)?;
            emit(
                visit,
                BackupRecord::Conversation(ConversationRecord { identity, state }),
            )?;
        }
        let mut stopped = false;
        self.intake.scan(&mut |_, raw| {
            if !stopped {
                let event: InboundEvent = decode("intake event", raw.get().as_bytes())?;
                stopped = visit(BackupRecord::PendingEvent(event)).is_break();
            }
            Ok(())
        })?;
        if stopped {
            return Err(Stop::Visitor);
        }
        self.processed_events(visit)?;
        self.mail_records(visit)
    }

    /// The link key, if one was made, and the outbox mail without a final answer.
    fn mail_records(&self, visit: &mut Visit<'_>) -> Result<(), Stop> {
        if let Some(raw) = self.mail.meta.get(super::mail::LINK_KEY)? {
            let key = hex::encode(super::mail::read_link_key(&raw)?);
            emit(visit, BackupRecord::MailLinkKey(MailLinkKeyRecord { key }))?;
        }
        for mail in self.read_unsent_mails()? {
            emit(visit, BackupRecord::OutboxMail(mail))?;
        }
        Ok(())
    }

    /// The member's record and, after it, the orders they claimed and their coupons.
    fn member_records(&self, id: MemberId) -> Result<Vec<BackupRecord>, StoreError> {
        let Some(account) = self.account(id)? else {
            return Ok(Vec::new());
        };
        let ledger = self
            .ledger
            .scan_prefix(keys::member(id))
            .map(|kv| Ok(decode::<LedgerEntry>("ledger entry", &kv?.1)?))
            .collect::<Result<Vec<_>, StoreError>>()?;
        // An order credited more than once (raised after a claim) is listed once.
        let claimed: std::collections::BTreeSet<OrderId> = ledger
            .iter()
            .filter(|e| e.kind == EntryKind::OrderCredit)
            .filter_map(LedgerEntry::order_key)
            .collect();
        let mut out = vec![BackupRecord::Member(MemberRecord {
            member: account.member,
            balance: account.balance,
            ledger,
        })];
        for order in claimed {
            if let Some(line) = self.order_line(&keys::order(&order))? {
                if line.claim.is_some_and(|c| c.member == id) {
                    out.push(BackupRecord::Order(line));
                }
            }
        }
        let mut requests: HashMap<Vec<u8>, Vec<String>> = HashMap::new();
        for kv in self.redeem_requests.scan_prefix(keys::member(id)) {
            let (k, code) = kv?;
            let request = String::from_utf8_lossy(&k[8..]).into_owned();
            requests.entry(code.to_vec()).or_default().push(request);
        }
        for kv in self.member_coupons.scan_prefix(keys::member(id)) {
            let (_, code) = kv?;
            let coupon = self
                .read_coupon(&code)?
                .ok_or_else(|| corrupt("coupon index points nowhere"))?;
            let requests = requests.remove(code.as_ref()).unwrap_or_default();
            out.push(BackupRecord::Coupon(CouponRecord { coupon, requests }));
        }
        if let Some(mail) = self.member_mail(id)? {
            out.push(BackupRecord::MemberMail(mail));
        }
        Ok(out)
    }

    /// The stored order under `okey` as a backup line.
    fn order_line(&self, okey: &[u8]) -> Result<Option<OrderLine>, StoreError> {
        let Some(raw) = self.orders.get(okey)? else {
            return Ok(None);
        };
        let record: OrderRecord = decode("order record", &raw)?;
        let key = String::from_utf8_lossy(okey);
        let (number, id) = match record.number.clone() {
            Some(number) => {
                let id = match record.id.clone() {
                    Some(id) => id,
                    None => OrderId::parse(&key).map_err(|_| corrupt("order key"))?,
                };
                (number, Some(id))
            }
            None => (
                OrderNumber::parse(&key).map_err(|_| corrupt("order key"))?,
                None,
            ),
        };
        let claim = record.claim()?.map(|c| OrderClaim {
            member: c.member,
            at: c.at,
            points: c.points,
        });
        Ok(Some(OrderLine {
            number,
            id,
            claim,
            total: record.total,
            earned: record.earned,
            reversal: record.reversal,
        }))
    }

    /// The request keys of the adjustments in `written`, the ledgers as they were written.
    fn written_adjustment_keys(
        &self,
        mut written: LedgerAdjustments,
        visit: &mut Visit<'_>,
    ) -> Result<(), Stop> {
        for kv in self.adjustment_keys.iter() {
            let (k, v) = kv?;
            let adjusted: Adjusted = decode("adjustment record", &v)?;
            if !written.take(&adjusted) {
                continue;
            }
            let key = String::from_utf8(k.to_vec()).map_err(|_| corrupt("adjustment key"))?;
            let record = AdjustmentKeyRecord { key, adjusted };
            emit(visit, BackupRecord::AdjustmentKey(record))?;
        }
        Ok(())
    }

    /// Orders with a reversal and no claim (a refund before anyone claimed them); claimed
    /// ones came with their members.
    fn unclaimed_orders(&self, visit: &mut Visit<'_>) -> Result<(), Stop> {
        for kv in self.orders.iter() {
            let (k, _) = kv?;
            if let Some(line) = self.order_line(&k)?.filter(|l| l.claim.is_none()) {
                emit(visit, BackupRecord::Order(line))?;
            }
        }
        Ok(())
    }

    /// Processed events: first those whose replies wait, in the order the replies go out
    /// (only their keys are held meanwhile), then the others in key order.
    fn processed_events(&self, visit: &mut Visit<'_>) -> Result<(), Stop> {
        let mut waiting = Vec::new();
        for kv in self.inbox.iter() {
            let (k, v) = kv?;
            if let Ok(slot) = decode::<DoneRaw>("inbox entry", &v) {
                if slot.replies.len() > slot.delivered as usize {
                    waiting.push((slot.seq, k));
                }
            }
        }
        waiting.sort();
        let mut seen = HashSet::with_capacity(waiting.len());
        for (_, k) in waiting {
            if let Some(v) = self.inbox.get(&k)? {
                if let Some(record) = processed(&k, &v) {
                    emit(visit, record)?;
                }
            }
            seen.insert(k);
        }
        for kv in self.inbox.iter() {
            let (k, v) = kv?;
            if !seen.contains(&k) {
                if let Some(record) = processed(&k, &v) {
                    emit(visit, record)?;
                }
            }
        }
        Ok(())
    }
}

/// A slot as a record; `None` (logged) for one that cannot be read, which the queue skips too.
fn processed(k: &[u8], v: &[u8]) -> Option<BackupRecord> {
    let key = String::from_utf8_lossy(k);
    match decode::<Done>("inbox entry", v) {
        Ok(mut slot) => {
            let replies = slot.replies.split_off(slot.delivered as usize);
            Some(BackupRecord::ProcessedEvent(ProcessedEventRecord {
                key: key.into_owned(),
                at: slot.at,
                replies,
            }))
        }
        Err(e) => {
            tracing::error!(%key, error = %StoreError::from(e), "unreadable inbox slot left out of the export");
            None
        }
    }
}

fn corrupt(what: &str) -> StoreError {
    Abort::Corrupt(what.into(), None).into()
}
