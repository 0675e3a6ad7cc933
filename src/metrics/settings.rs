//! `[metrics]`: the bearer token of `GET /metrics`. Member counts and points are business
//! data, so the route only exists while a token is set.

use crate::config::Secret;
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// `Authorization: Bearer <token>` for `GET /metrics`; empty (the default) disables it.
    pub token: Secret,
}
