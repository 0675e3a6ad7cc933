//! Which address a request comes from, for per-address limits. The TCP peer, unless the peer is
//! one of `limits.trusted_proxies`: then the nearest `X-Forwarded-For` entry that is not itself
//! a trusted proxy. Without trusted proxies the header is ignored, because any client can send
//! it and would pick its own key (a fresh budget per request). [`client_ip`] reads an actix
//! request; the rule itself ([`nearest_untrusted`]) knows nothing of HTTP.

use super::Limits;
use actix_web::HttpRequest;
use std::net::IpAddr;

/// The client address of `req` by the rules of `limits`; `None` when actix knows no peer (a
/// test request, a Unix socket).
pub fn client_ip(req: &HttpRequest, limits: &Limits) -> Option<IpAddr> {
    let forwarded: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .collect();
    nearest_untrusted(
        req.peer_addr().map(|a| a.ip()),
        forwarded.into_iter(),
        &limits.trusted_proxies,
    )
}

/// The client address of a request from `peer` carrying these `X-Forwarded-For` header values
/// (in the order received).
fn nearest_untrusted<'a>(
    peer: Option<IpAddr>,
    forwarded_for: impl DoubleEndedIterator<Item = &'a str>,
    trusted_proxies: &[IpAddr],
) -> Option<IpAddr> {
    let peer = peer.map(|p| p.to_canonical())?;
    if !trusted_proxies.contains(&peer) {
        return Some(peer);
    }
    // Each proxy appends the address it received from, so the rightmost entries are the
    // nearest. Walk back over our own proxies to the first address we did not put there.
    let mut nearest = peer;
    for value in forwarded_for.rev() {
        for entry in value.split(',').rev() {
            let Ok(ip) = entry.trim().parse::<IpAddr>().map(|ip| ip.to_canonical()) else {
                // Garbage (or a port, which proxies do not add here): stop at what we know.
                return Some(nearest);
            };
            if !trusted_proxies.contains(&ip) {
                return Some(ip);
            }
            nearest = ip;
        }
    }
    Some(nearest)
}

/// Parses `limits.trusted_proxies`: comma-separated IP addresses, possibly empty.
pub fn parse_trusted_proxies(text: &str) -> Result<Vec<IpAddr>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpAddr>()
                .map(|ip| ip.to_canonical())
                .map_err(|_| format!("`{s}` is not an IP address (list them separated by commas)"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_forwarded_header_counts_only_behind_a_trusted_proxy() {
        let proxy = [ip("10.0.0.1")];
        let cases: &[(&str, &[&str], &[IpAddr], &str)] = &[
            ("203.0.113.9", &["198.51.100.1"], &[], "203.0.113.9"),
            ("203.0.113.9", &["198.51.100.1"], &proxy, "203.0.113.9"),
            ("10.0.0.1", &["198.51.100.1"], &proxy, "198.51.100.1"),
            // A client-sent entry on the left is not believed; the proxy's own entry wins.
            (
                "10.0.0.1",
                &["1.1.1.1, 198.51.100.1"],
                &proxy,
                "198.51.100.1",
            ),
            (
                "10.0.0.1",
                &["1.1.1.1", "198.51.100.1"],
                &proxy,
                "198.51.100.1",
            ),
            ("10.0.0.1", &[], &proxy, "10.0.0.1"),
            ("10.0.0.1", &["not-an-ip"], &proxy, "10.0.0.1"),
            ("::ffff:10.0.0.1", &["198.51.100.1"], &proxy, "198.51.100.1"),
        ];
        for (peer, xff, trusted, want) in cases {
            let got = nearest_untrusted(Some(ip(peer)), xff.iter().copied(), trusted);
            assert_eq!(got, Some(ip(want)), "peer {peer}, XFF {xff:?}");
        }
    }

    #[test]
    fn a_chain_of_trusted_proxies_is_walked_back() {
        let trusted = [ip("10.0.0.1"), ip("10.0.0.2")];
        let got = nearest_untrusted(
            Some(ip("10.0.0.1")),
            ["198.51.100.7, 10.0.0.2"].into_iter(),
            &trusted,
        );
        assert_eq!(got, Some(ip("198.51.100.7")));
    }

    #[test]
    fn trusted_proxies_parse_or_name_the_bad_entry() {
        assert_eq!(parse_trusted_proxies(""), Ok(vec![]));
        assert_eq!(
            parse_trusted_proxies(" 127.0.0.1, ::1 "),
            Ok(vec![ip("127.0.0.1"), ip("::1")])
        );
        let e = parse_trusted_proxies("127.0.0.1, proxy.local").unwrap_err();
        assert!(e.contains("proxy.local"), "{e}");
    }
}
