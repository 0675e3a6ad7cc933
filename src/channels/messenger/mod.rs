//! Messenger Platform: webhook intake, durable per-customer processing, Send API delivery.
