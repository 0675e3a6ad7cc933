//! Background processing: one lane per customer (PSID) handles that customer's events one at a
//! time, in timestamp order; different customers run in parallel. A lane runs the engine,
//! records the outcome and the rendered replies in one durable step, then delivers the replies
//! in order, retrying transient Send API failures. Anything not finished stays in the store and
//! is picked up again after a restart.

use super::delivery::{Delivery, RetryPolicy};
use super::profile::Profiles;
use super::send_api::SendApi;
use super::{render, webhook, Conversation};
use crate::domain::{Channel, ChatIdentity};
use crate::flows::{Input, Reply};
use crate::store::{
    collecting, run_durably, EventQueue, InboundEvent, OutboundMessage, ReplyId, StoreError,
};
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
}

impl Worker {
    pub(super) fn new(
        conversation: Arc<dyn Conversation>,
        queue: Arc<dyn EventQueue>,
        send_api: SendApi,
        profiles: Profiles,
        retry: RetryPolicy,
    ) -> Self {
        Worker {
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

    /// Resumes what a previous run left, then takes newly recorded events from `intake` until
    /// `shutdown`; then waits for every lane to reach a safe point.
    pub(super) async fn run(
        self: Arc<Self>,
        mut intake: UnboundedReceiver<Vec<InboundEvent>>,
        mut held: tokio::sync::watch::Receiver<bool>,
        shutdown: CancellationToken,
    ) {
        let mut lanes = JoinSet::new();
        // Events recorded before the snapshot may also sit in `intake`; they must run once.
        let resumed = self.resume(&mut lanes, &shutdown).await;
        let mut prune =
            tokio::time::interval_at(tokio::time::Instant::now() + PRUNE_EVERY, PRUNE_EVERY);
        loop {
            let holding = *held.borrow_and_update();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                // Held: new events wait in the channel (and, durably, in the inbox).
                Ok(()) = held.changed() => {}
                batch = intake.recv(), if !holding => {
                    let Some(events) = batch else { break };
                    for event in events.into_iter().filter(|e| !resumed.contains(&e.key)) {
                        self.enqueue(Job::Process(event), &mut lanes, &shutdown);
                    }
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

    async fn resume(
        self: &Arc<Self>,
        lanes: &mut JoinSet<()>,
        shutdown: &CancellationToken,
    ) -> HashSet<String> {
        let outbox = blocking(&self.queue, |q| q.pending_outbound()).await.unwrap_or_else(|e| {
            tracing::error!(channel = "messenger", error = %chain(&e), "cannot read pending replies");
            Vec::new()
        });
        let inbox = blocking(&self.queue, |q| q.pending_inbound()).await.unwrap_or_else(|e| {
            tracing::error!(channel = "messenger", error = %chain(&e), "cannot read pending events");
            Vec::new()
        });
        if !outbox.is_empty() || !inbox.is_empty() {
            tracing::info!(
                channel = "messenger",
                replies = outbox.len(),
                events = inbox.len(),
                "resuming unfinished work"
            );
        }
        let keys = inbox.iter().map(|e| e.key.clone()).collect();
        for (id, message) in outbox {
            self.enqueue(Job::Deliver(id, message), lanes, shutdown);
        }
        for event in inbox {
            self.enqueue(Job::Process(event), lanes, shutdown);
        }
        keys
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
            match job {
                Job::Deliver(id, message) => self.delivery.deliver(id, message, &shutdown).await,
                Job::Process(event) => self.process(event, &shutdown).await,
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
            match run_durably(self.queue.as_ref(), |q| q.finish_inbound(&key, queued)).await {
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
        let profile = self.profiles.get(&event.sender).await;
        let input = Input {
            who,
            profile: profile.clone(),
            event: input,
            request_id: Some(event.key.clone()),
        };
        // On its own task, so that even a bug that panics is answered (with the apology) and
        // finishes the event instead of taking the customer's lane down with it. Collecting:
        // the turn's store operations do not wait for their flushes one by one, because
        // nothing is sent before `finish_inbound`, whose own (later) flush covers them all.
        let conversation = Arc::clone(&self.conversation);
        let run = tokio::spawn(
            async move { collecting(conversation.converse(input)).await.0 }
                .instrument(tracing::Span::current()),
        );
        match run.await {
            Ok(Ok(turn)) => {
                if let Some(member) = turn.member {
                    tracing::Span::current().record("member.id", tracing::field::display(member));
                }
                turn.replies
            }
            Ok(Err(e)) => {
                tracing::error!(error = %chain(&e), "engine failed; answering with an apology");
                vec![self.conversation.apology(&profile)]
            }
            Err(e) => {
                tracing::error!(error = %e, "engine task failed; answering with an apology");
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

/// Error message with its causes, for logs. Our errors never carry tokens or URLs with them.
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Frees a lane's slot if its task panics, so the customer's later events get a new lane.
struct LaneGuard<'a> {
    worker: &'a Worker,
    customer: &'a str,
}

impl Drop for LaneGuard<'_> {
    fn drop(&mut self) {
        // After a normal return the slot is already gone (and may belong to a new lane).
        if std::thread::panicking() {
            if let Ok(mut map) = self.worker.lanes.lock() {
                map.remove(self.customer);
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
