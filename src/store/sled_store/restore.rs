//! A backup written into an empty sled store, record by record ([`BackupRecord`]), with the
//! indexes each record needs: a member's identity and email, a coupon's place in its member's
//! coupons, the pending-coupon set, a redemption's request keys, a due mail's reverse entry
//! (the mail records: `mail/restore.rs`). An adjustment key comes after
//! its member (whether their ledger holds its adjustment is the importer's check,
//! [`crate::store::backup::LedgerAdjustments`]).
//!
//! Records are written as they are, by plain inserts: no operation, no journal, no flush
//! each. What makes the whole all-or-nothing is a mark in `meta`, made durable before the
//! first record and removed after the last is durable. While it is there, the store opens for
//! nothing but another restore ([`SledStore::open_for_restore`]), which removes everything a
//! failed or killed one left and starts over; a refused backup is removed at once
//! ([`SledStore::restore_abort`]).

use super::records::{encode, Account, Claim, Done, OrderRecord};
use super::SledStore;
use crate::domain::{CouponStatus, Email, EntryKind, LedgerEntry, MemberId, RequestKey};
use crate::store::backup::{
    AdjustmentKeyRecord, BackupRecord, CouponRecord, MemberRecord, OrderRecord as OrderLine,
};
use crate::store::{keys, StoreError};

const RESTORING: &[u8] = b"restoring";

/// Whether a restore into the store in `db` began and did not finish.
pub(super) fn unfinished(db: &sled::Db) -> Result<bool, StoreError> {
    Ok(db.open_tree("meta")?.contains_key(RESTORING)?)
}

fn conflict(what: String) -> StoreError {
    StoreError::Conflict(what)
}

impl SledStore {
    pub(super) fn restore_begin(&self) -> Result<(), StoreError> {
        if unfinished(&self.db)? {
            tracing::warn!("removing what an unfinished import left in the store");
            self.wipe()?;
        } else if super::migrate::has_data(&self.db)? {
            return Err(StoreError::NotEmpty);
        }
        self.db.open_tree("meta")?.insert(RESTORING, &[])?;
        self.commit.wait()
    }

    pub(super) fn restore_record(&self, record: BackupRecord) -> Result<(), StoreError> {
        match record {
            BackupRecord::Member(m) => self.restore_member(m),
            BackupRecord::Order(o) => self.restore_order(o),
            BackupRecord::Coupon(c) => self.restore_coupon(c),
            BackupRecord::MemberMail(m) => self.restore_member_mail(m),
            BackupRecord::MailLinkKey(k) => self.restore_link_key(k),
            BackupRecord::OutboxMail(mail) => self.restore_outbox_mail(mail),
            BackupRecord::AdjustmentKey(a) => self.restore_adjustment_key(a),
            BackupRecord::ImportedBalance(b) => {
                let email = b.fields.get("email").and_then(|e| e.as_str());
                let email = email
                    .and_then(|e| Email::parse(e).ok())
                    .ok_or_else(|| conflict("an imported balance without a valid email".into()))?;
                let tree = self.db.open_tree("imported_balances")?;
                let value = encode("imported balance", &b.fields)?;
                self.insert_new(&tree, keys::email(&email), value, || {
                    format!("two imported balances of {email}")
                })
            }
            BackupRecord::Conversation(c) => {
                let state = c.state.get().as_bytes().to_vec();
                self.insert_new(&self.conversations, c.identity.as_bytes(), state, || {
                    format!("two conversations of {}", c.identity)
                })
            }
            BackupRecord::PendingEvent(event) => {
                let encoded = encode("inbox entry", &event)?;
                // Written by the flush of `restore_finish`, in the records intake writes.
                match self.intake.add(&self.inbox, &event.key, &encoded)? {
                    true => Ok(()),
                    false => Err(conflict(format!("the event {} twice", event.key))),
                }
            }
            BackupRecord::ProcessedEvent(p) => {
                // The order of the file is the queue's order.
                let seq = match p.replies.is_empty() {
                    true => 0,
                    false => self.db.generate_id()? + 1,
                };
                let slot = encode("inbox entry", &Done::new(p.at, p.replies, seq))?;
                // An event pending when the export read the pending ones and processed before
                // it read the rest is in both: the slot makes it done.
                self.inbox.insert(p.key.as_bytes(), slot)?;
                Ok(())
            }
        }
    }

    fn restore_member(&self, m: MemberRecord) -> Result<(), StoreError> {
        let id = m.member.id;
        let account = Account {
            next_seq: m.ledger.len() as u64,
            member: m.member,
            balance: m.balance,
        };
        let taken = |what: &str| format!("{what} of member {id} is another member's");
        let value = encode("member", &account)?;
        self.insert_new(&self.members, keys::member(id), value, || {
            format!("member {id} twice")
        })?;
        for (seq, entry) in m.ledger.iter().enumerate() {
            let key = keys::member_seq(id, seq as u64);
            self.ledger.insert(key, encode("ledger entry", entry)?)?;
        }
        let identity = keys::identity(&account.member.identity);
        self.insert_new(
            &self.identities,
            identity,
            keys::member(id).to_vec(),
            || taken("the chat identity"),
        )?;
        let email = keys::email(&account.member.email);
        self.insert_new(&self.emails, email, keys::member(id).to_vec(), || {
            taken("the email")
        })
    }

    fn restore_order(&self, o: OrderLine) -> Result<(), StoreError> {
        let number = &o.number;
        if let Some(c) = o.claim {
            if !self.members.contains_key(keys::member(c.member))? {
                return Err(conflict(format!(
                    "order {number} of unknown member {}",
                    c.member
                )));
            }
        } else if o.reversal.is_none() {
            return Err(conflict(format!(
                "order {number} neither claimed nor reversed"
            )));
        }
        let claim = o.claim.map(|c| Claim {
            member: c.member,
            at: c.at,
            points: c.points,
        });
        let key = o.key();
        let mut record = OrderRecord::restored(claim, o.reversal.clone());
        if let Some(id) = &o.id {
            record.name_order(id, number);
        }
        record.total = o.total;
        record.earned = o.earned;
        let record = encode("order record", &record)?;
        self.insert_new(&self.orders, keys::order(&key), record, || {
            format!("order {number} twice")
        })
    }

    fn restore_coupon(&self, c: CouponRecord) -> Result<(), StoreError> {
        let CouponRecord { coupon, requests } = c;
        let (code, member) = (coupon.code.as_str().as_bytes(), coupon.member);
        let Some(seq) = self.redemption_of(member, coupon.code.as_str())? else {
            let code = &coupon.code;
            return Err(conflict(format!(
                "coupon {code} is not redeemed in member {member}'s ledger"
            )));
        };
        self.insert_new(&self.coupons, code, encode("coupon", &coupon)?, || {
            format!("coupon {} twice", coupon.code)
        })?;
        self.member_coupons
            .insert(keys::member_seq(member, seq), code)?;
        if coupon.status == CouponStatus::Pending {
            self.pending_coupons.insert(code, &[])?;
        }
        for request in requests {
            self.redeem_requests
                .insert(keys::member_request(member, &request), code)?;
        }
        Ok(())
    }

    fn restore_adjustment_key(&self, a: AdjustmentKeyRecord) -> Result<(), StoreError> {
        let AdjustmentKeyRecord { key, adjusted } = a;
        let parsed = RequestKey::parse(&key)
            .map_err(|_| conflict(format!("the adjustment key `{key}` is no request key")))?;
        let member = adjusted.member;
        if !self.members.contains_key(keys::member(member))? {
            return Err(conflict(format!(
                "adjustment key {key} of unknown member {member}"
            )));
        }
        let value = encode("adjustment record", &adjusted)?;
        let kkey = keys::request_key(&parsed);
        self.insert_new(&self.adjustment_keys, kkey, value, || {
            format!("adjustment key {key} twice")
        })
    }

    /// The ledger sequence of the member's redemption that made coupon `code`.
    fn redemption_of(&self, member: MemberId, code: &str) -> Result<Option<u64>, StoreError> {
        for kv in self.ledger.scan_prefix(keys::member(member)) {
            let (k, v) = kv?;
            let entry: LedgerEntry = super::records::decode("ledger entry", &v)?;
            if entry.kind == EntryKind::Redemption && entry.coupon_code.as_deref() == Some(code) {
                return Ok(keys::read_u64(&k[8..]));
            }
        }
        Ok(None)
    }

    /// Inserts `key` unless it is there already; `twice` names the conflict then.
    pub(super) fn insert_new(
        &self,
        tree: &sled::Tree,
        key: impl AsRef<[u8]>,
        value: Vec<u8>,
        twice: impl FnOnce() -> String,
    ) -> Result<(), StoreError> {
        let absent: Option<&[u8]> = None;
        match tree.compare_and_swap(key, absent, Some(value))? {
            Ok(()) => Ok(()),
            Err(_) => Err(conflict(twice())),
        }
    }

    pub(super) fn restore_finish(&self) -> Result<(), StoreError> {
        // Joins take ids from sled's counter: it must pass every restored member's id first.
        // Member keys are big-endian ids, so the last is the highest. Mail outbox ids too.
        let highest = match self.members.last()? {
            Some((k, _)) => keys::read_u64(&k).unwrap_or(0),
            None => 0,
        };
        let highest = highest.max(self.restore_mail_finish()?);
        while self.db.generate_id()? < highest {}
        // The members and points the metrics read (`totals.rs`): the restore wrote members
        // outside the atomic operations that keep them.
        self.recount_totals()?;
        // Everything restored, then the mark's removal: a crash between leaves the mark.
        self.commit.wait()?;
        self.db.open_tree("meta")?.remove(RESTORING)?;
        self.commit.wait()?;
        tracing::info!("import finished");
        Ok(())
    }

    pub(super) fn restore_abort(&self) -> Result<(), StoreError> {
        self.wipe()?;
        self.db.open_tree("meta")?.remove(RESTORING)?;
        self.commit.wait()
    }

    /// Removes every record: all trees but `meta` emptied, and pending events forgotten.
    fn wipe(&self) -> Result<(), StoreError> {
        // Events added to intake are written first, so that none is written after the wipe.
        self.commit.wait()?;
        for name in self.db.tree_names() {
            if &*name == b"meta" || &*name == b"__sled__default" {
                continue;
            }
            self.db.open_tree(&name)?.clear()?;
        }
        self.intake.forget_all();
        self.commit.wait()
    }
}
