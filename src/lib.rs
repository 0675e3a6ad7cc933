//! loyalty-bot: a self-hosted customer-loyalty engine for Facebook Messenger and ManyChat.
//!
//! # Layout
//! - [`domain`]: members, points, ledger, orders, rewards, coupons. Pure rules, no I/O.
//! - [`store`]: the storage seam ([`store::LoyaltyStore`], [`store::EventQueue`]) and its sled backend.
//! - [`shop`]: the shop seam ([`shop::Shop`]): order look-ups and coupon creation.
//! - [`program`]: the use cases (join, claim, balance, redeem); orders side effects.
//! - [`segments`]: a segment of members written out as CSV, JSON lines or a table.
//! - [`flows`]: the flow engine; conversations as data from `flows/`.
//! - [`channels`]: Messenger and ManyChat wire formats to and from the engine.
//! - [`http`]: the HTTP surface (health, admin, error mapping, body and time limits) and
//!   [`startup`] wiring.
//! - [`limits`]: rate limits per member and per client address (order-number guessing).
//! - [`cli`], [`chat`], [`telemetry`]: the binary's command line, terminal chat and logging.
//!
//! Dependencies point inwards: `http`/`channels` → `flows` → `program` → `{store, shop}` → `domain`.

pub mod channels;
pub mod chat;
pub mod cli;
pub mod config;
pub mod domain;
pub mod flows;
pub mod http;
pub mod limits;
pub mod program;
pub mod segments;
pub mod shop;
pub mod signature;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod turns;
