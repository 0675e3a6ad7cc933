//! The Dynamic Block v2 wire types we emit (ManyChat's "Response Reference"): the envelope,
//! text messages, `url` and `dynamic_block_callback` buttons/quick replies, and the actions.
//! Only shapes live here; [`super::response`] decides what goes in them.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Serialize)]
pub struct V2 {
    pub version: &'static str,
    pub content: Content,
}

#[derive(Debug, Serialize)]
pub struct Content {
    pub messages: Vec<Message>,
    pub actions: Vec<Action>,
    pub quick_replies: Vec<Tappable>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_message_callback: Option<ExternalCallback>,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    Text {
        text: String,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        buttons: Vec<Tappable>,
    },
}

/// A button or quick reply.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Tappable {
    Url {
        caption: String,
        url: String,
    },
    DynamicBlockCallback {
        caption: String,
        #[serde(flatten)]
        call: Call,
    },
}

/// A request ManyChat makes to us on the customer's behalf.
#[derive(Serialize)]
pub struct Call {
    pub url: String,
    pub method: &'static str,
    /// Holds our bearer token, hence the hand-written `Debug`.
    pub headers: BTreeMap<&'static str, String>,
    pub payload: BTreeMap<String, String>,
}

impl fmt::Debug for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("url", &self.url)
            .field("method", &self.method)
            .field("headers", &"[redacted]")
            .field("payload", &self.payload)
            .finish()
    }
}

#[derive(Debug, Serialize)]
pub struct ExternalCallback {
    #[serde(flatten)]
    pub call: Call,
    pub timeout: u32,
}

#[derive(Debug, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    SetFieldValue {
        field_name: &'static str,
        value: u64,
    },
    AddTag {
        tag_name: &'static str,
    },
}
