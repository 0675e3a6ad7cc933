//! Chat channels: each translates its platform's wire format to engine inputs and renders the
//! engine's replies back, within the platform's limits. No business rules live here.

pub mod manychat;
pub mod messenger;
pub mod order_news;
pub mod window;
