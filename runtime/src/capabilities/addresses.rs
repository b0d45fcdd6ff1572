//! Which resolved addresses a guest's outgoing request may connect to.
//!
//! The allow-list works on names; this works on what the names resolve to,
//! so a public name pointed at `127.0.0.1` or at a cloud metadata address
//! (`169.254.169.254`) is refused all the same. Loopback, private,
//! link-local, shared (CGNAT) and unspecified addresses are refused unless
//! the operator allowed them for the tenant; the host's own listeners (the
//! admin API above all) are refused always.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// Why an address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddressRefusal {
    #[error("{0} is a loopback, private or link-local address")]
    Private(IpAddr),
    #[error("{0} is one of this host's own listeners")]
    OwnListener(SocketAddr),
    #[error("{0} is not a unicast address")]
    NotUnicast(IpAddr),
}

/// The address rules one service's outgoing requests run under.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    /// Whether loopback, private and link-local destinations are allowed.
    pub allow_private: bool,
    /// The host's own listening sockets, never a destination.
    pub own_listeners: Arc<[SocketAddr]>,
}

impl AddressPolicy {
    pub fn check(&self, addr: SocketAddr) -> Result<(), AddressRefusal> {
        let ip = canonical(addr.ip());
        if self.is_own_listener(ip, addr.port()) {
            return Err(AddressRefusal::OwnListener(addr));
        }
        if ip.is_unspecified() || ip.is_multicast() || is_broadcast(ip) {
            return Err(AddressRefusal::NotUnicast(ip));
        }
        if is_private(ip) && !self.allow_private {
            return Err(AddressRefusal::Private(ip));
        }
        Ok(())
    }

    fn is_own_listener(&self, ip: IpAddr, port: u16) -> bool {
        self.own_listeners.iter().any(|own| {
            own.port() == port
                && (own.ip().is_unspecified() || canonical(own.ip()) == ip || ip.is_loopback())
        })
    }
}

/// An IPv6 address that carries an IPv4 address it stands for or routes
/// to is judged as that IPv4 address, so none of these forms slips past:
/// IPv4-mapped `::ffff:10.0.0.1`, IPv4-compatible `::10.0.0.1`, NAT64
/// `64:ff9b::10.0.0.1` (RFC 6052) and 6to4 `2002:0a00:0001::` (RFC 3056).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = ip.to_bits();
    let low32 = Ipv4Addr::from_bits(bits as u32);
    let s = ip.segments();
    if let Some(mapped) = ip.to_ipv4_mapped() {
        return Some(mapped);
    }
    // IPv4-compatible (deprecated, RFC 4291 2.5.5.1): 96 zero bits first.
    // `::` and `::1` land on 0.0.0.0 and 0.0.0.1, which are refused too.
    if bits >> 32 == 0 {
        return Some(low32);
    }
    // 64:ff9b::/96, the well-known NAT64 prefix.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(low32);
    }
    // 2002::/16, 6to4: the IPv4 address of the relay it routes through.
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::from_bits((bits >> 80) as u32));
    }
    None
}

/// Teredo (2001::/32, RFC 4380): the server's IPv4 address in bits 32-63
/// and the client's, inverted, in the last 32 bits. Both must be public.
fn teredo_v4(ip: Ipv6Addr) -> Option<[Ipv4Addr; 2]> {
    let s = ip.segments();
    (s[0] == 0x2001 && s[1] == 0).then(|| {
        let bits = ip.to_bits();
        [
            Ipv4Addr::from_bits((bits >> 64) as u32),
            Ipv4Addr::from_bits(!(bits as u32)),
        ]
    })
}

fn is_broadcast(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v4) if v4.is_broadcast())
}

/// Addresses that lead inside the host or its network rather than to the
/// internet.
pub fn is_private(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => is_private_v6(v6),
    }
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        // 100.64.0.0/10, shared address space (carrier-grade NAT).
        || (a == 100 && (64..128).contains(&b))
        // 0.0.0.0/8, "this network".
        || a == 0
        // 192.0.0.0/24, protocol assignments.
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        // 198.18.0.0/15, benchmarking networks.
        || (a == 198 && (b == 18 || b == 19))
}

fn is_private_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return is_private_v4(v4) || v4.is_unspecified() || v4.is_broadcast();
    }
    let s = ip.segments();
    ip.is_loopback()
        // fc00::/7, unique local.
        || (s[0] & 0xfe00) == 0xfc00
        // fe80::/10, link-local.
        || (s[0] & 0xffc0) == 0xfe80
        // fec0::/10, site-local (deprecated, but still routed inside sites).
        || (s[0] & 0xffc0) == 0xfec0
        // 64:ff9b:1::/48, local-use NAT64 (RFC 8215): a network's own.
        || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1)
        || teredo_v4(ip).is_some_and(|both| {
            both.iter()
                .any(|v4| is_private_v4(*v4) || v4.is_unspecified() || v4.is_broadcast())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|e| unreachable!("{s}: {e}"))
    }

    #[test]
    fn refuses_internal_addresses_by_default() {
        let policy = AddressPolicy::default();
        for internal in [
            "127.0.0.1:80",
            "127.8.9.10:80",
            "10.1.2.3:80",
            "172.16.0.1:80",
            "192.168.1.1:80",
            "169.254.169.254:80",
            "100.64.0.1:80",
            "0.0.0.0:80",
            "[::1]:80",
            "[fd00::1]:80",
            "[fe80::1]:80",
            "[::ffff:169.254.169.254]:80",
            "[::ffff:127.0.0.1]:80",
            "[64:ff9b::a9fe:a9fe]:80",
            "[::]:80",
            // IPv4-compatible forms of loopback and metadata addresses.
            "[::127.0.0.1]:80",
            "[::169.254.169.254]:80",
            "[::10.0.0.1]:80",
            // 6to4 through a private or loopback relay.
            "[2002:7f00:1::1]:80",
            "[2002:a9fe:a9fe::]:80",
            "[2002:c0a8:101::5]:80",
            // Teredo with a private server, or a loopback client (inverted).
            "[2001:0:a00:1::1]:80",
            "[2001:0:5db8:1::80ff:fffe]:80",
            // NAT64, well-known and local-use prefixes.
            "[64:ff9b::7f00:1]:80",
            "[64:ff9b:1::5db8:d70e]:80",
            // Site-local.
            "[fec0::1]:80",
            "[feff::1]:80",
        ] {
            assert!(policy.check(addr(internal)).is_err(), "{internal}");
        }
        for public in [
            "93.184.215.14:443",
            "[2606:4700::1111]:443",
            "8.8.8.8:53",
            // The same forms around public addresses are public.
            "[2002:5db8:d70e::1]:443",
            "[64:ff9b::808:808]:53",
            "[2001:0:5db8:d70e::a247:28f1]:443",
        ] {
            assert_eq!(policy.check(addr(public)), Ok(()), "{public}");
        }
    }

    #[test]
    fn the_operator_may_allow_private_addresses_but_never_the_host_itself() {
        let policy = AddressPolicy {
            allow_private: true,
            own_listeners: Arc::from(vec![addr("127.0.0.1:8081"), addr("0.0.0.0:8080")]),
        };
        assert_eq!(policy.check(addr("127.0.0.1:9000")), Ok(()));
        assert_eq!(policy.check(addr("10.0.0.1:80")), Ok(()));
        for own in [
            "127.0.0.1:8081",
            "127.0.0.2:8081",
            "127.0.0.1:8080",
            "10.0.0.1:8080",
        ] {
            assert!(
                matches!(policy.check(addr(own)), Err(AddressRefusal::OwnListener(_))),
                "{own}"
            );
        }
        assert!(policy.check(addr("0.0.0.0:9000")).is_err());
        assert!(policy.check(addr("224.0.0.1:9000")).is_err());
    }
}
