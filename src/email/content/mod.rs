//! What each member mail says: the data a mail shows ([`model`]), formatted per locale
//! ([`format`]), and the owner-editable templates that turn it into a subject and a text and an
//! HTML body ([`templates`]). Built-in templates are the repository's `flows/email/` files.

mod check;
pub mod format;
pub mod model;
pub mod sample;
pub mod templates;
pub mod views;

pub use model::{
    AccountView, CodeView, CouponView, MailModel, MailProgram, ModelError, RewardView, Won,
    WonReward,
};
pub use templates::{template_name, EmailTemplates, TemplateError, KINDS, PARTS};

/// The templates compiled into the binary (the repository's `flows/email/`), by file name.
pub const BUILT_IN: [(&str, &str); 30] = [
    (
        "layout.html",
        include_str!("../../../flows/email/layout.html"),
    ),
    (
        "macros.html",
        include_str!("../../../flows/email/macros.html"),
    ),
    (
        "footer.en.html",
        include_str!("../../../flows/email/footer.en.html"),
    ),
    (
        "footer.de.html",
        include_str!("../../../flows/email/footer.de.html"),
    ),
    (
        "footer.en.txt",
        include_str!("../../../flows/email/footer.en.txt"),
    ),
    (
        "footer.de.txt",
        include_str!("../../../flows/email/footer.de.txt"),
    ),
    (
        "statement.en.subject.txt",
        include_str!("../../../flows/email/statement.en.subject.txt"),
    ),
    (
        "statement.en.txt",
        include_str!("../../../flows/email/statement.en.txt"),
    ),
    (
        "statement.en.html",
        include_str!("../../../flows/email/statement.en.html"),
    ),
    (
        "statement.de.subject.txt",
        include_str!("../../../flows/email/statement.de.subject.txt"),
    ),
    (
        "statement.de.txt",
        include_str!("../../../flows/email/statement.de.txt"),
    ),
    (
        "statement.de.html",
        include_str!("../../../flows/email/statement.de.html"),
    ),
    (
        "reward_reminder.en.subject.txt",
        include_str!("../../../flows/email/reward_reminder.en.subject.txt"),
    ),
    (
        "reward_reminder.en.txt",
        include_str!("../../../flows/email/reward_reminder.en.txt"),
    ),
    (
        "reward_reminder.en.html",
        include_str!("../../../flows/email/reward_reminder.en.html"),
    ),
    (
        "reward_reminder.de.subject.txt",
        include_str!("../../../flows/email/reward_reminder.de.subject.txt"),
    ),
    (
        "reward_reminder.de.txt",
        include_str!("../../../flows/email/reward_reminder.de.txt"),
    ),
    (
        "reward_reminder.de.html",
        include_str!("../../../flows/email/reward_reminder.de.html"),
    ),
    (
        "coupon_reminder.en.subject.txt",
        include_str!("../../../flows/email/coupon_reminder.en.subject.txt"),
    ),
    (
        "coupon_reminder.en.txt",
        include_str!("../../../flows/email/coupon_reminder.en.txt"),
    ),
    (
        "coupon_reminder.en.html",
        include_str!("../../../flows/email/coupon_reminder.en.html"),
    ),
    (
        "coupon_reminder.de.subject.txt",
        include_str!("../../../flows/email/coupon_reminder.de.subject.txt"),
    ),
    (
        "coupon_reminder.de.txt",
        include_str!("../../../flows/email/coupon_reminder.de.txt"),
    ),
    (
        "coupon_reminder.de.html",
        include_str!("../../../flows/email/coupon_reminder.de.html"),
    ),
    (
        "verification.en.subject.txt",
        include_str!("../../../flows/email/verification.en.subject.txt"),
    ),
    (
        "verification.en.txt",
        include_str!("../../../flows/email/verification.en.txt"),
    ),
    (
        "verification.en.html",
        include_str!("../../../flows/email/verification.en.html"),
    ),
    (
        "verification.de.subject.txt",
        include_str!("../../../flows/email/verification.de.subject.txt"),
    ),
    (
        "verification.de.txt",
        include_str!("../../../flows/email/verification.de.txt"),
    ),
    (
        "verification.de.html",
        include_str!("../../../flows/email/verification.de.html"),
    ),
];
