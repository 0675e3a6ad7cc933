//! The Messenger channel end to end. `channel`: the channel alone over real HTTP (scripted
//! conversation, in-memory queue), pinning transport behaviour. `journey`: the real
//! application (engine, sled store, fake shop and Graph API), customer journeys and restarts.

mod common;

#[path = "messenger/channel.rs"]
mod channel;
#[path = "messenger/harness.rs"]
mod harness;
#[path = "messenger/journey.rs"]
mod journey;
