//! The sled backend of [`super::LoyaltyStore`] and [`super::EventQueue`].

/// Placeholder until the sled backend lands.
pub struct SledStore;
