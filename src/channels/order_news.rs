//! Order news told in the chat: a reversal or an auto-credit reaches a member on the channel
//! they joined on (Messenger's Send API, ManyChat's `sendContent`) while their 24-hour window is
//! open, as a message that answers nothing they sent. Outside the window, or on a channel that
//! cannot send on its own, nothing is sent: the statement email lists the change. Best effort: a
//! failed send is logged, not retried (the statement still lists it).

use super::window::InboundWindow;
use crate::domain::{Channel, MemberId};
use crate::flows::Engine;
use crate::program::{OrderNews, OrderNotice};
use futures_util::future::BoxFuture;
use std::sync::{Arc, Weak};

/// Why a channel did not deliver a piece of news.
#[derive(Debug, thiserror::Error)]
pub enum NewsError {
    /// The platform says the window had closed (Meta's 10/2018278, ManyChat's 3011): ours is
    /// kept in memory and may be a little ahead of theirs.
    #[error("the platform says the 24-hour window is closed")]
    WindowClosed,
    #[error("the member's id on this channel cannot be addressed: {0}")]
    NotAddressable(String),
    #[error("the platform could not be reached")]
    Unreachable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the platform refused it (HTTP {status}): {message}")]
    Refused { status: u16, message: String },
    /// More news than the platform takes in a while: this one is left to the statement.
    #[error("too much news waiting for the platform's rate limit")]
    Busy,
}

/// Sends one text to a person on one channel, outside any conversation turn.
pub trait NewsSender: Send + Sync {
    /// `who` is the member's id on the channel (a PSID, a ManyChat subscriber id).
    fn send<'a>(&'a self, who: &'a str, text: &'a str) -> BoxFuture<'a, Result<(), NewsError>>;
}

/// One channel's way to tell news: when its people last wrote, and how to reach them.
struct Teller {
    channel: Channel,
    window: Arc<InboundWindow>,
    sender: Arc<dyn NewsSender>,
}

/// The [`OrderNotice`] of the service: it finds the member's channel and tells them there.
pub struct ChatNews {
    /// Weak: the program holds this notice, and the engine holds the program.
    engine: Weak<Engine>,
    tellers: Vec<Teller>,
}

impl ChatNews {
    pub fn new(engine: &Arc<Engine>) -> Self {
        ChatNews {
            engine: Arc::downgrade(engine),
            tellers: Vec::new(),
        }
    }

    /// Members of `channel` hear their news through `sender` while `window` is open for them.
    pub fn with(
        mut self,
        channel: Channel,
        window: Arc<InboundWindow>,
        sender: Arc<dyn NewsSender>,
    ) -> Self {
        self.tellers.push(Teller {
            channel,
            window,
            sender,
        });
        self
    }
}

impl OrderNotice for ChatNews {
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
            let channel = who.channel.as_str();
            let counted = |result| engine.program().metrics().order_news(channel, result);
            let Some(teller) = self.tellers.iter().find(|t| t.channel == who.channel) else {
                tracing::debug!(member.id = %member, "order news waits for the statement");
                return counted("no_sender");
            };
            if !teller.window.is_open(&who.id) {
                tracing::debug!(member.id = %member, "order news waits for the statement");
                return counted("closed_window");
            }
            let locale = account.member.locale.as_deref().unwrap_or("en");
            let text = engine.order_news(locale, &news);
            match teller.sender.send(&who.id, &text).await {
                Ok(()) => {
                    tracing::info!(member.id = %member, channel, "order news sent in the chat");
                    counted("sent");
                }
                Err(NewsError::Busy) => {
                    tracing::warn!(
                        member.id = %member,
                        channel,
                        "order news not sent: more news waits than the platform takes; the statement lists it"
                    );
                    counted("busy");
                }
                Err(NewsError::WindowClosed) => {
                    tracing::info!(
                        member.id = %member,
                        channel,
                        "order news not sent: the window had closed; the statement lists it"
                    );
                    counted("closed_window");
                }
                Err(e) => {
                    tracing::warn!(
                        member.id = %member,
                        channel,
                        error = %e,
                        "order news not sent; the statement lists it"
                    );
                    counted("failed");
                }
            }
        })
    }
}
