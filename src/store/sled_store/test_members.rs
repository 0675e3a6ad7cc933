//! Members and claims for the sled store's unit tests: a Messenger member joined with 50
//! points, and a paid order of 42 EUR claimed for a given number of points.

use super::SledStore;
use crate::domain::*;
use crate::store::*;
use chrono::Utc;

/// Joins `psid` (email `<psid>@example.com`, bonus 50); panics unless it is a new member.
pub(super) fn join(store: &SledStore, psid: &str) -> MemberId {
    let new = NewMember {
        identity: ChatIdentity::new(Channel::Messenger, psid).unwrap(),
        email: Email::parse(&format!("{psid}@example.com")).unwrap(),
        profile: Profile::default(),
        bonus: Points(50),
    };
    match store.join(new, Utc::now()).unwrap() {
        JoinOutcome::Joined(a) => a.member.id,
        other => panic!("expected a new member, got {other:?}"),
    }
}

/// Claims the paid order numbered `n` for `id`, crediting `points`.
pub(super) fn claim(store: &SledStore, id: MemberId, n: &str, points: u64) -> ClaimOutcome {
    let number = OrderNumber::parse(n).unwrap();
    let order = VerifiedOrder {
        id: OrderId::from(&number),
        number,
        email: Email::parse("ana@example.com").unwrap(),
        total: "42".parse().unwrap(),
        currency: "EUR".into(),
        status: OrderStatus::Paid,
    };
    store
        .claim_order(id, &order, Points(points), Utc::now())
        .unwrap()
}
