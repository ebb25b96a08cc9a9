//! The client's address: the TCP peer, unless the peer is a trusted proxy.
//!
//! `X-Forwarded-For` is a list each proxy appends its own peer to, so only its right end is
//! trustworthy: anything to the left may have been written by the client. We therefore walk
//! it from the right, past our trusted proxies, and take the first address that is not one
//! of them (the *rightmost untrusted* entry). Forwarding headers from a peer that is not a
//! trusted proxy are ignored, not an error: the visit is recorded with the peer's address.
//!
//! Only `X-Forwarded-For` is read. `X-Real-IP` and `Forwarded` are ignored, from every peer:
//! two sources of truth invite the parser differentials that forged addresses come from.
//!
//! Architecture Invariant: the result is an [`IpAddr`], never a string from a header, so
//! whatever the headers say, the journal receives a well-formed address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// An address or a network in CIDR notation (`10.0.0.7`, `10.0.0.0/8`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// True if `ip` is in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(u32::from(net).into(), u32::from(ip).into(), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(u128::from(net), u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, prefix: u8, bits: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = u32::from(bits - prefix);
    (a >> shift) == (b >> shift)
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<IpNet, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR network"))?;
        let addr = addr.to_canonical();
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            // The round trip rejects `+8` and `08`, which `parse` accepts.
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= bits && n.to_string() == p => n,
                _ => return Err(format!("{s:?} has a bad prefix length (0 to {bits})")),
            },
        };
        Ok(IpNet { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bits = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix == bits {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

/// The proxies whose `X-Forwarded-For` we believe. Empty by default: believe nobody.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Trusts the given addresses and networks.
    pub fn new(nets: Vec<IpNet>) -> TrustedProxies {
        TrustedProxies { nets }
    }

    /// Adds an address or network.
    pub fn push(&mut self, net: IpNet) {
        self.nets.push(net);
    }

    /// True if `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(ip))
    }

    /// True if no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// The trusted addresses and networks.
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }
}

impl fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.nets.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{n}")?;
        }
        Ok(())
    }
}

/// The client's address: the TCP `peer`, or, if the peer is a trusted proxy, the rightmost
/// entry of `forwarded_for` that is not a trusted proxy.
///
/// `forwarded_for` holds the values of every `X-Forwarded-For` header of the request, in the
/// order they came (several headers are one comma-separated list, per RFC 9110).
///
/// If the walk meets an entry that is not an address (`unknown`, garbage, an obfuscated
/// identifier), the chain cannot be followed past it, and the last address we could vouch for
/// (a trusted proxy) is the answer. If every entry is trusted, the leftmost one is.
/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.7`, what a dual-stack socket reports for IPv4
/// peers) are returned as IPv4.
pub fn client_ip<'a, I>(peer: IpAddr, forwarded_for: I, trusted: &TrustedProxies) -> IpAddr
where
    I: IntoIterator<Item = &'a str>,
    I::IntoIter: DoubleEndedIterator,
{
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return peer;
    }
    let mut client = peer;
    for value in forwarded_for.into_iter().rev() {
        for entry in value.rsplit(',') {
            let entry = entry.trim_matches([' ', '\t']);
            if entry.is_empty() {
                continue;
            }
            let Some(ip) = parse_entry(entry) else {
                return client;
            };
            client = ip;
            if !trusted.contains(ip) {
                return ip;
            }
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, optionally with a port (`10.0.0.7:5000`,
/// `[2001:db8::1]:443`), as some proxies write.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = entry.parse::<SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    let inner = entry.strip_prefix('[')?.strip_suffix(']')?;
    inner
        .parse::<Ipv6Addr>()
        .ok()
        .map(|ip| IpAddr::V6(ip).to_canonical())
}

/// The address to record for a request that arrived on a socket with no peer address (never
/// the case for TCP; kept so that no request can panic the server).
pub const UNSPECIFIED: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trusted(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| n.parse().unwrap()).collect())
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let t = trusted(&["10.0.0.1"]);
        assert_eq!(
            client_ip(ip("203.0.113.9"), ["6.6.6.6"], &t),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_ip(ip("203.0.113.9"), ["6.6.6.6"], &TrustedProxies::default()),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn a_trusted_peer_yields_the_rightmost_untrusted_entry() {
        let t = trusted(&["10.0.0.0/24", "192.168.1.1"]);
        // The client forged 6.6.6.6; the ingress appended the real client, 198.51.100.4; an
        // inner proxy appended the ingress.
        let got = client_ip(ip("192.168.1.1"), ["6.6.6.6, 198.51.100.4", "10.0.0.5"], &t);
        assert_eq!(got, ip("198.51.100.4"));
    }

    #[test]
    fn garbage_stops_the_walk_at_the_last_trusted_hop() {
        let t = trusted(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), ["1.2.3.4, unknown"], &t),
            ip("10.0.0.1")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), ["1.2.3.4, evil\n6.6.6.6, 10.0.0.9"], &t),
            ip("10.0.0.9")
        );
        // No header at all: the proxy itself.
        assert_eq!(
            client_ip(ip("10.0.0.1"), std::iter::empty::<&str>(), &t),
            ip("10.0.0.1")
        );
        // All trusted: the leftmost.
        assert_eq!(
            client_ip(ip("10.0.0.1"), ["10.1.1.1,10.2.2.2"], &t),
            ip("10.1.1.1")
        );
    }

    #[test]
    fn entries_may_carry_ports_and_brackets_and_empty_elements() {
        let t = trusted(&["127.0.0.1"]);
        for (value, want) in [
            ("203.0.113.5:4711", "203.0.113.5"),
            ("[2001:db8::7]:443", "2001:db8::7"),
            ("[2001:db8::7]", "2001:db8::7"),
            ("2001:db8::7", "2001:db8::7"),
            (" 203.0.113.5 ,, ", "203.0.113.5"),
            ("::ffff:203.0.113.5", "203.0.113.5"),
        ] {
            assert_eq!(client_ip(ip("127.0.0.1"), [value], &t), ip(want), "{value}");
        }
    }

    #[test]
    fn mapped_peers_are_canonical() {
        let t = trusted(&["10.0.0.1"]);
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.1"), ["198.51.100.4"], &t),
            ip("198.51.100.4")
        );
        assert_eq!(
            client_ip(ip("::ffff:203.0.113.1"), ["198.51.100.4"], &t),
            ip("203.0.113.1")
        );
    }

    #[test]
    fn networks_parse_and_match() {
        let n: IpNet = "10.1.0.0/16".parse().unwrap();
        assert!(n.contains(ip("10.1.255.3")));
        assert!(!n.contains(ip("10.2.0.1")));
        assert!(!n.contains(ip("::1")));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        let v6: IpNet = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")));
        assert_eq!(v6.to_string(), "fd00::/8");
        assert_eq!("10.0.0.7".parse::<IpNet>().unwrap().to_string(), "10.0.0.7");
        for bad in [
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/08",
            "x",
            "",
        ] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }
}
