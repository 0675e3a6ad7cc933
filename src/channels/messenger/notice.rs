//! Order news in Messenger: a reversal or an auto-credit is told to a Messenger member while
//! their 24-hour window is open, as a message that answers nothing they sent
//! (`messaging_type: UPDATE`, protocols.md §b.8). Outside the window nothing is sent: the
//! statement email lists the change. Best effort: a failed send is logged, not retried (the
//! statement still lists it).

use super::send_api::SendApi;
use super::window::InboundWindow;
use crate::domain::{Channel, MemberId};
use crate::flows::Engine;
use crate::program::{OrderNews, OrderNotice};
use futures_util::future::BoxFuture;
use serde_json::json;
use std::sync::{Arc, Weak};

pub struct MessengerNotice {
    pub(super) window: Arc<InboundWindow>,
    pub(super) send_api: SendApi,
    /// Weak: the program holds this notice, and the engine holds the program.
    pub(super) engine: Weak<Engine>,
}

impl OrderNotice for MessengerNotice {
    fn tell(&self, member: MemberId, news: OrderNews) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let Some(engine) = self.engine.upgrade() else {
                return;
            };
            let account = match engine.program().account_of(member).await {
                Ok(Some(a)) => a,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(member.id = %member, error = %e, "order news: member not read");
                    return;
                }
            };
            let who = &account.member.identity;
            if who.channel != Channel::Messenger || !self.window.is_open(&who.id) {
                tracing::debug!(member.id = %member, "order news waits for the statement");
                return;
            }
            let locale = account.member.locale.as_deref().unwrap_or("en");
            let text = engine.order_news(locale, &news);
            let body = json!({
                "recipient": { "id": who.id },
                "messaging_type": "UPDATE",
                "message": { "text": text },
            });
            match self.send_api.send(&body).await {
                Ok(_) => tracing::info!(member.id = %member, "order news sent in Messenger"),
                Err(e) => {
                    tracing::warn!(member.id = %member, error = %e, "order news not sent; the statement lists it")
                }
            }
        })
    }
}
