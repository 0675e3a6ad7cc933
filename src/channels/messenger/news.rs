//! Order news in Messenger ([`crate::channels::order_news`]): one text that answers nothing the
//! person sent, so `messaging_type: UPDATE` (protocols.md §b.8), the only kind Meta allows
//! without a tag inside the window.

use super::send_api::{SendApi, SendError};
use crate::channels::order_news::{NewsError, NewsSender};
use futures_util::future::BoxFuture;
use serde_json::json;

pub struct MessengerNews {
    pub(super) send_api: SendApi,
}

impl NewsSender for MessengerNews {
    fn send<'a>(&'a self, psid: &'a str, text: &'a str) -> BoxFuture<'a, Result<(), NewsError>> {
        Box::pin(async move {
            let body = json!({
                "recipient": { "id": psid },
                "messaging_type": "UPDATE",
                "message": { "text": text },
            });
            match self.send_api.send(&body).await {
                Ok(_) => Ok(()),
                Err(e) if e.is_outside_window() => Err(NewsError::WindowClosed),
                Err(SendError::Transport(e)) => Err(NewsError::Unreachable(Box::new(e))),
                Err(SendError::Graph {
                    status, message, ..
                }) => Err(NewsError::Refused { status, message }),
            }
        })
    }
}
