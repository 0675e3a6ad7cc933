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
pub use registry::BUILT_IN as BUILT_IN_FLOWS;
pub use render::{date, locale_of};
pub use turn::{payloads, Awaiting, Button, Choice, Expect, Input, InputEvent, Reply, Turn};

use std::path::PathBuf;

/// Loads flow files given as (path, text) with every check [`Engine::load`] makes, and returns
/// the flow ids and the fallback flow's id. For callers without a flows directory (the fuzz
/// targets); the paths only name files in errors.
pub fn check_flow_texts(files: Vec<(PathBuf, String)>) -> Result<(Vec<String>, String), FlowError> {
    let registry = registry::Registry::from_texts(files)?;
    let fallback = registry.fallback().id.clone();
    Ok((registry.flows.into_keys().collect(), fallback))
}
