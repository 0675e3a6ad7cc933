//! Which address a request comes from, for per-address limits. The TCP peer, unless the peer is
//! one of `limits.trusted_proxies`: then the nearest `X-Forwarded-For` entry that is not itself
//! a trusted proxy. Without trusted proxies the header is ignored, because any client can send
//! it and would pick its own key (a fresh budget per request). [`client_ip`] reads an actix
//! request; the rule itself ([`nearest_untrusted`]) knows nothing of HTTP.

use super::Limits;
use actix_web::HttpRequest;
use ipnet::{IpNet, Ipv4Net};
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

/// Our own reverse proxies: addresses and address ranges, IPv4-mapped IPv6 ones stored as IPv4
/// so that they match however the peer's address is written.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct TrustedProxies(Vec<IpNet>);

/// `limits.trusted_proxies` is written as one comma-separated string.
impl TryFrom<String> for TrustedProxies {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        parse_trusted_proxies(&text)
    }
}

impl TrustedProxies {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    pub fn ranges(&self) -> &[IpNet] {
        &self.0
    }
}

/// The client address of a request from `peer` carrying these `X-Forwarded-For` header values
/// (in the order received).
fn nearest_untrusted<'a>(
    peer: Option<IpAddr>,
    forwarded_for: impl DoubleEndedIterator<Item = &'a str>,
    trusted: &TrustedProxies,
) -> Option<IpAddr> {
    let peer = peer.map(|p| p.to_canonical())?;
    if !trusted.contains(peer) {
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
            if !trusted.contains(ip) {
                return Some(ip);
            }
            nearest = ip;
        }
    }
    Some(nearest)
}

/// Parses `limits.trusted_proxies`: comma-separated IP addresses and CIDR ranges
/// (`10.0.0.0/8`, `::1/128`), possibly empty. The error names the first bad entry.
pub fn parse_trusted_proxies(text: &str) -> Result<TrustedProxies, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            entry(s).ok_or_else(|| {
                format!(
                    "`{s}` is not an IP address or CIDR range (like 10.0.0.1 or 10.0.0.0/8; \
                     list them separated by commas)"
                )
            })
        })
        .collect::<Result<_, _>>()
        .map(TrustedProxies)
}

/// One entry: a range (host bits beyond the prefix are ignored, `10.1.2.3/8` is `10.0.0.0/8`)
/// or a single address (a range of one).
fn entry(s: &str) -> Option<IpNet> {
    let net = match s.parse::<IpNet>() {
        Ok(net) => net.trunc(),
        Err(_) => IpNet::from(s.parse::<IpAddr>().ok()?),
    };
    Some(canonical(net))
}

/// `::ffff:10.0.0.0/104` as `10.0.0.0/8`, to match peers that [`IpAddr::to_canonical`] turned
/// into IPv4.
fn canonical(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, IpNet::V4),
            None => net,
        },
        _ => net,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trusted(list: &str) -> TrustedProxies {
        parse_trusted_proxies(list).unwrap()
    }

    #[test]
    fn the_forwarded_header_counts_only_behind_a_trusted_proxy() {
        let proxy = trusted("10.0.0.1");
        let none = TrustedProxies::default();
        let cases: &[(&str, &[&str], &TrustedProxies, &str)] = &[
            ("203.0.113.9", &["198.51.100.1"], &none, "203.0.113.9"),
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
        let got = nearest_untrusted(
            Some(ip("10.0.0.1")),
            ["198.51.100.7, 10.0.0.2"].into_iter(),
            &trusted("10.0.0.1, 10.0.0.2"),
        );
        assert_eq!(got, Some(ip("198.51.100.7")));
    }

    #[test]
    fn a_peer_inside_a_trusted_range_is_a_proxy_and_one_outside_is_the_client() {
        let ranges = trusted("10.0.0.0/8, fd00::/8");
        let cases = [
            ("10.1.2.3", "198.51.100.1"),
            ("10.255.255.255", "198.51.100.1"),
            ("::ffff:10.9.9.9", "198.51.100.1"),
            ("fd12::1", "198.51.100.1"),
            ("11.0.0.1", "11.0.0.1"),
            ("fe80::1", "fe80::1"),
            ("192.168.0.1", "192.168.0.1"),
        ];
        for (peer, want) in cases {
            let got = nearest_untrusted(Some(ip(peer)), ["198.51.100.1"].into_iter(), &ranges);
            assert_eq!(got, Some(ip(want)), "peer {peer}");
        }
        // A chain through proxies of the range is walked back to the first outsider.
        let got = nearest_untrusted(
            Some(ip("10.0.0.1")),
            ["203.0.113.5, 198.51.100.7, 10.20.0.1, 10.30.0.1"].into_iter(),
            &ranges,
        );
        assert_eq!(got, Some(ip("198.51.100.7")));
    }

    #[test]
    fn trusted_proxies_take_addresses_and_ranges_in_any_spelling() {
        assert_eq!(parse_trusted_proxies(""), Ok(TrustedProxies::default()));
        let cases = [
            ("127.0.0.1", "127.0.0.1/32"),
            ("::1", "::1/128"),
            ("::1/128", "::1/128"),
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("10.1.2.3/8", "10.0.0.0/8"),
            ("::ffff:10.0.0.1", "10.0.0.1/32"),
            ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
            ("2001:db8::/32", "2001:db8::/32"),
        ];
        for (entry, want) in cases {
            let got = trusted(entry);
            assert_eq!(got.ranges(), [want.parse::<IpNet>().unwrap()], "{entry}");
        }
        assert_eq!(
            trusted(" 127.0.0.1, ::1/128 ,10.0.0.0/8 ").ranges().len(),
            3
        );
        assert!(trusted("::ffff:10.0.0.0/104").contains(ip("10.200.0.1")));
    }

    #[test]
    fn a_bad_trusted_proxy_entry_is_named() {
        for bad in [
            "proxy.local",
            "10.0.0.0/33",
            "10.0.0/8",
            "::1/129",
            "10.0.0.1:80",
            "/8",
        ] {
            let e = parse_trusted_proxies(&format!("127.0.0.1, {bad}")).unwrap_err();
            assert!(e.contains(&format!("`{bad}`")), "{bad}: {e}");
        }
    }
}
