//! Address verification on sled: joins waiting for their code, in the `pending_joins` tree
//! (chat identity key → [`PendingJoin`]). A wrong try is written before it is answered, so a
//! restart does not give a locked code its tries back; the right code enrols the member
//! (`enrol.rs`) and removes the waiting join in one atomic operation, so it works once.
//!
//! Waiting joins are not in backups: they live for minutes, and a customer whose code is lost
//! in a move asks for a new one.

use chrono::{DateTime, Utc};

use super::atomic::tx;
use super::enrol::{tx_enrol, Enrol};
use super::records::{decode, decode_id, encode, tx_account};
use super::SledStore;
use crate::domain::verification::{CodeCheck, PendingJoin, VerificationCode};
use crate::domain::{ChatIdentity, MemberId, Points};
use crate::store::{
    keys, BeginVerification, JoinOutcome, NewMember, Reissue, StoreError, VerifyOutcome,
};

impl SledStore {
    pub(super) fn read_pending_join(
        &self,
        who: &ChatIdentity,
    ) -> Result<Option<PendingJoin>, StoreError> {
        let out = match self.mail.pending_joins.get(keys::identity(who))? {
            Some(raw) => Some(decode("pending join", &raw)?),
            None => None,
        };
        self.commit.settle_read()?;
        Ok(out)
    }

    pub(super) fn start_verification(
        &self,
        pending: PendingJoin,
        now: DateTime<Utc>,
    ) -> Result<BeginVerification, StoreError> {
        let (ikey, ekey) = (
            keys::identity(&pending.identity),
            keys::email(&pending.email),
        );
        let trees = [
            &self.members,
            &self.identities,
            &self.emails,
            &self.mail.pending_joins,
        ];
        let writing = self.commit.writing();
        let outcome = self
            .atomic
            .run(trees, |[members, identities, emails, pending_joins]| {
                if let Some(raw) = identities.get(&ikey)? {
                    let id = tx(decode_id(&raw))?;
                    let acct = tx_account(&members, id)?;
                    return Ok(BeginVerification::AlreadyMember(acct.view()));
                }
                if emails.get(&ekey)?.is_some() {
                    return Ok(BeginVerification::EmailTaken);
                }
                if let Some(raw) = pending_joins.get(&ikey)? {
                    let earlier: PendingJoin = tx(decode("pending join", &raw))?;
                    if let Err(wait) = earlier.can_resend(now) {
                        return Ok(BeginVerification::CoolingDown { wait });
                    }
                }
                pending_joins.insert(&ikey, tx(encode("pending join", &pending))?)?;
                Ok(BeginVerification::Started)
            })?;
        writing.wait()?;
        Ok(outcome)
    }

    pub(super) fn new_code(
        &self,
        who: &ChatIdentity,
        code_hash: String,
        now: DateTime<Utc>,
    ) -> Result<Reissue, StoreError> {
        let ikey = keys::identity(who);
        let writing = self.commit.writing();
        let outcome = self.atomic.run([&self.mail.pending_joins], |[pending]| {
            let Some(raw) = pending.get(&ikey)? else {
                return Ok(Reissue::NoPending);
            };
            let mut join: PendingJoin = tx(decode("pending join", &raw))?;
            if let Err(wait) = join.can_resend(now) {
                return Ok(Reissue::CoolingDown { wait });
            }
            // `PendingJoin::reissue` with the hash the caller made of the code it will send.
            join.code_hash = code_hash;
            join.issued_at = now;
            join.tries = 0;
            join.sends += 1;
            pending.insert(&ikey, tx(encode("pending join", &join))?)?;
            Ok(Reissue::Reissued(join))
        })?;
        writing.wait()?;
        Ok(outcome)
    }

    pub(super) fn check_code(
        &self,
        who: &ChatIdentity,
        code: &VerificationCode,
        bonus: Points,
        now: DateTime<Utc>,
    ) -> Result<VerifyOutcome, StoreError> {
        let ikey = keys::identity(who);
        let every = self.mail.policy().statement_every;
        let [t0, t1, t2, t3, t4, t5, t6] = self.enrol_trees();
        let trees = [t0, t1, t2, t3, t4, t5, t6, &self.mail.pending_joins];
        let writing = self.commit.writing();
        let outcome = self.atomic.run(trees, |[a, b, c, d, e, f, g, pending]| {
            let Some(raw) = pending.get(&ikey)? else {
                return Ok(VerifyOutcome::NoPending);
            };
            let mut join: PendingJoin = tx(decode("pending join", &raw))?;
            let before = join.tries;
            match join.check(code, now) {
                CodeCheck::Correct => {}
                wrong => {
                    if join.tries != before {
                        pending.insert(&ikey, tx(encode("pending join", &join))?)?;
                    }
                    return Ok(match wrong {
                        CodeCheck::Wrong { tries_left } => VerifyOutcome::Wrong { tries_left },
                        CodeCheck::Expired => VerifyOutcome::Expired,
                        _ => VerifyOutcome::Locked,
                    });
                }
            }
            // The code is used up whatever the join says now.
            pending.remove(&ikey)?;
            // Taken only for a right code, so wrong ones burn no member ids.
            let id = MemberId(self.db.generate_id()? + 1);
            let new = NewMember {
                identity: join.identity,
                email: join.email,
                profile: join.profile,
                bonus,
            };
            Ok(
                match tx_enrol(&Enrol::from([a, b, c, d, e, f, g]), id, &new, every, now)? {
                    JoinOutcome::Joined(acct) => VerifyOutcome::Joined(acct),
                    JoinOutcome::AlreadyMember(acct) => VerifyOutcome::AlreadyMember(acct),
                    JoinOutcome::EmailTaken => VerifyOutcome::EmailTaken,
                },
            )
        })?;
        writing.wait()?;
        if let VerifyOutcome::Joined(a) = &outcome {
            let email = a.member.email.masked();
            tracing::info!(member.id = %a.member.id, %email, "member joined with a verified address");
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests;
