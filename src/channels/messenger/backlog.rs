//! The hand-off from webhook intake to the worker, bounded: at most
//! `messenger.max_events_in_memory` received events are held in memory. Beyond that the hand-off
//! "spills": new events wait only in the store (where intake has recorded them before the 200
//! anyway), and the worker reads them back as it works through what it holds.
//!
//! Reading back keeps each customer's order. While spilled nothing is handed over, so every
//! event the worker has not seen is in the store; the worker reads the first events by
//! (timestamp, sender), leaving out those it holds, which is a prefix of each customer's
//! remaining events, and queues them behind that customer's events in memory. It reads again
//! whenever what it holds falls to a quarter of the limit (the low-water mark), or when what it
//! holds is in the hands of so few customers (at most 1/64 of the limit) that it is nearly idle
//! (each customer's events run one at a time) while a quarter of the limit is free. So a
//! customer whose event hangs (a shop that does not answer, a reply in Send API retries) holds
//! back their own events, not the rest of the backlog. A read takes at most a sixteenth of
//! the limit of one customer's events into memory (counting those already there), so a
//! customer with very many events waiting behind a hang cannot fill the room either: a read
//! passes over a customer at that quota until they are down to half of it (so each read for
//! them takes a batch), and a read that finds nothing else waits until a customer's quota
//! opens again or someone else writes, instead of scanning the inbox in a loop. It stays
//! spilled while more are pending, and only resumes the hand-off once a read found everything.
//! Events recorded during that last read are read again right after the switch, minus those
//! handed over since (they are on their way); an event that still arrives both ways is run
//! once, because a lane skips an event the store already records as processed.
//!
//! So the bound is the limit plus what arrives while the store is read (one read of the whole
//! inbox, typically under a second). Unbounded second read on purpose: cutting it short would
//! let a customer's newest event, handed over in memory, run before older ones left unread.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use tokio::sync::Notify;

use crate::store::{InboundEvent, SenderQuota};

pub(super) struct Backlog {
    limit: usize,
    state: Mutex<State>,
    /// Wakes the worker when it should read the store: the hand-off just spilled, or a read
    /// became due while spilled ([`Backlog::read_due`]).
    wake: Notify,
}

struct State {
    /// Keys of the events handed over (or read back) and not yet done, with how many copies
    /// (an event can reach the worker both ways once, see the module doc).
    in_memory: HashMap<String, u32>,
    /// The customers those events are from, with how many each.
    senders: HashMap<String, u32>,
    /// Copies counted in `in_memory`.
    held: usize,
    spilled: bool,
    /// Between resuming the hand-off and the worker's second read: the keys handed over
    /// meanwhile, which that read leaves out.
    catching_up: Option<HashSet<String>>,
    /// Keys of events a failed lane dropped before running them: when a read finds them
    /// pending, they are not stuck but still to run.
    dropped: HashSet<String>,
    /// The last read found nothing it could take (what waits belongs to customers at their
    /// quota): no read until something changes, instead of scanning the inbox in a loop.
    starved: bool,
    /// Counts what could give a starved read something to take (a customer's quota opening
    /// again, an open customer's event recorded while spilled, a spill, an event a failed lane
    /// dropped), so that one happening during the read is not missed.
    changes: u64,
}

impl Backlog {
    /// Starts spilled: at start the store may hold events from before a restart, so the
    /// worker's first step is to read them back.
    pub(super) fn new(limit: usize) -> Self {
        Backlog {
            limit: limit.max(1),
            state: Mutex::new(State {
                in_memory: HashMap::new(),
                senders: HashMap::new(),
                held: 0,
                spilled: true,
                catching_up: None,
                dropped: HashSet::new(),
                starved: false,
                changes: 0,
            }),
            wake: Notify::new(),
        }
    }

    pub(super) fn limit(&self) -> usize {
        self.limit
    }

    /// The worker reads the store again once it holds this many events or fewer.
    fn low_water(&self) -> usize {
        self.limit / 4
    }

    /// The most events of one customer the worker reads back into memory.
    fn per_customer(&self) -> usize {
        (self.limit / 16).max(1)
    }

    /// A customer who reached [`Backlog::per_customer`] gets more read back only once they
    /// hold this many or fewer: so that each read for them takes a batch worth its scan of the
    /// inbox, not the one slot an event just freed.
    fn reopens_at(&self) -> usize {
        self.per_customer() / 2
    }

    /// Whether `sender`'s events may be read now (see [`Backlog::reopens_at`]).
    fn open(&self, st: &State, sender: &str) -> bool {
        st.senders.get(sender).map_or(0, |&n| n as usize) <= self.reopens_at()
    }

    /// What a read may take of each customer's events now, and a mark to pass to
    /// [`Backlog::found_nothing`] (together, so that nothing between them is missed).
    pub(super) fn quota(&self) -> (SenderQuota, u64) {
        let per_customer = self.per_customer();
        let st = self.lock();
        let left = st
            .senders
            .iter()
            .map(|(sender, &n)| {
                let n = n as usize;
                let left = if n <= self.reopens_at() {
                    per_customer.saturating_sub(n)
                } else {
                    0
                };
                (sender.clone(), left)
            })
            .collect();
        let quota = SenderQuota {
            default: per_customer,
            left,
        };
        (quota, st.changes)
    }

    /// The worker's read, begun at mark `since`, took nothing while events are pending (all of
    /// them customers' whose quota is not open): read again only once a recording or an event
    /// done may give it something (at once if one did meanwhile).
    pub(super) fn found_nothing(&self, since: u64) {
        let mut st = self.lock();
        if st.changes == since {
            st.starved = true;
        }
    }

    /// Something a starved read could take may be in the store now.
    fn may_have_more(&self, st: &mut State) {
        st.changes += 1;
        st.starved = false;
    }

    /// Whether a read is due while spilled: what is held fell to the low-water mark, or it is
    /// in so few customers' hands (each customer's events run one at a time) that the worker
    /// is nearly idle while there is room for a read worth its scan of the inbox: customers
    /// whose events hang (a shop that does not answer) hold back only their own.
    fn read_due(&self, st: &State) -> bool {
        let room = self.limit.saturating_sub(st.held);
        st.spilled
            && !st.starved
            && (st.held <= self.low_water()
                || (st.senders.len() <= (self.limit / 64).max(1)
                    && room >= self.low_water().max(1)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Intake: passes freshly recorded `events` to `send` if they fit, else leaves them to the
    /// store. Under the lock, so that the switch back from spilled (see the module doc) sees
    /// every hand-off either before or after it.
    pub(super) fn hand_over(
        &self,
        events: Vec<InboundEvent>,
        send: impl FnOnce(Vec<InboundEvent>),
    ) {
        let mut st = self.lock();
        if !st.spilled && st.held + events.len() <= self.limit {
            st.hold(&events);
            if let Some(keys) = &mut st.catching_up {
                keys.extend(events.iter().map(|e| e.key.clone()));
            }
            send(events);
        } else if st.spilled {
            // Recorded in the store: a read can take it unless its customer's quota is shut.
            if events.iter().any(|e| self.open(&st, &e.sender)) {
                let was_starved = st.starved;
                self.may_have_more(&mut st);
                drop(st);
                if was_starved {
                    self.wake.notify_one();
                }
            }
        } else {
            st.spilled = true;
            drop(st);
            tracing::warn!(
                channel = "messenger",
                limit = self.limit,
                "events in memory at the limit: new events wait in the store until the worker catches up"
            );
            self.wake.notify_one();
        }
    }

    /// The worker read `events` back from the store.
    pub(super) fn took_from_store(&self, events: &[InboundEvent]) {
        self.lock().hold(events);
    }

    /// The event `key` from `sender` held in memory is done (processed, skipped, or dropped by
    /// a failed lane).
    pub(super) fn done(&self, key: &str, sender: &str) {
        let mut st = self.lock();
        if forget(&mut st.in_memory, key) {
            let shut = !self.open(&st, sender);
            forget(&mut st.senders, sender);
            st.held -= 1;
            if shut && self.open(&st, sender) {
                // This customer's quota just opened again.
                self.may_have_more(&mut st);
            }
        }
        if self.read_due(&st) {
            drop(st);
            self.wake.notify_one();
        }
    }

    /// A failed lane dropped the event `key` from `sender` without running it: it is done here
    /// and stays pending in the store, to be read again ([`Backlog::spill`]).
    pub(super) fn dropped_unrun(&self, key: &str, sender: &str) {
        // Noted before it leaves memory, so that a read finding it pending knows it; counted
        // as a change after, so that a read that left it out as held is not the last.
        self.lock().dropped.insert(key.to_owned());
        self.done(key, sender);
        let mut st = self.lock();
        self.may_have_more(&mut st);
        if self.read_due(&st) {
            drop(st);
            self.wake.notify_one();
        }
    }

    /// The keys [`Backlog::dropped_unrun`] noted since the last call.
    pub(super) fn take_dropped(&self) -> HashSet<String> {
        std::mem::take(&mut self.lock().dropped)
    }

    /// Whether the worker should read the store now.
    pub(super) fn should_read_back(&self) -> bool {
        self.read_due(&self.lock())
    }

    /// The keys of the events held in memory now, which a read of the store leaves out.
    pub(super) fn keys_in_memory(&self) -> HashSet<String> {
        self.lock().in_memory.keys().cloned().collect()
    }

    /// The worker found every pending event: hand new ones over again, noting their keys
    /// until [`Backlog::caught_up`].
    pub(super) fn resume(&self) {
        let mut st = self.lock();
        st.spilled = false;
        st.starved = false;
        st.catching_up = Some(HashSet::new());
    }

    /// The keys handed over since [`Backlog::resume`]; stops noting them.
    pub(super) fn caught_up(&self) -> HashSet<String> {
        self.lock().catching_up.take().unwrap_or_default()
    }

    /// Events may be in the store that nobody will hand over (a read after the switch failed,
    /// or a recording whose flush failed and whose redelivery is then a duplicate): read the
    /// store again once the worker has worked through what it holds.
    pub(super) fn spill(&self) {
        let mut st = self.lock();
        st.spilled = true;
        // Counted as a change too: a read running now may have left those events out.
        self.may_have_more(&mut st);
        st.catching_up = None;
        drop(st);
        self.wake.notify_one();
    }

    pub(super) async fn woken(&self) {
        self.wake.notified().await
    }

    /// Events held in memory now.
    pub(super) fn in_memory(&self) -> usize {
        self.lock().held
    }
}

impl State {
    fn hold(&mut self, events: &[InboundEvent]) {
        for e in events {
            *self.in_memory.entry(e.key.clone()).or_default() += 1;
            *self.senders.entry(e.sender.clone()).or_default() += 1;
        }
        self.held += events.len();
    }
}

/// Counts one `key` less in `counts`; false if it was not there.
fn forget(counts: &mut HashMap<String, u32>, key: &str) -> bool {
    let Some(n) = counts.get_mut(key) else {
        return false;
    };
    *n -= 1;
    if *n == 0 {
        counts.remove(key);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(key: String, sender: String, timestamp_ms: i64) -> InboundEvent {
        InboundEvent {
            key,
            sender,
            timestamp_ms,
            payload: serde_json::json!({}).into(),
        }
    }

    /// Events `k<i>`, each from its own customer `s<i>`.
    fn events(n: usize) -> Vec<InboundEvent> {
        (0..n)
            .map(|i| event(format!("k{i}"), format!("s{i}"), i as i64))
            .collect()
    }

    /// `n` events of one customer.
    fn events_of(sender: &str, n: usize) -> Vec<InboundEvent> {
        (0..n)
            .map(|i| event(format!("{sender}{i}"), sender.into(), i as i64))
            .collect()
    }

    /// `done` for the event `k<i>` of [`events`], whose sender is `s<i>`.
    fn done(b: &Backlog, key: &str) {
        b.done(key, &format!("s{}", &key[1..]));
    }

    #[test]
    fn a_read_takes_a_sixteenth_of_the_limit_of_one_customer_and_more_once_they_are_down_to_half() {
        let b = Backlog::new(64); // 4 each, more again at 2 or fewer
        let of = |sender: &str| b.quota().0.of(sender);
        b.took_from_store(&events_of("a", 2));
        assert_eq!((of("a"), of("b")), (2, 4), "counting what they hold");
        b.took_from_store(&events_of("a", 4)[2..]);
        assert_eq!(of("a"), 0, "at the quota");
        b.done("a3", "a");
        assert_eq!(of("a"), 0, "3 held: not yet, a read would take one");
        b.done("a2", "a");
        assert_eq!(of("a"), 2, "down to half: a batch");
        assert_eq!(Backlog::new(4).quota().0.of("x"), 1, "at least one");
    }

    #[test]
    fn a_read_that_found_nothing_waits_until_a_customer_it_passed_over_is_open_again_or_one_writes()
    {
        let b = Backlog::new(64); // 4 each, more again at 2 or fewer
        b.took_from_store(&events_of("a", 4));
        assert!(b.should_read_back(), "spilled, little held");
        let (_, since) = b.quota();
        b.found_nothing(since);
        assert!(!b.should_read_back(), "no scan of the inbox in a loop");
        b.done("a3", "a");
        assert!(!b.should_read_back(), "nothing more to take yet");
        b.done("a2", "a");
        assert!(b.should_read_back(), "a's quota is open again");
        let (_, since) = b.quota();
        b.found_nothing(since);
        let mut sent = 0;
        b.hand_over(events_of("a", 1), |e| sent += e.len());
        assert!(
            b.should_read_back(),
            "still open (2 held): a new event of theirs can be read"
        );
        b.took_from_store(&events_of("z", 4));
        let (_, since) = b.quota();
        b.found_nothing(since);
        b.hand_over(events_of("z", 1), |e| sent += e.len());
        assert!(
            !b.should_read_back(),
            "one more from a shut customer: no scan for it"
        );
        b.hand_over(events(1), |e| sent += e.len());
        assert_eq!(sent, 0, "still spilled: recorded in the store");
        assert!(b.should_read_back(), "someone else wrote");
        // Something happened while the read ran: it must not be missed.
        let (_, since) = b.quota();
        b.spill();
        b.found_nothing(since);
        assert!(b.should_read_back());
    }

    #[test]
    fn the_hand_off_spills_at_the_limit_and_stays_spilled_until_the_worker_resumes_it() {
        let b = Backlog::new(3);
        let mut sent = 0;
        b.hand_over(events(1), |e| sent += e.len());
        assert_eq!(sent, 0, "spilled at start: the store is read first");
        assert!(b.should_read_back());
        b.resume();
        b.hand_over(events(2), |e| sent += e.len());
        b.hand_over(events(2), |e| sent += e.len());
        assert_eq!(
            (sent, b.in_memory()),
            (2, 2),
            "2 + 2 > 3: the second batch waits"
        );
        b.hand_over(events(1), |e| sent += e.len());
        assert_eq!(
            sent, 2,
            "spilled: even a batch that would fit waits in the store"
        );
        done(&b, "k0");
        assert!(
            b.should_read_back(),
            "one customer holds what is left, with room for a read"
        );
        done(&b, "k1");
        assert!(b.should_read_back());
        b.took_from_store(&events(3));
        assert!(!b.should_read_back());
        for k in ["k0", "k1", "k2"] {
            done(&b, k);
        }
        b.resume();
        b.hand_over(events(3), |e| sent += e.len());
        assert_eq!((sent, b.in_memory()), (5, 3));
        let mut keys: Vec<_> = b.caught_up().into_iter().collect();
        keys.sort();
        assert_eq!(
            keys,
            ["k0", "k1", "k2"],
            "what the second read must leave out"
        );
        for k in ["k0", "k1", "k2"] {
            done(&b, k);
        }
        b.hand_over(events(1), |e| sent += e.len());
        assert!(b.caught_up().is_empty(), "noted only until caught up");
        assert!(!b.should_read_back(), "not spilled");
        b.spill();
        assert!(b.should_read_back());
    }

    #[test]
    fn while_spilled_the_store_is_read_again_at_a_quarter_of_the_limit_leaving_out_what_is_held() {
        let b = Backlog::new(8);
        b.took_from_store(&events(8));
        assert!(!b.should_read_back());
        for k in ["k0", "k1", "k2", "k3", "k4"] {
            done(&b, k);
        }
        assert!(
            !b.should_read_back(),
            "3 held, above the low-water mark of 2"
        );
        done(&b, "k5");
        assert!(
            b.should_read_back(),
            "2 held: read more before they are done"
        );
        let mut held: Vec<_> = b.keys_in_memory().into_iter().collect();
        held.sort();
        assert_eq!(held, ["k6", "k7"], "what the next read leaves out");
    }

    #[test]
    fn an_event_held_twice_counts_until_both_copies_are_done() {
        let b = Backlog::new(4);
        b.resume();
        b.hand_over(events(1), |_| {});
        b.took_from_store(&events(1));
        assert_eq!(b.in_memory(), 2);
        done(&b, "k0");
        assert_eq!(b.keys_in_memory().len(), 1, "one copy still held");
        done(&b, "k0");
        done(&b, "k0");
        assert_eq!(
            b.in_memory(),
            0,
            "a done beyond the copies held changes nothing"
        );
        assert!(b.keys_in_memory().is_empty());
        assert!(
            !b.should_read_back(),
            "no customer held: not a reason to read while not spilled"
        );
    }

    #[test]
    fn while_spilled_a_few_customers_holding_much_of_the_limit_do_not_stop_the_reads() {
        // 128 events of one customer and 64 of another fill the limit of 256; the others' are
        // done. Two customers hold everything: their events run one at a time, maybe hanging.
        let b = Backlog::new(256);
        b.took_from_store(&events_of("x", 128));
        b.took_from_store(&events_of("y", 64));
        b.took_from_store(&events(64));
        assert!(!b.should_read_back(), "full");
        for i in 0..63 {
            done(&b, &format!("k{i}"));
        }
        assert!(
            !b.should_read_back(),
            "three customers (at most 256 / 64), but the room (63) is under a quarter"
        );
        done(&b, "k63");
        assert!(
            b.should_read_back(),
            "192 held, above the low-water mark of 64, but by two customers only"
        );
    }
}
