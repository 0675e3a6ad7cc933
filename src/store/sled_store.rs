//! TEMPORARY stub (wiring branch only): the store engineer's sled backend replaces this file
//! at merge. It opens nothing, reads as empty and refuses every write.

use super::{
    ClaimOutcome, ConversationState, EventQueue, InboundEvent, JoinOutcome, LoyaltyStore,
    MemberAccount, NewMember, OutboundMessage, RedeemOutcome, StoreError,
};
use crate::domain::{
    ChatIdentity, Coupon, CouponCode, Email, LedgerEntry, MemberId, OrderNumber, Points, Reward,
    VerifiedOrder,
};
use chrono::{DateTime, Utc};
use std::path::Path;

pub struct SledStore;

fn refused<T>() -> Result<T, StoreError> {
    Err(StoreError::Backend(
        "the sled store has not landed on this branch".into(),
    ))
}

impl SledStore {
    pub fn open(_path: &Path, _cache_capacity_bytes: u64) -> Result<SledStore, StoreError> {
        Ok(SledStore)
    }

    pub fn flush_now(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

impl LoyaltyStore for SledStore {
    fn member(&self, _: MemberId) -> Result<Option<MemberAccount>, StoreError> {
        Ok(None)
    }
    fn member_by_identity(&self, _: &ChatIdentity) -> Result<Option<MemberAccount>, StoreError> {
        Ok(None)
    }
    fn member_by_email(&self, _: &Email) -> Result<Option<MemberAccount>, StoreError> {
        Ok(None)
    }
    fn ledger(&self, _: MemberId) -> Result<Vec<LedgerEntry>, StoreError> {
        Ok(vec![])
    }
    fn members(&self) -> Result<Vec<MemberAccount>, StoreError> {
        Ok(vec![])
    }
    fn join(&self, _: NewMember, _: DateTime<Utc>) -> Result<JoinOutcome, StoreError> {
        refused()
    }
    fn claim_order(
        &self,
        _: MemberId,
        _: &VerifiedOrder,
        _: Points,
        _: DateTime<Utc>,
    ) -> Result<ClaimOutcome, StoreError> {
        refused()
    }
    fn order_claim(
        &self,
        _: &OrderNumber,
    ) -> Result<Option<(MemberId, DateTime<Utc>)>, StoreError> {
        Ok(None)
    }
    fn redeem_reward(
        &self,
        _: MemberId,
        _: &Reward,
        _: CouponCode,
        _: DateTime<Utc>,
        _: DateTime<Utc>,
    ) -> Result<RedeemOutcome, StoreError> {
        refused()
    }
    fn confirm_coupon(&self, _: &CouponCode) -> Result<Coupon, StoreError> {
        refused()
    }
    fn cancel_coupon(&self, _: &CouponCode, _: DateTime<Utc>) -> Result<Points, StoreError> {
        refused()
    }
    fn coupon(&self, _: &CouponCode) -> Result<Option<Coupon>, StoreError> {
        Ok(None)
    }
    fn coupons_of(&self, _: MemberId) -> Result<Vec<Coupon>, StoreError> {
        Ok(vec![])
    }
    fn pending_coupons(&self) -> Result<Vec<Coupon>, StoreError> {
        Ok(vec![])
    }
    fn conversation(&self, _: &ChatIdentity) -> Result<Option<ConversationState>, StoreError> {
        Ok(None)
    }
    fn save_conversation(&self, _: &ChatIdentity, _: &ConversationState) -> Result<(), StoreError> {
        refused()
    }
    fn clear_conversation(&self, _: &ChatIdentity) -> Result<(), StoreError> {
        refused()
    }
}

impl EventQueue for SledStore {
    fn record_inbound(&self, _: Vec<InboundEvent>) -> Result<Vec<InboundEvent>, StoreError> {
        refused()
    }
    fn pending_inbound(&self) -> Result<Vec<InboundEvent>, StoreError> {
        Ok(vec![])
    }
    fn finish_inbound(&self, _: &str, _: Vec<OutboundMessage>) -> Result<Vec<u64>, StoreError> {
        refused()
    }
    fn pending_outbound(&self) -> Result<Vec<(u64, OutboundMessage)>, StoreError> {
        Ok(vec![])
    }
    fn finish_outbound(&self, _: u64) -> Result<(), StoreError> {
        refused()
    }
    fn prune_inbound(&self, _: DateTime<Utc>) -> Result<usize, StoreError> {
        Ok(0)
    }
}
