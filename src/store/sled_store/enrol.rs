//! Enrolment inside an atomic operation, shared by a plain join and a join whose address
//! was verified by its code: the member record, the signup bonus, any imported balance for
//! the email, the identity and email indexes, the totals, and the first statement due
//! `statement_every` after joining, all in the caller's one write set. A new member has no
//! mail state record: the defaults are what a missing one reads as, and the due-date index
//! holds the next statement (a record per member was a fifth of a million-member store).

use chrono::{DateTime, Duration, Utc};

use super::atomic::{tx, Tx, TxTree};
use super::imports::tx_take_import;
use super::mail::due::tx_schedule;
use super::records::{decode_id, tx_account, tx_append, Account};
use crate::domain::mail::{DueMail, MailKind};
use crate::domain::{LedgerEntry, Member, MemberId, Points};
use crate::store::{keys, JoinOutcome, NewMember};

/// The trees an enrolment writes, as seen inside the caller's operation.
pub(super) struct Enrol<'a> {
    pub members: TxTree<'a>,
    pub identities: TxTree<'a>,
    pub emails: TxTree<'a>,
    pub ledger: TxTree<'a>,
    pub imports: TxTree<'a>,
    pub due: TxTree<'a>,
    pub due_by: TxTree<'a>,
}

impl<'a> Enrol<'a> {
    /// From the views of [`super::SledStore::enrol_trees`]' trees, in that order.
    pub fn from(
        [members, identities, emails, ledger, imports, due, due_by]: [TxTree<'a>; 7],
    ) -> Self {
        Enrol {
            members,
            identities,
            emails,
            ledger,
            imports,
            due,
            due_by,
        }
    }
}

/// Enrols `new` as member `id` unless the identity is a member already or the email is
/// another member's.
pub(super) fn tx_enrol(
    t: &Enrol<'_>,
    id: MemberId,
    new: &NewMember,
    statement_every: Duration,
    now: DateTime<Utc>,
) -> Tx<JoinOutcome> {
    let (ikey, ekey) = (keys::identity(&new.identity), keys::email(&new.email));
    if let Some(raw) = t.identities.get(&ikey)? {
        let existing = tx(decode_id(&raw))?;
        return Ok(JoinOutcome::AlreadyMember(
            tx_account(&t.members, existing)?.view(),
        ));
    }
    if t.emails.get(&ekey)?.is_some() {
        return Ok(JoinOutcome::EmailTaken);
    }
    let member = Member {
        id,
        email: new.email.clone(),
        identity: new.identity.clone(),
        first_name: new.profile.first_name.clone(),
        locale: new.profile.locale.clone(),
        joined_at: now,
    };
    let fresh = Account {
        member,
        balance: Points::ZERO,
        next_seq: 0,
    };
    let bonus = LedgerEntry::signup_bonus(new.bonus, now);
    let acct = tx_append(&t.members, &t.ledger, fresh, &bonus)?;
    let acct = tx_take_import(&t.imports, &t.members, &t.ledger, acct, &ekey, now)?;
    t.identities.insert(ikey.as_slice(), &keys::member(id))?;
    t.emails.insert(ekey.as_slice(), &keys::member(id))?;
    super::totals::tx_add(&t.members.totals(), 1, 0)?;
    let first = DueMail {
        at: now + statement_every,
        member: id,
        kind: MailKind::Statement,
        coupon: None,
    };
    tx_schedule(&t.due, &t.due_by, &first)?;
    Ok(JoinOutcome::Joined(acct.view()))
}

impl super::SledStore {
    /// The trees [`tx_enrol`] writes, in [`Enrol::from`]'s order.
    pub(super) fn enrol_trees(&self) -> [&sled::Tree; 7] {
        [
            &self.members,
            &self.identities,
            &self.emails,
            &self.ledger,
            &self.imported_balances,
            &self.mail.due,
            &self.mail.due_by,
        ]
    }
}
