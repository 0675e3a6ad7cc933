//! Post-mortem checks of the crash tests: what the customers were acknowledged and told (the
//! journal, the fake Graph API's record) against the store, opened after the last process has
//! exited. Every broken invariant becomes one line of [`Findings::problems`].

use super::common::graph_api::GraphRequest;
use super::common::FakeGraphApi;
use super::load::{Acked, Journal};
use loyalty_bot::domain::{Channel, ChatIdentity, CouponStatus, EntryKind, LedgerEntry, MemberId};
use loyalty_bot::store::{EventQueue, InboundEvent, LoyaltyStore, SledStore};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};

/// What the test saw from outside.
pub struct Evidence<'a> {
    pub journal: &'a Journal,
    /// Every request the fake Graph API received, in arrival order.
    pub graph: &'a [GraphRequest],
    /// Where each `kill -9` fell in `graph`: requests before `kills[n]` came from the first
    /// `n + 1` processes.
    pub kills: &'a [usize],
    /// Coupons the fake shop created.
    pub shop_coupons: &'a [Value],
}

#[derive(Debug, Default)]
pub struct Findings {
    pub problems: Vec<String>,
    /// Messages the Graph API accepted.
    pub messages: usize,
    /// Messages sent again after a restart because the crash came between the Send API's 200
    /// and recording the delivery.
    pub resends: usize,
    pub members: usize,
    pub ledger_entries: usize,
    pub credits: usize,
    pub coupons_issued: usize,
    pub coupons_cancelled: usize,
    /// Messenger events run a second time after a crash between their effect and "done": the
    /// customers here never claim an order twice, so "already credited to you" means that.
    pub reruns: usize,
}

impl Findings {
    fn problem(&mut self, p: String) {
        self.problems.push(p);
    }
}

/// Runs every check. Mutates the store only at the very end (see [`check_inbox`]).
pub fn check(ev: &Evidence<'_>, store: &SledStore) -> Findings {
    let mut f = Findings::default();
    let told = check_replies(ev, &mut f);
    check_ledgers(ev, store, &mut f);
    check_told(ev, store, &told, &mut f);
    check_inbox(ev, store, &mut f);
    f
}

/// One accepted Send API message: whom, what, in answer to which event, from which process.
struct Sent<'a> {
    key: &'a str,
    psid: &'a str,
    body: &'a Value,
    process: usize,
}

/// Every acknowledged event was answered, by exactly one message (processed once); a message
/// was sent more than once only across a crash, at most once per customer and restart.
fn check_replies<'a>(ev: &'a Evidence<'_>, f: &mut Findings) -> Vec<Sent<'a>> {
    let acked: HashMap<&str, &Acked> = ev.journal.acked.iter().map(|a| (&*a.key, a)).collect();
    let mut sent = Vec::new();
    for (i, r) in ev.graph.iter().enumerate() {
        if r.status != 200 || !r.path.ends_with("/me/messages") {
            continue;
        }
        let Some(key) = r.body["message"]["metadata"].as_str() else {
            f.problem(format!("a message names no event: {}", r.body));
            continue;
        };
        let psid = r.body["recipient"]["id"].as_str().unwrap_or_default();
        match acked.get(key) {
            None => f.problem(format!("{key}: answered but never acknowledged")),
            Some(a) if a.psid != psid => f.problem(format!("{key}: answered to {psid}")),
            Some(_) => {}
        }
        let process = ev.kills.iter().filter(|&&k| k <= i).count();
        sent.push(Sent {
            key,
            psid,
            body: &r.body,
            process,
        });
    }
    f.messages = sent.len();
    let mut by_key: BTreeMap<&str, Vec<&Sent<'_>>> = BTreeMap::new();
    for s in &sent {
        by_key.entry(s.key).or_default().push(s);
    }
    let mut resent_to: HashMap<(&str, usize), usize> = HashMap::new();
    for a in &ev.journal.acked {
        let Some(copies) = by_key.get(&*a.key) else {
            f.problem(format!("{}: acknowledged, never answered", a.key));
            continue;
        };
        let distinct: HashSet<String> = copies.iter().map(|s| s.body.to_string()).collect();
        if distinct.len() > 1 {
            let texts: Vec<String> = copies
                .iter()
                .map(|s| FakeGraphApi::text_of(s.body))
                .collect();
            f.problem(format!(
                "{}: answered {} different ways (processed twice?): {texts:?}",
                a.key,
                distinct.len()
            ));
        }
        for pair in copies.windows(2) {
            if pair[1].process <= pair[0].process {
                f.problem(format!(
                    "{}: the same reply sent twice by one process (no crash in between)",
                    a.key
                ));
            }
            *resent_to
                .entry((a.psid.as_str(), pair[1].process))
                .or_default() += 1;
        }
        f.resends += copies.len() - 1;
    }
    for ((psid, process), n) in resent_to {
        if n > 1 {
            f.problem(format!(
                "{n} replies to {psid} sent again by process {process}: a crash leaves at most one \
                 reply per customer between its Send API call and the record of its delivery"
            ));
        }
    }
    sent
}

/// Per member: one signup bonus first, balance = ledger sum, coupons consistent with their
/// ledger lines. Globally: each order credited at most once, to whom the claim index says.
fn check_ledgers(ev: &Evidence<'_>, store: &SledStore, f: &mut Findings) {
    let members = store.members().expect("members readable");
    f.members = members.len();
    let mut credited: HashMap<String, MemberId> = HashMap::new();
    let shop_codes: HashSet<&str> = ev
        .shop_coupons
        .iter()
        .filter_map(|c| c["code"].as_str())
        .collect();
    for account in members {
        let id = account.member.id;
        let ledger = store.ledger(id).expect("ledger readable");
        f.ledger_entries += ledger.len();
        let sum: i64 = ledger.iter().map(|e| e.points).sum();
        if u64::try_from(sum).ok() != Some(account.balance.value()) {
            f.problem(format!(
                "member {id}: balance {} but ledger sum {sum}",
                account.balance.value()
            ));
        }
        let bonuses = ledger
            .iter()
            .filter(|e| e.kind == EntryKind::SignupBonus)
            .count();
        if bonuses != 1 || ledger[0].kind != EntryKind::SignupBonus {
            f.problem(format!(
                "member {id}: {bonuses} signup bonuses, first entry {:?}",
                ledger[0].kind
            ));
        }
        for e in ledger.iter().filter(|e| e.kind == EntryKind::OrderCredit) {
            f.credits += 1;
            let order = e.order_number.as_ref().expect("a credit names its order");
            let name = order.as_str().to_ascii_uppercase();
            if let Some(first) = credited.insert(name.clone(), id) {
                f.problem(format!(
                    "order {name} credited twice (members {first} and {id})"
                ));
            }
            match store.order_claim(&order.into()).expect("claims readable") {
                Some((by, _)) if by == id => {}
                other => f.problem(format!(
                    "order {name} credited to {id}, claim index says {other:?}"
                )),
            }
        }
        let coupons = store.coupons_of(id).expect("coupons readable");
        let with_code = |kind: EntryKind, code: &str| {
            ledger
                .iter()
                .filter(|e| e.kind == kind && e.coupon_code.as_deref() == Some(code))
                .count()
        };
        for c in &coupons {
            let code = c.code.as_str();
            let (taken, given_back) = (
                with_code(EntryKind::Redemption, code),
                with_code(EntryKind::RedemptionReversal, code),
            );
            let expected_back = match c.status {
                CouponStatus::Issued => {
                    f.coupons_issued += 1;
                    if !shop_codes.contains(code) {
                        f.problem(format!("coupon {code} issued but the shop never made it"));
                    }
                    0
                }
                CouponStatus::Cancelled => {
                    f.coupons_cancelled += 1;
                    1
                }
                CouponStatus::Pending => {
                    f.problem(format!("coupon {code} still pending after a graceful stop"));
                    0
                }
            };
            if taken != 1 || given_back != expected_back {
                f.problem(format!(
                    "coupon {code} ({:?}): {taken} redemptions, {given_back} reversals in the ledger",
                    c.status
                ));
            }
        }
        let codes: HashSet<&str> = coupons.iter().map(|c| c.code.as_str()).collect();
        for e in ledger.iter().filter(|e| e.kind == EntryKind::Redemption) {
            if !e.coupon_code.as_deref().is_some_and(|c| codes.contains(c)) {
                f.problem(format!("member {id}: redemption without its coupon: {e:?}"));
            }
        }
    }
    let pending = store.pending_coupons().expect("pending coupons readable");
    if !pending.is_empty() {
        f.problem(format!("{} coupons left pending", pending.len()));
    }
}

/// Everything a customer was told is in the ledger: welcome bonuses, credits (with the balance
/// announced then), coupon codes. An order is announced as credited at most once, and every
/// issued coupon was shown to its owner.
fn check_told(ev: &Evidence<'_>, store: &SledStore, sent: &[Sent<'_>], f: &mut Findings) {
    let mut tellings: Vec<(Channel, &str, String, String)> = Vec::new();
    for s in sent {
        let text = FakeGraphApi::text_of(s.body);
        tellings.push((Channel::Messenger, s.psid, s.key.to_owned(), text));
    }
    for (n, a) in ev.journal.answers.iter().enumerate() {
        let occasion = format!("{} answer {n}", a.path);
        tellings.push((Channel::Manychat, &a.subscriber, occasion, a.text.clone()));
    }
    // Order → the occasions (event keys, ManyChat answers) it was announced as credited on.
    let mut announced: HashMap<String, HashSet<String>> = HashMap::new();
    let mut shown_codes: HashSet<String> = HashSet::new();
    let mut reruns: HashSet<&str> = HashSet::new();
    for (channel, who, occasion, text) in &tellings {
        let identity = ChatIdentity::new(*channel, who).expect("valid identity");
        let account = store
            .member_by_identity(&identity)
            .expect("identities readable");
        let ledger = match &account {
            Some(a) => store.ledger(a.member.id).expect("ledger readable"),
            None => Vec::new(),
        };
        let told = |what: &str| format!("{who} on {occasion} was told {what}");
        if text.contains("You got 50 points")
            && !ledger.iter().any(|e| e.kind == EntryKind::SignupBonus)
        {
            f.problem(told("about a signup bonus that is not in a ledger"));
        }
        if let Some((order, earned, balance)) = credit_in(text) {
            announced
                .entry(order.to_ascii_uppercase())
                .or_default()
                .insert(occasion.clone());
            match credit_line(&ledger, &order) {
                None => f.problem(told(&format!("order {order} was credited; it is not"))),
                Some((e, after)) if e.points != earned || after != balance => {
                    f.problem(told(&format!(
                        "{earned} points for {order}, now {balance}; the ledger says {} then {after}",
                        e.points
                    )))
                }
                Some(_) => {}
            }
        }
        if let Some(order) = already_yours_in(text) {
            if *channel == Channel::Messenger {
                reruns.insert(occasion);
            }
            if credit_line(&ledger, &order).is_none() {
                f.problem(told(&format!("{order} was credited to them; it is not")));
            }
        }
        if let Some(code) = coupon_in(text) {
            let coupon = store
                .coupon(&loyalty_bot::domain::CouponCode::from_stored(code.clone()))
                .expect("coupons readable");
            let owner = account.as_ref().map(|a| a.member.id);
            match coupon {
                Some(c) if Some(c.member) == owner && c.status == CouponStatus::Issued => {}
                other => f.problem(told(&format!("coupon {code}; the store has {other:?}"))),
            }
            shown_codes.insert(code);
        }
    }
    f.reruns = reruns.len();
    for (order, occasions) in announced {
        if occasions.len() > 1 {
            f.problem(format!(
                "order {order} announced as credited {} times: {occasions:?}",
                occasions.len()
            ));
        }
    }
    for account in store.members().expect("members readable") {
        for c in store
            .coupons_of(account.member.id)
            .expect("coupons readable")
        {
            if c.status == CouponStatus::Issued && !shown_codes.contains(c.code.as_str()) {
                f.problem(format!(
                    "coupon {} issued (points spent) but never shown to member {}",
                    c.code, account.member.id
                ));
            }
        }
    }
}

/// Nothing acknowledged is missing or unfinished: no event pending, no reply queued, and
/// recording every acknowledged event again finds each known. (This last step writes to the
/// store, so it runs last.)
fn check_inbox(ev: &Evidence<'_>, store: &SledStore, f: &mut Findings) {
    let pending = store.pending_inbound().expect("inbox readable");
    if !pending.is_empty() {
        let keys: Vec<&str> = pending.iter().map(|e| e.key.as_str()).take(5).collect();
        f.problem(format!(
            "{} events still pending after a graceful stop, e.g. {keys:?}",
            pending.len()
        ));
    }
    let queued = store.pending_outbound().expect("outbox readable");
    if !queued.is_empty() {
        f.problem(format!(
            "{} replies still queued after a graceful stop",
            queued.len()
        ));
    }
    f.problems.extend(unrecorded(store, &ev.journal.acked));
}

/// Acknowledged events the store does not know: records `acked` again and reports the ones
/// taken as new. Writes to the store; use it last, or on a copy.
pub fn unrecorded(store: &SledStore, acked: &[Acked]) -> Vec<String> {
    let again: Vec<InboundEvent> = acked
        .iter()
        .map(|a| InboundEvent {
            key: a.key.clone(),
            sender: a.psid.clone(),
            timestamp_ms: a.timestamp_ms,
            payload: a.event.clone().into(),
        })
        .collect();
    let unknown = store.record_inbound(again).expect("inbox writable");
    unknown
        .into_iter()
        .map(|e| format!("{}: acknowledged but never recorded", e.key))
        .collect()
}

/// `(order, earned, balance)` from "…your order #1001! You earned 42 points and now have 92
/// points…".
fn credit_in(text: &str) -> Option<(String, i64, i64)> {
    let rest = text.split("your order #").nth(1)?;
    let (order, rest) = rest.split_once('!')?;
    let rest = rest.split("You earned ").nth(1)?;
    let (earned, rest) = rest.split_once(" points and now have ")?;
    let (balance, _) = rest.split_once(" points")?;
    Some((
        order.to_owned(),
        earned.parse().ok()?,
        balance.parse().ok()?,
    ))
}

/// The order from "Order #1001 was already credited to you on …".
fn already_yours_in(text: &str) -> Option<String> {
    let rest = text.split("Order #").nth(1)?;
    let (order, _) = rest.split_once(" was already credited to you")?;
    Some(order.to_owned())
}

/// The code from "…Your coupon code is MUG-7QX4-K2PA-9RTD. It works…".
fn coupon_in(text: &str) -> Option<String> {
    let rest = text.split("Your coupon code is ").nth(1)?;
    let code = rest.split(|c: char| c.is_whitespace() || c == '.').next()?;
    Some(code.to_owned())
}

/// The credit line of `order` and the balance right after it (the ledger sum up to it).
fn credit_line<'l>(ledger: &'l [LedgerEntry], order: &str) -> Option<(&'l LedgerEntry, i64)> {
    let mut sum = 0;
    for e in ledger {
        sum += e.points;
        let is_it = e.kind == EntryKind::OrderCredit
            && e.order_number
                .as_ref()
                .is_some_and(|o| o.as_str().eq_ignore_ascii_case(order));
        if is_it {
            return Some((e, sum));
        }
    }
    None
}

#[test]
fn announcements_are_read_from_the_flow_texts() {
    let text = "Thank you for your order #M3-1! You earned 42 points and now have 92 points. \
                108 more points to Free mug.";
    assert_eq!(credit_in(text), Some(("M3-1".into(), 42, 92)));
    let text = "Here is your Free mug! Your coupon code is MUG-7QX4-K2PA-9RTD. It works once";
    assert_eq!(coupon_in(text).as_deref(), Some("MUG-7QX4-K2PA-9RTD"));
    assert_eq!(credit_in("You have 92 points."), None);
    let text = "Order #S3-1 was already credited to you on 23 Nov 2026. You have 92 points.";
    assert_eq!(already_yours_in(text).as_deref(), Some("S3-1"));
}
