//! Member email end to end, against a real SMTP server (Debian's aiosmtpd, started by the
//! tests): verified joins on both channels, the statement and reminders on a test clock,
//! one-click unsubscribe over HTTP, bounces, and restarts of the real binary mid-run.

mod common;

#[path = "email/harness.rs"]
mod harness;
#[path = "email/restart.rs"]
mod restart;
#[path = "email/statements.rs"]
mod statements;
#[path = "email/verification.rs"]
mod verification;
