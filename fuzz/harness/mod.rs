//! The fuzz harness: one function per fuzz target, each handing untrusted bytes to the very
//! parser production uses and then checking cheap properties that hold for every input. It is
//! shared by the cargo-fuzz targets (`fuzz/fuzz_targets/`, through this crate's lib) and by
//! `tests/fuzz_regressions.rs` (through `#[path]`), which replays the committed seeds and every
//! past crash, so the two cannot drift apart. A failed property panics, which libFuzzer reports
//! as a crash.

mod channels;
mod domain;
mod files;
mod shops;

pub use channels::{manychat_body, messenger_signed, messenger_webhook};
pub use domain::{amount, email, order_number};
pub use files::{config, flow_file};
pub use shops::shop_webhook;

/// A fuzz target: its name (the folder of its corpus) and its harness function.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, so the regression test can replay each corpus folder through its function.
pub const TARGETS: [Target; 10] = [
    ("messenger_webhook", messenger_webhook),
    ("messenger_signed", messenger_signed),
    ("manychat_body", manychat_body),
    ("shop_answer", shop_answer),
    ("shop_webhook", shop_webhook),
    ("amount", amount),
    ("order_number", order_number),
    ("email", email),
    ("flow_file", flow_file),
    ("config", config),
];

/// The generic shop's answer to a verify request: whatever it accepts is a usable order.
pub fn shop_answer(data: &[u8]) {
    let Ok(order) = loyalty_bot::shop::parse_generic_answer(data) else {
        return;
    };
    domain::check_decimal_round_trip(order.total);
    let c = &order.currency;
    assert!(
        c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()),
        "currency {c:?}"
    );
    domain::check_order_number(&order.number);
    if let Some(email) = &order.email {
        domain::check_email(email);
    }
}
