//! Client addresses as the limits and bans see them: an IPv4 address is
//! one client, an IPv6 address is keyed by its /64 (what one subscriber or
//! one host usually gets, so rotating through its own addresses sidesteps
//! nothing), and an IPv4 address mapped into IPv6 is the IPv4 address.
//!
//! Hand-written over `std::net` rather than a CIDR crate: one mask and one
//! textual form are all that is needed.

use std::net::{IpAddr, Ipv6Addr};

/// Bits of an IPv6 address that identify one client.
pub const IPV6_PREFIX: u32 = 64;

/// The address `ip` is limited and banned as.
pub fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mask = u128::MAX << (128 - IPV6_PREFIX);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        },
    }
}

/// The textual form of `ip`'s key, as `BANS` lists it and as bans are
/// kept: `198.51.100.7/32`, `2001:db8:1:2::/64`. It contains a `/`, which
/// no user name does, so names and addresses share one ban list.
pub fn entry(ip: IpAddr) -> String {
    match key(ip) {
        IpAddr::V4(v4) => format!("{v4}/32"),
        IpAddr::V6(v6) => format!("{v6}/{IPV6_PREFIX}"),
    }
}

/// Reads an address as an admin writes it (`198.51.100.7`,
/// `2001:db8:1:2::9`, or the `BANS` form with its prefix length) and
/// gives its ban entry; `None` if it is no address. A prefix other than
/// the one addresses are keyed by is refused rather than widened.
pub fn parse_entry(text: &str) -> Option<String> {
    let (ip, prefix) = match text.split_once('/') {
        Some((ip, prefix)) => (ip, Some(prefix.parse::<u32>().ok()?)),
        None => (text, None),
    };
    let ip: IpAddr = ip.parse().ok()?;
    let want = match key(ip) {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => IPV6_PREFIX,
    };
    if prefix.is_some_and(|p| p != want) {
        return None;
    }
    Some(entry(ip))
}

/// Whether a ban entry is an address (names have no `/`).
pub fn is_address(entry: &str) -> bool {
    entry.contains('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_is_keyed_by_its_64_and_mapped_ipv4_by_the_ipv4() {
        let a: IpAddr = "2001:db8:1:2::9".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::9".parse().unwrap();
        assert_eq!(key(a), key(b));
        assert_ne!(key(a), key(c));
        assert_eq!(entry(a), "2001:db8:1:2::/64");
        let mapped: IpAddr = "::ffff:198.51.100.7".parse().unwrap();
        assert_eq!(entry(mapped), "198.51.100.7/32");
        assert_eq!(entry("127.0.0.1".parse().unwrap()), "127.0.0.1/32");
    }

    #[test]
    fn admins_may_write_an_address_with_or_without_its_prefix() {
        assert_eq!(parse_entry("198.51.100.7").unwrap(), "198.51.100.7/32");
        assert_eq!(parse_entry("198.51.100.7/32").unwrap(), "198.51.100.7/32");
        assert_eq!(parse_entry("2001:db8:1:2::9").unwrap(), "2001:db8:1:2::/64");
        assert_eq!(
            parse_entry("2001:db8:1:2::/64").unwrap(),
            "2001:db8:1:2::/64"
        );
        for no in [
            "bob",
            "198.51.100.7/24",
            "2001:db8::/48",
            "1.2.3",
            "/32",
            "",
        ] {
            assert_eq!(parse_entry(no), None, "{no}");
        }
        assert!(is_address("198.51.100.7/32") && !is_address("bob"));
    }
}
