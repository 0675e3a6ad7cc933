//! The HTTP side of the WooCommerce adapter: one client with the shop's timeouts, HTTP Basic
//! auth on every call, URLs built segment by segment (a typed order number is never spliced
//! into a path or a query as raw text), and the mapping of transport failures to [`ShopError`].

use crate::config::Secret;
use crate::shop::ShopError;
use serde::Deserialize;
use std::time::Duration;

/// The REST namespace every call goes to, below the shop's address.
const API: [&str; 3] = ["wp-json", "wc", "v3"];

#[derive(Debug, Clone)]
pub(super) struct WooClient {
    client: reqwest::Client,
    /// The shop's address; a WordPress in a sub-folder keeps its path (`https://x.example/shop`).
    base: reqwest::Url,
    consumer_key: Secret,
    consumer_secret: Secret,
    timeout: Duration,
}

/// A WordPress REST error body: `{"code": "...", "message": "...", "data": {"status": 400}}`.
#[derive(Debug, Deserialize)]
pub(super) struct RestError {
    pub code: String,
    #[serde(default)]
    pub message: String,
}

impl WooClient {
    /// Fails on a URL that is not https, or plain http anywhere but loopback (the keys travel
    /// in every request), and if no HTTP client can be built.
    pub fn new(
        url: &str,
        consumer_key: Secret,
        consumer_secret: Secret,
        timeout: Duration,
    ) -> Result<Self, ShopError> {
        let base = reqwest::Url::parse(url.trim()).map_err(|_| ShopError::BadUrl(url.into()))?;
        match base.scheme() {
            "https" => {}
            "http" if crate::config::is_loopback(&base) => {
                tracing::warn!(
                    url = %base,
                    "shop.woocommerce.url is plain http: accepted for a loopback address only; \
                     use https for any shop on another host"
                );
            }
            _ => return Err(ShopError::BadUrl(url.into())),
        }
        if base.cannot_be_a_base() || base.query().is_some() {
            return Err(ShopError::BadUrl(url.into()));
        }
        let client = crate::shop::http_client(timeout)?;
        Ok(WooClient {
            client,
            base,
            consumer_key,
            consumer_secret,
            timeout,
        })
    }

    /// `{url}/wp-json/wc/v3/<segments…>?<query>`, each segment and value percent-encoded.
    pub fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> reqwest::Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("checked in new: the base URL can be a base")
            .pop_if_empty()
            .extend(API)
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    pub async fn get(&self, url: reqwest::Url) -> Result<reqwest::Response, ShopError> {
        self.send(self.client.get(url)).await
    }

    pub async fn post_json(
        &self,
        url: reqwest::Url,
        body: Vec<u8>,
    ) -> Result<reqwest::Response, ShopError> {
        let req = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        self.send(req).await
    }

    /// Sends with Basic auth (reqwest marks the header sensitive: kept out of `Debug` output).
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ShopError> {
        req.basic_auth(
            self.consumer_key.expose(),
            Some(self.consumer_secret.expose()),
        )
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| self.transport_error(e))
    }

    /// The whole body of a response, a timeout while reading it included.
    pub async fn body(&self, res: reqwest::Response) -> Result<Vec<u8>, ShopError> {
        let bytes = res.bytes().await.map_err(|e| self.transport_error(e))?;
        Ok(bytes.to_vec())
    }

    /// `work` (one or more calls) within the shop's time limit as a whole: a look-up that
    /// takes two calls answers the customer within `shop.timeout_secs` too.
    pub async fn within<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, ShopError>>,
    ) -> Result<T, ShopError> {
        tokio::time::timeout(self.timeout, work)
            .await
            .unwrap_or(Err(ShopError::Timeout(self.timeout.as_secs())))
    }

    pub fn transport_error(&self, e: reqwest::Error) -> ShopError {
        if e.is_timeout() {
            ShopError::Timeout(self.timeout.as_secs())
        } else {
            ShopError::Unreachable(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(url: &str) -> WooClient {
        WooClient::new(
            url,
            Secret::new("ck"),
            Secret::new("cs"),
            Duration::from_secs(1),
        )
        .unwrap()
    }

    #[test]
    fn urls_keep_a_sub_folder_and_encode_every_segment_and_value() {
        for base in ["https://x.example/shop", "https://x.example/shop/"] {
            let url = client(base).url(&["orders", "1001"], &[]);
            assert_eq!(
                url.as_str(),
                "https://x.example/shop/wp-json/wc/v3/orders/1001"
            );
        }
        let c = client("https://x.example");
        let url = c.url(&["orders", "1/../2?x#y"], &[]);
        assert_eq!(
            url.as_str(),
            "https://x.example/wp-json/wc/v3/orders/1%2F..%2F2%3Fx%23y"
        );
        let url = c.url(&["orders"], &[("search", "1001&status=trash #")]);
        assert_eq!(url.query(), Some("search=1001%26status%3Dtrash+%23"));
    }

    #[test]
    fn the_keys_are_redacted_in_debug_output() {
        let shown = format!(
            "{:?}",
            WooClient::new(
                "https://x.example",
                Secret::new("ck_live_123"),
                Secret::new("cs_live_456"),
                Duration::from_secs(1)
            )
            .unwrap()
        );
        assert!(
            !shown.contains("ck_live_123") && !shown.contains("cs_live_456"),
            "{shown}"
        );
    }
}
