//! The client's IP address, also behind reverse proxies the operator trusts.
//!
//! [`resolve`] is the one rule: the peer address, unless the peer is a trusted proxy
//! (`[server] trusted_proxies`), in which case the right-most address of `X-Forwarded-For`
//! that is not itself a trusted proxy. Addresses left of it were written by whoever sent the
//! request first, so they are never believed; a header that does not parse is ignored (the
//! peer is the client). The [`layer`] middleware applies it once per request and attaches a
//! [`ClientAddr`]; the per-IP limits of the app channel (`mobile::guard::client_ip`) and the
//! audit's remote address (`auth::remote_of`, hence `ConnectInfoOpt`) read that.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use serde::Deserialize;

/// An address block: `10.0.0.0/8`, `2001:db8::/32`, or one address (`127.0.0.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Cidr {
    net: IpAddr,
    len: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?;
        let net = net.to_canonical();
        let max = if net.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => match l.parse::<u8>() {
                Ok(l) if l <= max => l,
                _ => return Err(format!("{s:?}: the prefix length must be 0 to {max}")),
            },
        };
        let c = Cidr { net, len };
        if c.masked(net) != net {
            return Err(format!(
                "{s:?}: address bits are set past the prefix length (did you mean {}/{len}?)",
                c.masked(net)
            ));
        }
        Ok(c)
    }
}

impl TryFrom<String> for Cidr {
    type Error = String;
    fn try_from(s: String) -> Result<Cidr, String> {
        s.parse()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.len)
    }
}

impl Cidr {
    fn masked(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v) => {
                let bits = u32::from(v);
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                IpAddr::V4((bits & mask).into())
            }
            IpAddr::V6(v) => {
                let bits = u128::from(v);
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                IpAddr::V6((bits & mask).into())
            }
        }
    }

    /// Whether `ip` lies in the block (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.net.is_ipv4() && self.masked(ip) == self.net
    }
}

/// The trusted proxies in force.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Arc<Vec<Cidr>>);

impl TrustedProxies {
    pub fn new(blocks: &[Cidr]) -> TrustedProxies {
        TrustedProxies(Arc::new(blocks.to_vec()))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }
}

/// One hop of `X-Forwarded-For`: an address, optionally bracketed or with a port.
fn hop(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inner.parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
    }
    s.parse::<SocketAddr>().ok().map(|a| a.ip().to_canonical())
}

/// The client's IP: see the module documentation. The one place that decides it.
pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return peer;
    }
    let mut hops = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(text) = value.to_str() else {
            return peer;
        };
        for part in text.split(',') {
            match hop(part) {
                Some(ip) => hops.push(ip),
                None => return peer,
            }
        }
    }
    match hops.iter().rev().find(|ip| !trusted.contains(**ip)) {
        Some(ip) => *ip,
        // Only trusted proxies on the way: the first of them is where the request entered.
        None => hops.first().copied().unwrap_or(peer),
    }
}

/// The resolved client of a request, attached by [`layer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    /// The client's IP (the peer's, or the forwarded one behind a trusted proxy).
    pub ip: IpAddr,
    /// The TCP peer.
    pub peer: SocketAddr,
}

impl fmt::Display for ClientAddr {
    /// `ip:port` of the peer when it is the client; `client via proxy:port` when forwarded.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ip == self.peer.ip().to_canonical() {
            write!(f, "{}", self.peer)
        } else {
            write!(f, "{} via {}", self.ip, self.peer)
        }
    }
}

/// Middleware: resolves the client once per request (when the server recorded the peer).
pub async fn layer(
    State(trusted): State<TrustedProxies>,
    mut req: Request,
    next: Next,
) -> Response {
    if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() {
        let ip = resolve(peer.ip(), req.headers(), &trusted);
        req.extensions_mut().insert(ClientAddr { ip, peer });
    }
    next.run(req).await
}

/// The client of a request as [`layer`] resolved it; without the layer, the peer itself.
pub fn client_of(ext: &axum::http::Extensions) -> Option<ClientAddr> {
    ext.get::<ClientAddr>().copied().or_else(|| {
        ext.get::<ConnectInfo<SocketAddr>>().map(|c| ClientAddr {
            ip: c.0.ip().to_canonical(),
            peer: c.0,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(list: &[&str]) -> TrustedProxies {
        let blocks: Vec<Cidr> = list.iter().map(|s| s.parse().unwrap()).collect();
        TrustedProxies::new(&blocks)
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_parsing() {
        assert_eq!(
            "10.0.0.0/8".parse::<Cidr>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            "127.0.0.1".parse::<Cidr>().unwrap().to_string(),
            "127.0.0.1/32"
        );
        assert_eq!(
            "2001:db8::/32".parse::<Cidr>().unwrap().to_string(),
            "2001:db8::/32"
        );
        assert_eq!(
            "0.0.0.0/0".parse::<Cidr>().unwrap().to_string(),
            "0.0.0.0/0"
        );
        for bad in [
            "10.0.0.0/33",
            "fe80::/129",
            "10.0.0/8",
            "proxy",
            "",
            "10.0.0.0/x",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        let e = "10.0.0.1/8".parse::<Cidr>().unwrap_err();
        assert!(e.contains("10.0.0.0/8"), "{e}");
        let t = trusted(&["10.0.0.0/8", "2001:db8::/32"]);
        assert!(t.contains(ip("10.255.1.2")));
        assert!(!t.contains(ip("11.0.0.1")));
        assert!(t.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped peer");
        assert!(t.contains(ip("2001:db8:1::5")));
        assert!(!t.contains(ip("2001:db9::5")));
    }

    #[test]
    fn spoofed_header_from_an_untrusted_peer_is_ignored() {
        let t = trusted(&["10.0.0.0/8"]);
        assert_eq!(
            resolve(ip("203.0.113.7"), &xff(&["198.51.100.1"]), &t),
            ip("203.0.113.7")
        );
        // Nothing trusted: the header never counts.
        assert_eq!(
            resolve(ip("10.0.0.1"), &xff(&["198.51.100.1"]), &trusted(&[])),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn chain_of_proxies_gives_the_right_most_untrusted_hop() {
        let t = trusted(&["10.0.0.0/8", "127.0.0.1/32"]);
        // The client wrote a fake first hop; the edge proxy appended the real client; an inner
        // proxy appended the edge.
        let h = xff(&["6.6.6.6, 198.51.100.1, 10.0.0.5"]);
        assert_eq!(resolve(ip("127.0.0.1"), &h, &t), ip("198.51.100.1"));
        // The same chain over several header lines.
        let h = xff(&["6.6.6.6", "198.51.100.1", "10.0.0.5"]);
        assert_eq!(resolve(ip("127.0.0.1"), &h, &t), ip("198.51.100.1"));
        // Only proxies: the first hop.
        let h = xff(&["10.0.0.9, 10.0.0.5"]);
        assert_eq!(resolve(ip("127.0.0.1"), &h, &t), ip("10.0.0.9"));
        // A trusted peer without the header is the client.
        assert_eq!(
            resolve(ip("127.0.0.1"), &HeaderMap::new(), &t),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn ipv6_hops_and_peers() {
        let t = trusted(&["2001:db8::/32", "127.0.0.0/8"]);
        let h = xff(&["2400:cb00::1, [2001:db8::2]:443"]);
        assert_eq!(resolve(ip("2001:db8::9"), &h, &t), ip("2400:cb00::1"));
        // An IPv4 proxy seen by an IPv6 listener as ::ffff:127.0.0.1.
        let h = xff(&["198.51.100.1:5555"]);
        assert_eq!(resolve(ip("::ffff:127.0.0.1"), &h, &t), ip("198.51.100.1"));
        let h = xff(&["[2400:cb00::7]"]);
        assert_eq!(resolve(ip("127.0.0.1"), &h, &t), ip("2400:cb00::7"));
    }

    #[test]
    fn garbage_falls_back_to_the_peer() {
        let t = trusted(&["127.0.0.1/32"]);
        for bad in [
            "unknown",
            "198.51.100.1, ",
            "198.51.100.1,,10.0.0.1",
            "",
            "1.2.3.4.5",
            "_hidden",
            "[198.51.100.1",
        ] {
            let h = xff(&[bad]);
            assert_eq!(resolve(ip("127.0.0.1"), &h, &t), ip("127.0.0.1"), "{bad:?}");
        }
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            axum::http::HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        assert_eq!(resolve(ip("127.0.0.1"), &h, &t), ip("127.0.0.1"));
    }

    #[test]
    fn display_names_the_proxy_when_forwarded() {
        let peer: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let direct = ClientAddr {
            ip: peer.ip(),
            peer,
        };
        assert_eq!(direct.to_string(), "127.0.0.1:4000");
        let forwarded = ClientAddr {
            ip: ip("198.51.100.1"),
            peer,
        };
        assert_eq!(forwarded.to_string(), "198.51.100.1 via 127.0.0.1:4000");
    }
}
