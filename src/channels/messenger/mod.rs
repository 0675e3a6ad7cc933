//! Messenger Platform: webhook intake, durable per-customer processing, Send API delivery.
//!
//! Flow of one message: `handlers::receive` checks the signature on the raw body, parses it
//! (`webhook`), records the events in the [`EventQueue`] (de-duplicated by `<page>:<mid>`) and
//! answers 200 at once; the `worker` runs the engine per customer, renders the replies
//! (`render`), records them together with "event done", and delivers them (`send_api`).
//! No business rules live here, and nothing in this module imports the store backend.

mod backlog;
mod delivery;
mod handlers;
mod news;
mod profile;
mod render;
mod send_api;
mod webhook;
mod worker;

pub use delivery::RetryPolicy;
pub use handlers::{accept_notification, Refused};
pub use send_api::SendError;
pub use webhook::{input_of, parse_notification, WebhookError};

use super::order_news::NewsSender;
use super::window::InboundWindow;
use crate::config::MessengerSettings;
use crate::domain::{Channel, Profile};
use crate::flows::{Engine, Input, Reply, Turn};
use crate::limits::BodyLimit;
use crate::program::ProgramError;
use crate::store::{EventQueue, InboundEvent};
use crate::turns::Turns;
use actix_web::web;
use backlog::Backlog;
use futures_util::future::BoxFuture;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use worker::Worker;

/// The engine as the worker sees it: one input in, one turn out. A seam so that the channel can
/// be tested against a scripted conversation.
pub trait Conversation: Send + Sync + 'static {
    fn converse(&self, input: Input) -> BoxFuture<'_, Result<Turn, ProgramError>>;

    /// The reply when `converse` failed, so no input goes unanswered.
    fn apology(&self, profile: &Profile) -> Reply {
        let _ = profile;
        Reply {
            text: "Sorry, something went wrong on our side. Please try again in a few minutes."
                .into(),
            ..Reply::default()
        }
    }
}

impl Conversation for Engine {
    fn converse(&self, input: Input) -> BoxFuture<'_, Result<Turn, ProgramError>> {
        Box::pin(Engine::converse(self, input))
    }

    fn apology(&self, profile: &Profile) -> Reply {
        Engine::apology(self, profile)
    }
}

/// The Messenger channel: routes for the webhook and the background worker behind them.
pub struct Messenger {
    settings: MessengerSettings,
    worker: Arc<Worker>,
    /// Newly recorded events, from the webhook handler to the worker; unbounded because
    /// `backlog` bounds what goes in.
    intake: mpsc::UnboundedSender<Vec<InboundEvent>>,
    backlog: Arc<Backlog>,
    /// Taken by [`Messenger::spawn`]; until then new events wait in the channel.
    intake_rx: Mutex<Option<mpsc::UnboundedReceiver<Vec<InboundEvent>>>>,
    /// `true` while the operator holds processing back (see [`Messenger::hold_processing`]).
    held: tokio::sync::watch::Sender<bool>,
    /// Events in authenticated deliveries (`loyalty_webhook_events_total`).
    events_received: prometheus_client::metrics::counter::Counter,
    /// Who wrote to the Page in the last 24 hours.
    window: Arc<InboundWindow>,
}

impl Messenger {
    pub fn new(
        settings: MessengerSettings,
        engine: Arc<Engine>,
        queue: Arc<dyn EventQueue>,
    ) -> Arc<Self> {
        let events = engine
            .program()
            .metrics()
            .webhook_events(Channel::Messenger);
        let clock = Arc::clone(engine.program().clock());
        Self::build(
            settings,
            engine,
            queue,
            RetryPolicy::default(),
            events,
            clock,
        )
    }

    /// Like [`Messenger::new`], with any [`Conversation`] and retry policy (used by tests).
    pub fn with_conversation(
        settings: MessengerSettings,
        conversation: Arc<dyn Conversation>,
        queue: Arc<dyn EventQueue>,
        retry: RetryPolicy,
    ) -> Arc<Self> {
        let clock = Arc::new(crate::clock::SystemClock);
        Self::build(
            settings,
            conversation,
            queue,
            retry,
            Default::default(),
            clock,
        )
    }

    fn build(
        settings: MessengerSettings,
        conversation: Arc<dyn Conversation>,
        queue: Arc<dyn EventQueue>,
        retry: RetryPolicy,
        events_received: prometheus_client::metrics::counter::Counter,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> Arc<Self> {
        let send_api = send_api::SendApi::new(
            &settings.graph_api_url,
            settings.page_access_token.clone(),
            settings.send_timeout,
        );
        let profiles = profile::Profiles::new(
            &settings.graph_api_url,
            settings.page_access_token.clone(),
            settings.profile_timeout,
        );
        let backlog = Arc::new(Backlog::new(settings.max_events_in_memory));
        let turns = Turns::new(settings.max_turns_at_once, settings.turn_grace);
        let worker = Worker::new(
            conversation,
            queue,
            send_api,
            profiles,
            retry,
            Arc::clone(&backlog),
            turns,
        );
        let (intake, intake_rx) = mpsc::unbounded_channel();
        Arc::new(Messenger {
            settings,
            worker: Arc::new(worker),
            intake,
            backlog,
            intake_rx: Mutex::new(Some(intake_rx)),
            held: tokio::sync::watch::Sender::new(false),
            events_received,
            window: Arc::new(InboundWindow::new(clock)),
        })
    }

    /// Who wrote to the Page in the last 24 hours, and how to tell them order news then.
    pub fn order_news(&self) -> (Arc<InboundWindow>, Arc<dyn NewsSender>) {
        let s = &self.settings;
        let send_api = send_api::SendApi::new(
            &s.graph_api_url,
            s.page_access_token.clone(),
            s.send_timeout,
        );
        let sender = Arc::new(news::MessengerNews { send_api });
        (Arc::clone(&self.window), sender)
    }

    /// Registers GET and POST /webhooks/messenger.
    pub fn configure(self: &Arc<Self>, cfg: &mut web::ServiceConfig) {
        cfg.service(
            web::resource("/webhooks/messenger")
                .app_data(web::Data::from(Arc::clone(self)))
                // Bodies above `messenger.max_body_bytes` are refused (413) before the signature
                // check. Meta batches events, but a batch of text messages stays far below it.
                .app_data(web::PayloadConfig::new(self.settings.max_body_bytes))
                .app_data(BodyLimit(self.settings.max_body_bytes))
                .route(web::get().to(handlers::verify))
                .route(web::post().to(handlers::receive)),
        );
    }

    /// Starts background processing: first re-sends pending outbound replies and processes
    /// pending inbound events left from before a restart, then processes new ones. Stops at a
    /// safe point when `shutdown` is cancelled.
    ///
    /// # Panics
    /// When called twice on one `Messenger`.
    pub fn spawn(self: &Arc<Self>, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let intake = self
            .intake_rx
            .lock()
            .expect("intake lock poisoned")
            .take()
            .expect("Messenger::spawn called twice");
        let held = self.held.subscribe();
        tokio::spawn(Arc::clone(&self.worker).run(intake, held, shutdown))
    }

    /// Holds back (or lets go) the processing of newly received events. Webhooks are still
    /// recorded durably and answered 200, so Meta loses nothing and keeps the webhook healthy,
    /// while nothing is asked of the shop or sent to customers: for shop maintenance. Events
    /// already in a customer's lane still finish. A restart lets go.
    pub fn hold_processing(&self, hold: bool) {
        self.held.send_replace(hold);
        tracing::warn!(
            channel = "messenger",
            hold,
            "processing of new events held back or let go"
        );
    }

    /// Whether processing is held back.
    pub fn processing_held(&self) -> bool {
        *self.held.borrow()
    }

    /// Recording failed (the answer is 500, and Meta redelivers): the events may be in the
    /// store all the same, and the redelivery then finds them known and hands nothing over, so
    /// the worker is told to read the store once what it holds falls to the low-water mark.
    fn recording_failed(&self) {
        self.backlog.spill();
    }

    /// Received events the worker holds in memory now: `messenger.max_events_in_memory`, plus
    /// what arrives while the store is being read (`backlog.rs`); the rest wait in the store.
    pub fn events_in_memory(&self) -> usize {
        self.backlog.in_memory()
    }

    /// Passes freshly recorded events to the worker, or leaves them to the store while the
    /// worker holds as many as it may. If the worker has stopped they stay pending in the store
    /// and run after the next start.
    fn hand_over(&self, events: Vec<InboundEvent>) {
        for e in &events {
            self.window.saw(&e.sender);
        }
        self.backlog.hand_over(events, |events| {
            let _ = self.intake.send(events);
        });
    }
}
