//! The customer's first name and language from the Graph User Profile API, looked up once per
//! customer and kept in memory. Webhooks carry neither; without them the bot says "Hi there"
//! and answers in the default language. `locale` needs an extra permission that many Pages do
//! not have, so a refusal of it falls back to the name alone, and any failure to no profile.

use crate::config::Secret;
use crate::domain::Profile;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Bounds memory: past this many customers the cache starts over.
const MAX_CACHED: usize = 50_000;

pub struct Profiles {
    http: reqwest::Client,
    base: String,
    token: Secret,
    /// Cleared after Meta refuses the `locale` field once.
    locale_allowed: AtomicBool,
    cache: Mutex<HashMap<String, Profile>>,
}

#[derive(Deserialize)]
struct UserProfile {
    first_name: Option<String>,
    locale: Option<String>,
}

impl Profiles {
    /// A look-up slower than `timeout` is given up: the reply goes out without the name.
    pub fn new(graph_api_url: &str, token: Secret, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .expect("a client with timeouts only always builds");
        Profiles {
            http,
            base: graph_api_url.trim_end_matches('/').to_owned(),
            token,
            locale_allowed: AtomicBool::new(true),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The customer's profile, or an empty one if Meta does not give it. Only answers are
    /// cached: after a timeout or an error the next message asks again.
    pub async fn get(&self, psid: &str) -> Profile {
        if let Some(p) = self.lock().get(psid) {
            return p.clone();
        }
        let Some(profile) = self.fetch(psid).await else {
            return Profile::default();
        };
        let mut cache = self.lock();
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(psid.to_owned(), profile.clone());
        profile
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Profile>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn fetch(&self, psid: &str) -> Option<Profile> {
        // A PSID is digits; anything else is not sent into a URL path.
        if psid.is_empty() || !psid.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if self.locale_allowed.load(Ordering::Relaxed) {
            match self.request(psid, "first_name,locale").await {
                Ok(p) => return Some(p),
                // Meta names the field it refuses; a throttled or failed call is no reason to
                // stop asking for everyone's language.
                Err(Refusal { body }) if body.contains("locale") => {
                    tracing::info!(
                        channel = "messenger",
                        "the Page may not read user locales; asking for first names only"
                    );
                    self.locale_allowed.store(false, Ordering::Relaxed);
                }
                Err(_) => return None,
            }
        }
        self.request(psid, "first_name").await.ok()
    }

    /// The URL holds the token, so it is never logged.
    async fn request(&self, psid: &str, fields: &str) -> Result<Profile, Refusal> {
        let res = self
            .http
            .get(format!("{}/{psid}", self.base))
            .query(&[("fields", fields), ("access_token", self.token.expose())])
            .send()
            .await
            .map_err(|e| {
                tracing::debug!(channel = "messenger", error = %e.without_url(), "profile look-up failed");
                Refusal::default()
            })?;
        let status = res.status().as_u16();
        if status != 200 {
            let body = res.text().await.unwrap_or_default();
            tracing::debug!(channel = "messenger", status, "profile look-up refused");
            return Err(Refusal { body });
        }
        let p: UserProfile = res.json().await.map_err(|_| Refusal::default())?;
        Ok(Profile {
            first_name: p
                .first_name
                .filter(|n| !n.trim().is_empty() && n.len() <= 100),
            locale: p.locale.filter(|l| l.len() <= 16),
        })
    }
}

/// Why a look-up gave nothing: Meta's error body (empty for transport failures).
#[derive(Debug, Default)]
struct Refusal {
    body: String,
}
