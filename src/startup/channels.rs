//! Starts the chat channels whose secrets are set, and says at start-up which ones are
//! disabled and which empty keys disable them.

use crate::channels::order_news::ChatNews;
use crate::channels::window::InboundWindow;
use crate::channels::{manychat::Manychat, manychat::SendContent, messenger::Messenger};
use crate::config::Settings;
use crate::domain::Channel;
use crate::flows::Engine;
use crate::store::{EventQueue, RecentSenders, SledStore};
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The chat channels that are configured, and their background workers.
pub(super) struct Channels {
    pub messenger: Option<Arc<Messenger>>,
    pub manychat: Option<Arc<Manychat>>,
    pub background: Vec<JoinHandle<()>>,
    /// Each channel's 24-hour window, kept across a graceful restart.
    pub windows: Vec<(Channel, Arc<InboundWindow>)>,
}

impl Channels {
    pub fn start(
        settings: &Settings,
        engine: &Arc<Engine>,
        store: &Arc<SledStore>,
        workers: &CancellationToken,
    ) -> Self {
        let mut background = Vec::new();
        let mut news = ChatNews::new(engine);
        let mut windows = Vec::new();
        let messenger = if settings.messenger.enabled() {
            let queue: Arc<dyn EventQueue> = store.clone();
            let m = Messenger::new(settings.messenger.clone(), Arc::clone(engine), queue);
            let (window, sender) = m.order_news();
            restore(store, Channel::Messenger, &window);
            windows.push((Channel::Messenger, Arc::clone(&window)));
            news = news.with(Channel::Messenger, window, sender);
            background.push(m.spawn(workers.clone()));
            tracing::info!("messenger channel enabled");
            Some(m)
        } else {
            let m = &settings.messenger;
            let empty: Vec<&str> = [
                ("messenger.app_secret", &m.app_secret),
                ("messenger.verify_token", &m.verify_token),
                ("messenger.page_access_token", &m.page_access_token),
            ]
            .into_iter()
            .filter(|(_, v)| !v.is_set())
            .map(|(k, _)| k)
            .collect();
            tracing::info!(empty = %empty.join(", "), "messenger channel disabled: keys are empty");
            None
        };
        let manychat = if settings.manychat.token.is_set() {
            tracing::info!("manychat channel enabled");
            let public_url = settings.public_base();
            let mc = Manychat::new(
                settings.manychat.token.clone(),
                public_url,
                Arc::clone(engine),
            );
            restore(store, Channel::Manychat, &mc.window());
            windows.push((Channel::Manychat, mc.window()));
            let api = &settings.manychat;
            if api.api_token.is_set() {
                let sender = Arc::new(SendContent::new(&api.api_url, api.api_token.clone()));
                news = news.with(Channel::Manychat, mc.window(), sender);
            } else {
                tracing::info!(
                    empty = "manychat.api_token",
                    "manychat order news in the chat disabled: the statement email tells contacts"
                );
            }
            Some(mc)
        } else {
            tracing::info!(
                empty = "manychat.token",
                "manychat channel disabled: keys are empty"
            );
            if settings.manychat.api_token.is_set() {
                tracing::warn!(
                    "manychat.api_token is set but manychat.token is empty: ManyChat is off, so the API token is not used"
                );
            }
            None
        };
        // Also with no channel able to send: each piece of news is counted where it ends.
        engine.program().set_order_notice(Arc::new(news));
        if !settings.shop.secret.is_set() {
            tracing::info!(
                empty = "shop.secret",
                "shop webhook disabled: keys are empty"
            );
        }
        if !settings.admin.token.is_set() {
            tracing::info!(empty = "admin.token", "admin API disabled: keys are empty");
        }
        Channels {
            messenger,
            manychat,
            background,
            windows,
        }
    }
}

/// Notes who wrote on `channel` in the day before the last graceful stop. Unreadable, it is
/// only a nicety lost: their news waits for the statement until they write again.
fn restore(store: &SledStore, channel: Channel, window: &InboundWindow) {
    match store.recent_senders(channel) {
        Ok(kept) => window.restore(kept),
        Err(e) => tracing::warn!(
            channel = channel.as_str(),
            error = %e,
            "who wrote before the restart is not known; their windows read as closed"
        ),
    }
}

/// Keeps each channel's open windows for the next start; called at a graceful stop, before
/// the store's final flush.
pub(super) fn keep_windows(store: &SledStore, windows: &[(Channel, Arc<InboundWindow>)]) {
    for (channel, window) in windows {
        let open = window.open_ones();
        if let Err(e) = store.keep_recent_senders(*channel, &open) {
            tracing::warn!(
                channel = channel.as_str(),
                error = %e,
                "open chat windows not kept; after the start they read as closed"
            );
        }
    }
}
