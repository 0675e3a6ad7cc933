//! [`LoyaltyStore`] on sled: members, the ledger, order claims, coupons and conversations.
//! Each mutation is one atomic operation (see `atomic.rs`) followed by a group-committed flush.

use chrono::{DateTime, Utc};

use super::atomic::{abort, tx, Abort};
use super::enrol::{tx_enrol, Enrol};
use super::records::{
    decode, encode, tx_account, tx_append, tx_claim_under_number, Account, OrderRecord,
};
use super::SledStore;
use crate::domain::mail::{DueMail, MailPolicy, MailResult, MailState, OutboxMail};
use crate::domain::verification::{PendingJoin, VerificationCode};
use crate::domain::{
    Adjustment, ChatIdentity, Coupon, CouponCode, CouponStatus, Email, ImportedBalance,
    LedgerEntry, MemberId, OrderId, OrderState, Points, RequestKey, Reversal, ReversalReason,
    Reward, VerifiedOrder,
};
use crate::store::backup::BackupRecord;
use crate::store::{
    keys, AdjustOutcome, BeginVerification, ClaimOutcome, ConversationState, ImportOutcome,
    ImportRow, JoinOutcome, LoyaltyStore, MailStart, MemberAccount, NewMember, OrderStanding,
    RedeemOutcome, Reissue, ReverseOutcome, SettleOutcome, StoreError, Totals, VerifyOutcome,
};

impl LoyaltyStore for SledStore {
    fn member(&self, id: MemberId) -> Result<Option<MemberAccount>, StoreError> {
        let out = self.account(id)?.map(Account::view);
        self.commit.settle_read()?;
        Ok(out)
    }

    fn member_by_identity(&self, who: &ChatIdentity) -> Result<Option<MemberAccount>, StoreError> {
        let out = self.account_via(&self.identities, &keys::identity(who))?;
        self.commit.settle_read()?;
        Ok(out)
    }

    fn member_by_email(&self, email: &Email) -> Result<Option<MemberAccount>, StoreError> {
        let out = self.account_via(&self.emails, &keys::email(email))?;
        self.commit.settle_read()?;
        Ok(out)
    }

    fn ledger(&self, id: MemberId) -> Result<Vec<LedgerEntry>, StoreError> {
        // Under the writer lock: a scan must not see half of an operation.
        let out = self.atomic.read(|| {
            self.ledger
                .scan_prefix(keys::member(id))
                .map(|kv| Ok(decode("ledger entry", &kv?.1)?))
                .collect::<Result<Vec<_>, StoreError>>()
        })?;
        self.commit.settle_read()?;
        Ok(out)
    }

    fn members(&self) -> Result<Vec<MemberAccount>, StoreError> {
        self.members
            .iter()
            .map(|kv| Ok(decode::<Account>("member record", &kv?.1)?.view()))
            .collect()
    }

    fn join(&self, new: NewMember, now: DateTime<Utc>) -> Result<JoinOutcome, StoreError> {
        // Ids come from sled's persistent counter, outside the closure so a rerun cannot burn
        // more than one; an unused id (the identity was a member already) is simply skipped.
        // The counter starts at 0; +1 keeps 0 free so it never looks like a real member.
        let id = MemberId(self.db.generate_id()? + 1);
        let every = self.mail.policy().statement_every;
        let writing = self.commit.writing();
        let outcome = self.atomic.run(self.enrol_trees(), |trees| {
            tx_enrol(&Enrol::from(trees), id, &new, every, now)
        })?;
        // Even a refusal waits: the state it reports may come from a concurrent join that has
        // not been flushed yet, and the reply must not announce what a crash could undo.
        writing.wait()?;
        if let JoinOutcome::Joined(a) = &outcome {
            tracing::info!(member.id = %a.member.id, email = %new.email.masked(), "member joined");
        }
        Ok(outcome)
    }

    fn claim_order(
        &self,
        member: MemberId,
        order: &VerifiedOrder,
        points: Points,
        now: DateTime<Utc>,
    ) -> Result<ClaimOutcome, StoreError> {
        let okey = keys::order(&order.id);
        let trees = [&self.members, &self.orders, &self.ledger];
        let writing = self.commit.writing();
        let outcome = self.atomic.run(trees, |[members, orders, ledger]| {
            let acct = tx_account(&members, member)?;
            if let Some(raw) = orders.get(&okey)? {
                let record: OrderRecord = tx(decode("order record", &raw))?;
                if let Some(c) = tx(record.claim())? {
                    return Ok(ClaimOutcome::AlreadyClaimed {
                        by: c.member,
                        at: c.at,
                    });
                }
                if let Some(r) = record.reversal {
                    return Ok(ClaimOutcome::Reversed {
                        reason: r.reason,
                        at: r.at,
                    });
                }
                return abort(Abort::Corrupt("empty order record".into(), None));
            }
            if let Some(c) = tx_claim_under_number(&orders, &order.id, &order.number)? {
                return Ok(ClaimOutcome::AlreadyClaimed {
                    by: c.member,
                    at: c.at,
                });
            }
            let entry =
                LedgerEntry::order_credit(order.number.clone(), points, now).of_order(&order.id);
            let acct = tx_append(&members, &ledger, acct, &entry)?;
            let record = OrderRecord::claimed(member, now, points).with_order(
                &order.id,
                &order.number,
                order.total,
            );
            orders.insert(okey.as_slice(), tx(encode("order record", &record))?)?;
            Ok(ClaimOutcome::Credited {
                points,
                balance: acct.balance,
            })
        })?;
        writing.wait()?;
        Ok(outcome)
    }

    fn order_claim(
        &self,
        order: &OrderId,
    ) -> Result<Option<(MemberId, DateTime<Utc>)>, StoreError> {
        let claim = self.order_record(order)?.map(|r| r.claim()).transpose()?;
        self.commit.settle_read()?;
        Ok(claim.flatten().map(|c| (c.member, c.at)))
    }

    fn order_standing(&self, order: &OrderId) -> Result<Option<OrderStanding>, StoreError> {
        let Some(record) = self.order_record(order)? else {
            return Ok(None);
        };
        let claim = record.claim()?;
        self.commit.settle_read()?;
        Ok(Some(OrderStanding {
            number: record.number.clone(),
            claim: claim.map(|c| (c.member, c.at)),
            total: record.total,
            earned: record.earned(),
            reversal: record.reversal,
        }))
    }

    fn settle_order(
        &self,
        state: &OrderState,
        credit_to: Option<MemberId>,
        now: DateTime<Utc>,
    ) -> Result<SettleOutcome, StoreError> {
        self.settle(state, credit_to, now)
    }

    fn delivery_seen(&self, source: &str, delivery: &str) -> Result<bool, StoreError> {
        self.seen_delivery(source, delivery)
    }

    fn record_delivery(
        &self,
        source: &str,
        delivery: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.write_delivery(source, delivery, now)
    }

    fn reverse_order(
        &self,
        order: &OrderId,
        reason: ReversalReason,
        now: DateTime<Utc>,
    ) -> Result<ReverseOutcome, StoreError> {
        self.reverse(order, reason, now)
    }

    fn order_reversal(&self, order: &OrderId) -> Result<Option<Reversal>, StoreError> {
        Ok(self.order_record(order)?.and_then(|r| r.reversal))
    }

    fn redeem_reward(
        &self,
        member: MemberId,
        reward: &Reward,
        code: CouponCode,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
        request: Option<&str>,
    ) -> Result<RedeemOutcome, StoreError> {
        let ckey = code.as_str().as_bytes();
        let rkey = request.map(|r| keys::member_request(member, r));
        let trees = [
            &self.members,
            &self.ledger,
            &self.coupons,
            &self.member_coupons,
            &self.pending_coupons,
            &self.redeem_requests,
        ];
        let writing = self.commit.writing();
        let outcome = self.atomic.run(
            trees,
            |[members, ledger, coupons, by_member, pending, requests]| {
                if let Some(rkey) = &rkey {
                    if let Some(first) = requests.get(rkey.as_slice())? {
                        let Some(raw) = coupons.get(&first)? else {
                            return abort(Abort::Corrupt(
                                "redeem request without its coupon".into(),
                                None,
                            ));
                        };
                        let coupon: Coupon = tx(decode("coupon", &raw))?;
                        let acct = tx_account(&members, member)?;
                        return Ok(RedeemOutcome::Repeated {
                            coupon,
                            balance: acct.balance,
                        });
                    }
                }
                if coupons.get(ckey)?.is_some() {
                    // 80 random bits make this a caller bug (a reused code), not bad luck.
                    return abort(Abort::Corrupt(
                        format!("coupon code {code} already exists"),
                        None,
                    ));
                }
                let acct = tx_account(&members, member)?;
                if acct.balance < reward.points {
                    return Ok(RedeemOutcome::InsufficientPoints {
                        balance: acct.balance,
                        needed: reward.points,
                    });
                }
                let seq = acct.next_seq;
                let entry = LedgerEntry::redemption(&reward.id, code.as_str(), reward.points, now);
                let acct = tx_append(&members, &ledger, acct, &entry)?;
                let coupon = Coupon {
                    code: code.clone(),
                    member,
                    reward_id: reward.id.clone(),
                    product_ids: reward.product_ids.clone(),
                    points: reward.points,
                    created_at: now,
                    expires_at,
                    status: CouponStatus::Pending,
                };
                coupons.insert(ckey, tx(encode("coupon", &coupon))?)?;
                by_member.insert(keys::member_seq(member, seq), ckey)?;
                pending.insert(ckey, &[])?;
                if let Some(rkey) = &rkey {
                    requests.insert(rkey.as_slice(), ckey)?;
                }
                Ok(RedeemOutcome::Reserved {
                    coupon,
                    balance: acct.balance,
                })
            },
        )?;
        writing.wait()?;
        Ok(outcome)
    }

    /// Pending → Issued. Already issued: returned as is. Cancelled: returned as is (status
    /// `Cancelled`), because its points were given back and issuing it now would make it free.
    fn rebind_request(
        &self,
        member: MemberId,
        request: &str,
        code: &CouponCode,
    ) -> Result<(), StoreError> {
        let rkey = keys::member_request(member, request);
        let trees = [&self.coupons, &self.redeem_requests];
        let writing = self.commit.writing();
        self.atomic.run(trees, |[coupons, requests]| {
            let Some(raw) = coupons.get(code.as_str().as_bytes())? else {
                return abort(Abort::Corrupt(format!("no coupon {code} to bind"), None));
            };
            let coupon: Coupon = tx(decode("coupon", &raw))?;
            if coupon.member != member {
                return abort(Abort::Corrupt(
                    format!("coupon {code} is not the member's"),
                    None,
                ));
            }
            requests.insert(rkey.as_slice(), code.as_str().as_bytes())
        })?;
        writing.wait()
    }

    fn confirm_coupon(&self, code: &CouponCode) -> Result<Coupon, StoreError> {
        let ckey = code.as_str().as_bytes();
        let trees = [&self.coupons, &self.pending_coupons];
        let writing = self.commit.writing();
        let coupon = self.atomic.run(trees, |[coupons, pending]| {
            let Some(raw) = coupons.get(ckey)? else {
                return abort(Abort::UnknownCoupon(code.clone()));
            };
            let mut coupon: Coupon = tx(decode("coupon", &raw))?;
            if coupon.status == CouponStatus::Pending {
                coupon.status = CouponStatus::Issued;
                coupons.insert(ckey, tx(encode("coupon", &coupon))?)?;
                pending.remove(ckey)?;
            }
            Ok(coupon)
        })?;
        writing.wait()?;
        if coupon.status == CouponStatus::Cancelled {
            tracing::warn!(member.id = %coupon.member, "confirm of a cancelled coupon refused");
        }
        Ok(coupon)
    }

    /// Pending → Cancelled plus one reversal entry. Cancelled: nothing changes (idempotent).
    /// Issued: nothing changes either: the shop made the coupon and the customer has its code,
    /// so giving the points back would pay the reward twice. Returns the balance either way.
    fn cancel_coupon(&self, code: &CouponCode, now: DateTime<Utc>) -> Result<Points, StoreError> {
        let ckey = code.as_str().as_bytes();
        let trees = [
            &self.coupons,
            &self.pending_coupons,
            &self.members,
            &self.ledger,
        ];
        let writing = self.commit.writing();
        let (status, balance, member) =
            self.atomic
                .run(trees, |[coupons, pending, members, ledger]| {
                    let Some(raw) = coupons.get(ckey)? else {
                        return abort(Abort::UnknownCoupon(code.clone()));
                    };
                    let mut coupon: Coupon = tx(decode("coupon", &raw))?;
                    let acct = tx_account(&members, coupon.member)?;
                    if coupon.status != CouponStatus::Pending {
                        return Ok((coupon.status, acct.balance, coupon.member));
                    }
                    // The refund is staged (so applied) before the status: whoever sees the
                    // coupon cancelled also sees the points back.
                    let entry =
                        LedgerEntry::reversal(&coupon.reward_id, code.as_str(), coupon.points, now);
                    let acct = tx_append(&members, &ledger, acct, &entry)?;
                    coupon.status = CouponStatus::Cancelled;
                    coupons.insert(ckey, tx(encode("coupon", &coupon))?)?;
                    pending.remove(ckey)?;
                    Ok((CouponStatus::Pending, acct.balance, coupon.member))
                })?;
        writing.wait()?;
        if status == CouponStatus::Issued {
            tracing::warn!(member.id = %member, "cancel of an issued coupon refused");
        }
        Ok(balance)
    }

    fn coupon(&self, code: &CouponCode) -> Result<Option<Coupon>, StoreError> {
        let out = self.read_coupon(code.as_str().as_bytes())?;
        self.commit.settle_read()?;
        Ok(out)
    }

    fn coupons_of(&self, member: MemberId) -> Result<Vec<Coupon>, StoreError> {
        self.atomic.read(|| {
            let mut out = Vec::new();
            for kv in self.member_coupons.scan_prefix(keys::member(member)) {
                let (_, code) = kv?;
                match self.read_coupon(&code)? {
                    Some(c) => out.push(c),
                    None => {
                        return Err(
                            Abort::Corrupt("coupon index points nowhere".into(), None).into()
                        )
                    }
                }
            }
            Ok(out)
        })
    }

    fn pending_coupons(&self) -> Result<Vec<Coupon>, StoreError> {
        let mut out = Vec::new();
        for kv in self.pending_coupons.iter() {
            let (code, _) = kv?;
            // A coupon settled between the two reads is simply no longer pending.
            if let Some(c) = self
                .read_coupon(&code)?
                .filter(|c| c.status == CouponStatus::Pending)
            {
                out.push(c);
            }
        }
        out.sort_by_key(|c| c.created_at);
        Ok(out)
    }

    fn conversation(&self, who: &ChatIdentity) -> Result<Option<ConversationState>, StoreError> {
        match self.conversations.get(keys::identity(who))? {
            Some(raw) => Ok(Some(decode("conversation", &raw)?)),
            None => Ok(None),
        }
    }

    fn save_conversation(
        &self,
        who: &ChatIdentity,
        state: &ConversationState,
    ) -> Result<(), StoreError> {
        let value = encode("conversation", state)?;
        let writing = self.commit.writing();
        self.conversations.insert(keys::identity(who), value)?;
        writing.wait()
    }

    fn clear_conversation(&self, who: &ChatIdentity) -> Result<(), StoreError> {
        let writing = self.commit.writing();
        self.conversations.remove(keys::identity(who))?;
        writing.wait()
    }

    fn adjust(
        &self,
        member: MemberId,
        adjustment: &Adjustment,
        key: &RequestKey,
        now: DateTime<Utc>,
    ) -> Result<AdjustOutcome, StoreError> {
        self.adjust_points(member, adjustment, key, now)
    }

    fn import_balances(
        &self,
        rows: &[ImportRow],
        now: DateTime<Utc>,
    ) -> Result<Vec<ImportOutcome>, StoreError> {
        self.import_rows(rows, now)
    }

    fn imported_balance(&self, email: &Email) -> Result<Option<ImportedBalance>, StoreError> {
        self.read_imported_balance(email)
    }

    fn imported_balances(
        &self,
        after: Option<&Email>,
        limit: usize,
    ) -> Result<Vec<ImportedBalance>, StoreError> {
        self.read_imported_balances(after, limit)
    }

    fn totals(&self) -> Result<Totals, StoreError> {
        self.read_totals()
    }

    // Backups: `backup.rs` and `restore.rs`.

    fn layout_version(&self) -> u32 {
        super::migrate::CURRENT
    }

    fn backup(
        &self,
        visit: &mut dyn FnMut(BackupRecord) -> std::ops::ControlFlow<()>,
    ) -> Result<(), StoreError> {
        self.backup_records(visit)
    }

    fn restore_begin(&self) -> Result<(), StoreError> {
        SledStore::restore_begin(self)
    }

    fn restore(&self, record: BackupRecord) -> Result<(), StoreError> {
        self.restore_record(record)
    }

    fn restore_finish(&self) -> Result<(), StoreError> {
        SledStore::restore_finish(self)
    }

    fn restore_abort(&self) -> Result<(), StoreError> {
        SledStore::restore_abort(self)
    }

    fn member_rows(
        &self,
        filter: &crate::domain::SegmentFilter,
        after: Option<MemberId>,
        visit: &mut dyn FnMut(crate::domain::MemberRow) -> std::ops::ControlFlow<()>,
    ) -> Result<(), StoreError> {
        self.scan_member_rows(filter, after, visit)
    }
    // Address verification: `verification.rs`.

    fn pending_join(&self, who: &ChatIdentity) -> Result<Option<PendingJoin>, StoreError> {
        self.read_pending_join(who)
    }

    fn begin_verification(
        &self,
        pending: PendingJoin,
        now: DateTime<Utc>,
    ) -> Result<BeginVerification, StoreError> {
        self.start_verification(pending, now)
    }

    fn reissue_code(
        &self,
        who: &ChatIdentity,
        code_hash: String,
        now: DateTime<Utc>,
    ) -> Result<Reissue, StoreError> {
        self.new_code(who, code_hash, now)
    }

    fn verify_code(
        &self,
        who: &ChatIdentity,
        code: &VerificationCode,
        bonus: Points,
        now: DateTime<Utc>,
    ) -> Result<VerifyOutcome, StoreError> {
        self.check_code(who, code, bonus, now)
    }

    // Email to members: `mail/`.

    fn mail_policy(&self) -> MailPolicy {
        self.mail.policy()
    }

    fn ensure_statement_schedule(
        &self,
        policy: &MailPolicy,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.backfill_statements(policy, now)
    }

    fn schedule_mail(&self, due: DueMail) -> Result<(), StoreError> {
        self.put_due_mail(due)
    }

    fn due_mails(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<DueMail>, StoreError> {
        self.read_due_mails(now, limit)
    }

    fn mail_state(&self, member: MemberId) -> Result<MailState, StoreError> {
        self.read_mail_state(member)
    }

    fn begin_mail(
        &self,
        due: &DueMail,
        policy: &MailPolicy,
        message_id: String,
        now: DateTime<Utc>,
    ) -> Result<MailStart, StoreError> {
        self.start_mail(due, policy, message_id, now)
    }

    fn finish_mail(
        &self,
        id: u64,
        result: MailResult,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.end_mail(id, result, now)
    }

    fn unsent_mails(&self) -> Result<Vec<OutboxMail>, StoreError> {
        self.read_unsent_mails()
    }

    fn set_unsubscribed(
        &self,
        member: MemberId,
        unsubscribed: bool,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.write_unsubscribed(member, unsubscribed, now)
    }

    fn set_member_locale(&self, member: MemberId, locale: &str) -> Result<(), StoreError> {
        self.write_member_locale(member, locale)
    }

    fn mail_link_key(&self) -> Result<[u8; 32], StoreError> {
        self.link_key()
    }
}
