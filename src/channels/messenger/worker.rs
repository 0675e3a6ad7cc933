//! Background processing: one lane per customer (PSID) handles that customer's events one at a
//! time, in timestamp order; different customers run in parallel, at most
//! `messenger.max_turns_at_once` of them working at once (`turns.rs`). A lane runs the engine,
//! records the outcome and the rendered replies in one durable step, then delivers the replies
//! in order, retrying transient Send API failures. Anything not finished stays in the store and
//! is picked up again after a restart. How many events it holds in memory is bounded; the rest
//! wait in the store and are read back in order (`backlog.rs`).

use super::backlog::Backlog;
use super::delivery::{Delivery, RetryPolicy};
use super::profile::Profiles;
use super::send_api::SendApi;
use super::{render, webhook, Conversation};
use crate::domain::{Channel, ChatIdentity};
use crate::flows::{Input, Reply};
use crate::store::{
    collecting, run_durably, EventQueue, InboundEvent, OutboundMessage, ReplyId, SenderQuota,
    StoreError,
};
use crate::telemetry::chain;
use crate::turns::{waiting, Turns};
use futures_util::FutureExt;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// How long processed event keys are kept to spot redeliveries. Meta gives up redelivering
/// (and unsubscribes the app) after an hour of failures, so a week is ample.
const KEEP_KEYS: chrono::Duration = chrono::Duration::days(7);
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How long to wait before reading the store again after a failed read.
const READ_BACK_RETRY: Duration = Duration::from_secs(1);

/// Work for one customer's lane.
enum Job {
    /// A reply queued before a restart.
    Deliver(ReplyId, OutboundMessage),
    Process(InboundEvent),
}

impl Job {
    fn customer(&self) -> &str {
        match self {
            Job::Deliver(_, m) => &m.recipient,
            Job::Process(e) => &e.sender,
        }
    }
}

pub(super) struct Worker {
    pub(super) conversation: Arc<dyn Conversation>,
    pub(super) queue: Arc<dyn EventQueue>,
    delivery: Delivery,
    profiles: Profiles,
    /// Queued jobs per customer; a customer has an entry exactly while their lane runs. A std
    /// mutex: it is held for a few pointer moves and never across an await.
    lanes: Mutex<HashMap<String, VecDeque<Job>>>,
    /// Counts the `Job::Process` held here (queued or running) against the limit.
    backlog: Arc<Backlog>,
    /// Bounds how many lanes work at once (`turns.rs`).
    turns: Turns,
}

impl Worker {
    pub(super) fn new(
        conversation: Arc<dyn Conversation>,
        queue: Arc<dyn EventQueue>,
        send_api: SendApi,
        profiles: Profiles,
        retry: RetryPolicy,
        backlog: Arc<Backlog>,
        turns: Turns,
    ) -> Self {
        Worker {
            backlog,
            turns,
            profiles,
            delivery: Delivery {
                send_api,
                queue: Arc::clone(&queue),
                retry,
            },
            conversation,
            queue,
            lanes: Mutex::new(HashMap::new()),
        }
    }

    /// Resumes what a previous run left, then takes newly recorded events from `intake` (or,
    /// while the hand-off is spilled, from the store) until `shutdown`; then waits for every
    /// lane to reach a safe point.
    pub(super) async fn run(
        self: Arc<Self>,
        mut intake: UnboundedReceiver<Vec<InboundEvent>>,
        mut held: tokio::sync::watch::Receiver<bool>,
        shutdown: CancellationToken,
    ) {
        let mut lanes = JoinSet::new();
        // Replies first; the events pending in the store follow: the hand-off starts spilled.
        self.resume_replies(&mut lanes, &shutdown).await;
        let mut prune =
            tokio::time::interval_at(tokio::time::Instant::now() + PRUNE_EVERY, PRUNE_EVERY);
        let mut reads = ReadBacks::default();
        // Taken while processing was held back: see `hand_over`.
        let mut parked = Vec::new();
        loop {
            let holding = *held.borrow_and_update();
            if !holding && !parked.is_empty() {
                let let_go = std::mem::take(&mut parked);
                self.hand_over(let_go, &held, &mut parked, &mut lanes, &shutdown);
            }
            if !holding && !shutdown.is_cancelled() && self.backlog.should_read_back() {
                let events = self.read_back(&shutdown, &mut reads).await;
                self.hand_over(events, &held, &mut parked, &mut lanes, &shutdown);
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                // Held: new events wait in the channel (up to the limit) and in the store.
                Ok(()) = held.changed() => {}
                () = self.backlog.woken() => {}
                batch = intake.recv(), if !holding => {
                    let Some(events) = batch else { break };
                    self.hand_over(events, &held, &mut parked, &mut lanes, &shutdown);
                }
                Some(done) = lanes.join_next() => {
                    if let Err(e) = done {
                        tracing::error!(channel = "messenger", error = %e, "a customer lane failed");
                    }
                }
                _ = prune.tick() => self.prune().await,
            }
        }
        while lanes.join_next().await.is_some() {}
        tracing::info!(channel = "messenger", "messenger worker stopped");
    }

    async fn resume_replies(
        self: &Arc<Self>,
        lanes: &mut JoinSet<()>,
        shutdown: &CancellationToken,
    ) {
        let outbox = blocking(&self.queue, |q| q.pending_outbound()).await.unwrap_or_else(|e| {
            tracing::error!(channel = "messenger", error = %chain(&e), "cannot read pending replies");
            Vec::new()
        });
        if !outbox.is_empty() {
            tracing::info!(
                channel = "messenger",
                replies = outbox.len(),
                "resuming unsent replies"
            );
        }
        for (id, message) in outbox {
            self.enqueue(Job::Deliver(id, message), lanes, shutdown);
        }
    }

    /// Starts a lane's work on `events`, unless processing is held back now: the hold may have
    /// come while they were on their way (a read of the store in flight, or a batch ready in the
    /// same poll as the hold, where `select!` picks either), and an event that came after the
    /// operator's hold waits for the let-go. They wait in memory, still counted by the backlog.
    fn hand_over(
        self: &Arc<Self>,
        events: Vec<InboundEvent>,
        held: &tokio::sync::watch::Receiver<bool>,
        parked: &mut Vec<InboundEvent>,
        lanes: &mut JoinSet<()>,
        shutdown: &CancellationToken,
    ) {
        if *held.borrow() {
            parked.extend(events);
            return;
        }
        for event in events {
            self.enqueue(Job::Process(event), lanes, shutdown);
        }
    }

    /// Reads pending events back from the store while the hand-off is spilled (and at start),
    /// holding at most the limit; resumes the hand-off once one read found them all. Returns
    /// the events to process. The order argument is in `backlog.rs`.
    async fn read_back(
        self: &Arc<Self>,
        shutdown: &CancellationToken,
        reads: &mut ReadBacks,
    ) -> Vec<InboundEvent> {
        let started = std::time::Instant::now();
        // Taken before reading: whatever finishes meanwhile is no longer pending (or is stuck,
        // which `ReadBacks` tells by this same set).
        let held = self.backlog.keys_in_memory();
        let room = self.backlog.limit().saturating_sub(held.len()).max(1);
        let skip: Arc<HashSet<String>> = Arc::new(reads.stuck.union(&held).cloned().collect());
        let (quota, since) = self.backlog.quota();
        let first = {
            let skip = Arc::clone(&skip);
            blocking(&self.queue, move |q| {
                q.pending_inbound_first(room, &skip, &quota)
            })
            .await
        };
        let mut spilled = true;
        let events = match first {
            Ok((events, true)) => events,
            Ok((_, false)) => {
                self.backlog.resume();
                spilled = false;
                // Read again: what was recorded during the first read was not handed over. Its
                // size is the limit plus what arrived meanwhile, less what was handed over.
                // No quota: what it leaves would never be read, while the customer's newer
                // events are handed over.
                let all = move |q: &dyn EventQueue| {
                    q.pending_inbound_first(usize::MAX, &skip, &SenderQuota::unlimited())
                };
                match blocking(&self.queue, all).await {
                    Ok((events, _)) => {
                        let handed = self.backlog.caught_up();
                        events
                            .into_iter()
                            .filter(|e| !handed.contains(&e.key))
                            .collect()
                    }
                    Err(e) => {
                        self.backlog.spill();
                        return self.read_back_failed(&e, shutdown).await;
                    }
                }
            }
            Err(e) => return self.read_back_failed(&e, shutdown).await,
        };
        // Nothing to take though more wait: all of it is customers' at their quota. (A read
        // whose events were all stuck is no such sign: the next one leaves them out.)
        if events.is_empty() && spilled {
            self.backlog.found_nothing(since);
        }
        // After the read: a lane that failed during it dropped events that the read then
        // found (or left out as held); either way they are still to run, not stuck.
        reads.forget(&self.backlog.take_dropped());
        let events = reads.leave_out_stuck(events, &held);
        if !events.is_empty() {
            tracing::info!(
                channel = "messenger",
                events = events.len(),
                read_ms = started.elapsed().as_millis() as u64,
                "processing events waiting in the store"
            );
        }
        self.backlog.took_from_store(&events);
        events
    }

    /// What a read back whose store read failed returns: nothing to hand over, after logging
    /// the failure and pausing before the next try.
    async fn read_back_failed(
        &self,
        e: &StoreError,
        shutdown: &CancellationToken,
    ) -> Vec<InboundEvent> {
        tracing::error!(channel = "messenger", error = %chain(e), "cannot read pending events; retrying");
        pause(READ_BACK_RETRY, shutdown).await;
        Vec::new()
    }

    fn enqueue(self: &Arc<Self>, job: Job, lanes: &mut JoinSet<()>, shutdown: &CancellationToken) {
        let customer = job.customer().to_owned();
        let start = {
            let mut map = self.lanes.lock().expect("lane map poisoned");
            let start = !map.contains_key(&customer);
            insert_in_order(map.entry(customer.clone()).or_default(), job);
            start
        };
        if start {
            lanes.spawn(Arc::clone(self).lane(customer, shutdown.clone()));
        }
    }

    async fn lane(self: Arc<Self>, customer: String, shutdown: CancellationToken) {
        let _guard = LaneGuard {
            worker: &self,
            customer: &customer,
        };
        loop {
            let job = {
                let mut map = self.lanes.lock().expect("lane map poisoned");
                let next = map.get_mut(&customer).and_then(VecDeque::pop_front);
                // Deciding "empty, so stop" under the same lock as `enqueue` means a job can
                // never be left in a queue whose lane has ended.
                match next {
                    Some(job) if !shutdown.is_cancelled() => job,
                    _ => {
                        map.remove(&customer);
                        return;
                    }
                }
            };
            // A job whose place came only after shutdown has not started: like the jobs
            // queued behind it, it stays in the store for the next start.
            match job {
                Job::Deliver(id, message) => {
                    let deliver = async {
                        if !shutdown.is_cancelled() {
                            self.delivery.deliver(id, message, &shutdown).await;
                        }
                    };
                    self.turns.take(deliver).await
                }
                Job::Process(event) => {
                    // Counted done even if processing panics.
                    let _done = Done {
                        backlog: &self.backlog,
                        key: event.key.clone(),
                        sender: event.sender.clone(),
                    };
                    let process = async {
                        if !shutdown.is_cancelled() {
                            self.process(event, &shutdown).await;
                        }
                    };
                    self.turns.take(process).await
                }
            }
        }
    }

    /// Runs the engine on one event, records it processed together with its replies, and
    /// delivers them. The engine call and the recording are not interrupted by shutdown: an
    /// event must not be half done.
    async fn process(&self, event: InboundEvent, shutdown: &CancellationToken) {
        let span = tracing::info_span!("messenger_event", channel = "messenger", messenger.psid = %event.sender,
            event.key = %event.key, member.id = tracing::field::Empty);
        async {
            // An event can reach its lane twice when the hand-off resumes (`backlog.rs`); the
            // copies queue in the same lane, so the later one finds the earlier one done.
            match self.queue.inbound_finished(&event.key) {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %chain(&e), "cannot tell whether the event was processed; processing it"),
            }
            let replies = self.answer(&event).await;
            let outbound: Vec<OutboundMessage> = replies
                .iter()
                .flat_map(|r| render::render(&event.sender, r))
                .map(|body| OutboundMessage {
                    recipient: event.sender.clone(),
                    body,
                    in_reply_to: event.key.clone(),
                    attempts: 0,
                })
                .collect();
            let (key, queued) = (event.key.clone(), outbound.clone());
            let record = run_durably(self.queue.as_ref(), |q| q.finish_inbound(&key, queued));
            match waiting(record).await {
                Ok(ids) => {
                    for (id, message) in ids.into_iter().zip(outbound) {
                        if shutdown.is_cancelled() {
                            return; // the rest stays queued for the next start
                        }
                        self.delivery.deliver(id, message, shutdown).await;
                    }
                }
                // The write may have landed before the flush failed: then the event is done and
                // its replies go out after a restart; otherwise the event runs again then.
                Err(e) => tracing::error!(error = %chain(&e), "cannot confirm the processed event is on disk; it is finished after a restart"),
            }
        }
        .instrument(span)
        .await
    }

    async fn answer(&self, event: &InboundEvent) -> Vec<Reply> {
        let Some(input) = webhook::input_of(&event.payload) else {
            return Vec::new();
        };
        let who = match ChatIdentity::new(Channel::Messenger, &event.sender) {
            Ok(who) => who,
            Err(e) => {
                tracing::warn!(error = %e, "event with an unusable sender id ignored");
                return Vec::new();
            }
        };
        let profile = waiting(self.profiles.get(&event.sender)).await;
        let input = Input {
            who,
            profile: profile.clone(),
            event: input,
            request_id: Some(event.key.clone()),
        };
        // Unwinding caught, so that even a bug that panics is answered (with the apology) and
        // finishes the event instead of taking the customer's lane down with it. Collecting:
        // the turn's store operations do not wait for their flushes one by one, because
        // nothing is sent before `finish_inbound`, whose own (later) flush covers them all.
        // `converse` is called inside the future, so a panic before it returns one is caught too.
        let run = std::panic::AssertUnwindSafe(collecting(async {
            self.conversation.converse(input).await
        }));
        match run.catch_unwind().await {
            Ok((Ok(turn), _)) => {
                if let Some(member) = turn.member {
                    tracing::Span::current().record("member.id", tracing::field::display(member));
                }
                turn.replies
            }
            Ok((Err(e), _)) => {
                tracing::error!(error = %chain(&e), "engine failed; answering with an apology");
                vec![self.conversation.apology(&profile)]
            }
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("(no message)");
                tracing::error!(panic = what, "engine panicked; answering with an apology");
                vec![self.conversation.apology(&profile)]
            }
        }
    }

    async fn prune(&self) {
        let before = chrono::Utc::now() - KEEP_KEYS;
        match blocking(&self.queue, move |q| q.prune_inbound(before)).await {
            Ok(n) => tracing::debug!(channel = "messenger", pruned = n, "old event keys pruned"),
            Err(e) => {
                tracing::warn!(channel = "messenger", error = %chain(&e), "pruning event keys failed")
            }
        }
    }
}

/// Keeps each customer's events in timestamp order (Meta may redeliver out of order), behind
/// any replies still to be delivered from before a restart.
fn insert_in_order(queue: &mut VecDeque<Job>, job: Job) {
    let Job::Process(event) = &job else {
        queue.push_back(job);
        return;
    };
    let mut at = queue.len();
    while at > 0 && matches!(&queue[at - 1], Job::Process(e) if e.timestamp_ms > event.timestamp_ms)
    {
        at -= 1;
    }
    queue.insert(at, job);
}

/// What the worker remembers between reads of the store.
#[derive(Default)]
struct ReadBacks {
    /// The keys read back that were still in memory at the last read (or read by it): any of
    /// them pending at a later read, and no longer in memory then, ran without finishing.
    last: HashSet<String>,
    /// Events read back, run, and still pending at the next read: their processing could not
    /// be recorded (a failing store, a lane that panicked). Left to the next start, as before
    /// this bound existed, instead of running them again and again (and, being the oldest,
    /// ahead of everyone else).
    stuck: HashSet<String>,
}

impl ReadBacks {
    /// `keys` were read back but never ran (a failed lane dropped them): still to run when
    /// found pending.
    fn forget(&mut self, keys: &HashSet<String>) {
        self.last.retain(|k| !keys.contains(k));
    }

    /// `events` were read while `held` were in memory (and left out of the read).
    fn leave_out_stuck(
        &mut self,
        events: Vec<InboundEvent>,
        held: &HashSet<String>,
    ) -> Vec<InboundEvent> {
        let (stuck, fresh): (Vec<_>, Vec<_>) =
            events.into_iter().partition(|e| self.last.contains(&e.key));
        for e in stuck {
            tracing::error!(channel = "messenger", event.key = %e.key, messenger.psid = %e.sender,
                "an event read back from the store did not finish; it is left for the next start");
            self.stuck.insert(e.key);
        }
        self.last.retain(|k| held.contains(k));
        self.last.extend(fresh.iter().map(|e| e.key.clone()));
        fresh
    }
}

/// Sleeps for `d`, or less if the service is stopping.
async fn pause(d: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(d) => {}
        () = shutdown.cancelled() => {}
    }
}

/// Counts one event held in memory as done when dropped.
struct Done<'a> {
    backlog: &'a Backlog,
    key: String,
    sender: String,
}

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.backlog.done(&self.key, &self.sender);
    }
}

/// Frees a lane's slot if its task panics, so the customer's later events get a new lane; the
/// events it still held, never run, are dropped from memory and read again from the store
/// (the one that panicked is stuck if it was read back, see [`ReadBacks`]).
struct LaneGuard<'a> {
    worker: &'a Worker,
    customer: &'a str,
}

impl Drop for LaneGuard<'_> {
    fn drop(&mut self) {
        // After a normal return the slot is already gone (and may belong to a new lane).
        if std::thread::panicking() {
            // The events it drops stay pending in the store; a read that resumed the hand-off
            // meanwhile left them out as held, so make sure one reads them again. Spilled
            // first, so that new events wait in the store behind them rather than being handed
            // over. (A batch already handed over and not yet queued can still start a lane
            // ahead of them: see docs/limits.md.)
            self.worker.backlog.spill();
            if let Ok(mut map) = self.worker.lanes.lock() {
                if let Some(queued) = map.remove(self.customer) {
                    for job in &queued {
                        if let Job::Process(e) = job {
                            self.worker.backlog.dropped_unrun(&e.key, &e.sender);
                        }
                    }
                }
            }
        }
    }
}

/// Runs a (blocking) queue operation on the blocking pool, inside the current span.
pub(super) async fn blocking<T: Send + 'static>(
    queue: &Arc<dyn EventQueue>,
    f: impl FnOnce(&dyn EventQueue) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let queue = Arc::clone(queue);
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(|| f(queue.as_ref())))
        .await
        .map_err(|e| StoreError::Backend(Box::new(e)))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(keys: &[&str]) -> Vec<InboundEvent> {
        keys.iter()
            .map(|k| InboundEvent {
                key: (*k).into(),
                sender: "s".into(),
                timestamp_ms: 0,
                payload: serde_json::json!({}).into(),
            })
            .collect()
    }

    fn keys(events: &[InboundEvent]) -> Vec<&str> {
        events.iter().map(|e| e.key.as_str()).collect()
    }

    fn held(keys: &[&str]) -> HashSet<String> {
        keys.iter().map(|k| (*k).to_owned()).collect()
    }

    #[test]
    fn an_event_read_back_is_stuck_when_a_later_read_finds_it_pending_after_it_left_memory() {
        let mut reads = ReadBacks::default();
        let first = reads.leave_out_stuck(read(&["a", "b"]), &held(&[]));
        assert_eq!(keys(&first), ["a", "b"]);
        // A refill while "a" still runs: the read left it out; "b" finished.
        let second = reads.leave_out_stuck(read(&["c"]), &held(&["a"]));
        assert_eq!(keys(&second), ["c"]);
        // "a" left memory without finishing: the next read finds it pending again.
        let third = reads.leave_out_stuck(read(&["a", "d"]), &held(&["c"]));
        assert_eq!(keys(&third), ["d"], "run once, not again");
        assert!(reads.stuck.contains("a"));
        assert!(
            !reads.last.contains("b"),
            "forgotten once done and out of memory"
        );
    }

    #[test]
    fn an_event_read_back_that_a_failed_lane_dropped_unrun_is_not_stuck() {
        let mut reads = ReadBacks::default();
        reads.leave_out_stuck(read(&["a", "b"]), &held(&[]));
        // The lane panicked on "a" and dropped "b" before running it.
        reads.forget(&held(&["b"]));
        let next = reads.leave_out_stuck(read(&["a", "b"]), &held(&[]));
        assert_eq!(keys(&next), ["b"]);
        assert!(reads.stuck.contains("a") && !reads.stuck.contains("b"));
    }
}
