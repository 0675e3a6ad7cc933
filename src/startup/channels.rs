//! Starts the chat channels whose secrets are set, and says at start-up which ones are
//! disabled and which empty keys disable them.

use crate::channels::order_news::ChatNews;
use crate::channels::{manychat::Manychat, manychat::SendContent, messenger::Messenger};
use crate::config::Settings;
use crate::domain::Channel;
use crate::flows::Engine;
use crate::store::{EventQueue, SledStore};
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The chat channels that are configured, and their background workers.
pub(super) struct Channels {
    pub messenger: Option<Arc<Messenger>>,
    pub manychat: Option<Arc<Manychat>>,
    pub background: Vec<JoinHandle<()>>,
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
        let messenger = if settings.messenger.enabled() {
            let queue: Arc<dyn EventQueue> = store.clone();
            let m = Messenger::new(settings.messenger.clone(), Arc::clone(engine), queue);
            let (window, sender) = m.order_news();
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
            None
        };
        if !news.is_empty() {
            engine.program().set_order_notice(Arc::new(news));
        }
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
        }
    }
}
