//! The flow engine: conversations as data. Flow files in `flows/` (one per flow) hold the steps,
//! prompts, quick replies and message templates per locale; the engine runs them against the
//! [`crate::program::Program`] use cases, with no knowledge of Messenger or ManyChat.

mod actions;
pub mod definition;
mod engine;
mod registry;
mod render;
pub mod turn;

pub use definition::FlowError;
pub use engine::{Engine, REQUEST_ID};
pub use turn::{payloads, Awaiting, Button, Choice, Expect, Input, InputEvent, Reply, Turn};
