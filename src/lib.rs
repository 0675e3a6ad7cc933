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
//! - [`imports`]: balances imported from another program (`import-balances`), on a stopped store.
//! - [`limits`]: rate limits per member and per client address (order-number guessing).
//! - [`backup`]: the whole store as one file (export) and back (import).
//! - [`metrics`]: the Prometheus metrics the program, channels, limits, shop and store count into.
//! - [`cli`], [`commands`], [`chat`], [`telemetry`]: the binary's command line and what each
//!   command does, the terminal chat, logging.
//!
//! Dependencies point inwards: `http`/`channels` → `flows` → `program` → `{store, shop}` → `domain`.

pub mod backup;
pub mod channels;
pub mod chat;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod domain;
pub mod email;
pub mod flows;
pub mod http;
pub mod imports;
pub mod limits;
pub mod metrics;
pub mod program;
pub mod progress;
pub mod segments;
pub mod shop;
pub mod signature;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod turns;
