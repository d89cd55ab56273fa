//! The SSRF policy: which addresses a scan may connect to.
//!
//! A scan may reach only public unicast addresses. Everything else is refused
//! — loopback, private, link-local (the cloud metadata address
//! 169.254.169.254 among them), unique-local, CGNAT, multicast, broadcast,
//! unspecified, documentation, benchmarking and reserved ranges — including
//! when such an address hides inside an IPv6 one (IPv4-mapped `::ffff:a.b.c.d`,
//! NAT64 `64:ff9b::/96`, 6to4 `2002::/16`). The operator's `allowed_targets`
//! CIDRs are the only exception.
//!
//! The policy judges addresses, never names: the prober resolves a name once,
//! judges every address it got, and connects to the one it judged.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Why an address is refused: the class it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Unspecified,
    ThisNetwork,
    Loopback,
    Private,
    LinkLocal,
    SharedCgnat,
    ProtocolAssignments,
    Documentation,
    Benchmarking,
    Multicast,
    Broadcast,
    Reserved,
    UniqueLocal,
    SiteLocal,
    DiscardOnly,
    Tunnel,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Unspecified => "unspecified",
            Class::ThisNetwork => "in \"this network\" (0.0.0.0/8)",
            Class::Loopback => "loopback",
            Class::Private => "private",
            Class::LinkLocal => "link-local",
            Class::SharedCgnat => "shared address space (CGNAT, 100.64.0.0/10)",
            Class::ProtocolAssignments => "reserved for IETF protocol assignments",
            Class::Documentation => "reserved for documentation",
            Class::Benchmarking => "reserved for benchmarking",
            Class::Multicast => "multicast",
            Class::Broadcast => "broadcast",
            Class::Reserved => "reserved",
            Class::UniqueLocal => "unique-local",
            Class::SiteLocal => "site-local",
            Class::DiscardOnly => "discard-only",
            Class::Tunnel => "a tunnel (Teredo) address",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The class that makes `ip` unfit for a scan, or `None` for a public
/// unicast address. IPv4 embedded in IPv6 (mapped, NAT64, 6to4) is judged as
/// the IPv4 address it carries.
pub fn classify(ip: IpAddr) -> Option<Class> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Class> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_unspecified() => Class::Unspecified,
        _ if ip.is_broadcast() => Class::Broadcast,
        (0, _, _) => Class::ThisNetwork,
        (127, _, _) => Class::Loopback,
        (10, _, _) => Class::Private,
        (172, 16..=31, _) => Class::Private,
        (192, 168, _) => Class::Private,
        (169, 254, _) => Class::LinkLocal,
        (100, 64..=127, _) => Class::SharedCgnat,
        (192, 0, 0) => Class::ProtocolAssignments,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => Class::Documentation,
        (198, 18..=19, _) => Class::Benchmarking,
        (224..=239, _, _) => Class::Multicast,
        (240..=255, _, _) => Class::Reserved,
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<Class> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    Some(match s {
        _ if ip.is_unspecified() => Class::Unspecified,
        _ if ip.is_loopback() => Class::Loopback,
        // ::/96, the deprecated IPv4-compatible form, and the rest of ::/8.
        [0, ..] => Class::Reserved,
        // NAT64 well-known prefix: the IPv4 address in the last 32 bits.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => return classify_v4(embedded(hi, lo)),
        // NAT64 local-use prefix: reaches whatever the local translator reaches.
        [0x64, 0xff9b, 1, ..] => Class::Private,
        [0x100, 0, 0, 0, ..] => Class::DiscardOnly,
        [0x2001, 0x0db8, ..] => Class::Documentation,
        [0x2001, 0, ..] => Class::Tunnel,
        // 6to4: the IPv4 address in bits 16..48.
        [0x2002, hi, lo, ..] => return classify_v4(embedded(hi, lo)),
        [x, ..] if x & 0xfe00 == 0xfc00 => Class::UniqueLocal,
        [x, ..] if x & 0xffc0 == 0xfe80 => Class::LinkLocal,
        [x, ..] if x & 0xffc0 == 0xfec0 => Class::SiteLocal,
        [x, ..] if x & 0xff00 == 0xff00 => Class::Multicast,
        _ => return None,
    })
}

/// The policy of one service: the classifier plus the operator's exceptions.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    allowed: Vec<IpNet>,
}

/// An address the policy refuses, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub addr: IpAddr,
    pub class: Class,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "target address {} is {}", self.addr, self.class)?;
        if let IpAddr::V6(v6) = self.addr
            && let Some(v4) = v6.to_ipv4_mapped()
        {
            write!(f, " (IPv4-mapped {v4})")?;
        }
        Ok(())
    }
}

impl Policy {
    pub fn new(allowed: Vec<IpNet>) -> Self {
        Self { allowed }
    }

    /// Whether a scan may connect to `addr`. An IPv4-mapped address is
    /// matched against `allowed_targets` as the IPv4 address it is.
    pub fn check(&self, addr: IpAddr) -> Result<(), Refusal> {
        let canonical = addr.to_canonical();
        if self
            .allowed
            .iter()
            .any(|net| net.contains(&addr) || net.contains(&canonical))
        {
            return Ok(());
        }
        match classify(addr) {
            None => Ok(()),
            Some(class) => Err(Refusal { addr, class }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_classifier_over_a_table() {
        use Class::*;
        let table: &[(&str, Option<Class>)] = &[
            ("0.0.0.0", Some(Unspecified)),
            ("0.1.2.3", Some(ThisNetwork)),
            ("127.0.0.1", Some(Loopback)),
            ("127.255.255.254", Some(Loopback)),
            ("10.0.0.1", Some(Private)),
            ("10.255.255.255", Some(Private)),
            ("172.16.0.1", Some(Private)),
            ("172.31.255.255", Some(Private)),
            ("172.15.255.255", None),
            ("172.32.0.0", None),
            ("192.168.1.1", Some(Private)),
            ("192.169.0.1", None),
            ("169.254.169.254", Some(LinkLocal)),
            ("169.254.0.1", Some(LinkLocal)),
            ("100.64.0.1", Some(SharedCgnat)),
            ("100.127.255.255", Some(SharedCgnat)),
            ("100.63.255.255", None),
            ("100.128.0.0", None),
            ("192.0.0.8", Some(ProtocolAssignments)),
            ("192.0.2.1", Some(Documentation)),
            ("198.51.100.7", Some(Documentation)),
            ("203.0.113.9", Some(Documentation)),
            ("198.18.0.1", Some(Benchmarking)),
            ("224.0.0.1", Some(Multicast)),
            ("239.255.255.250", Some(Multicast)),
            ("240.0.0.1", Some(Reserved)),
            ("255.255.255.255", Some(Broadcast)),
            ("8.8.8.8", None),
            ("1.1.1.1", None),
            ("93.184.215.14", None),
            ("::", Some(Unspecified)),
            ("::1", Some(Loopback)),
            ("::ffff:127.0.0.1", Some(Loopback)),
            ("::ffff:10.1.2.3", Some(Private)),
            ("::ffff:169.254.169.254", Some(LinkLocal)),
            ("::ffff:8.8.8.8", None),
            ("::127.0.0.1", Some(Reserved)),
            ("64:ff9b::7f00:1", Some(Loopback)),
            ("64:ff9b::808:808", None),
            ("64:ff9b:1::1", Some(Private)),
            ("100::1", Some(DiscardOnly)),
            ("2001:db8::1", Some(Documentation)),
            ("2001:0:4136:e378::1", Some(Tunnel)),
            ("2002:7f00:1::1", Some(Loopback)),
            ("2002:c0a8:101::1", Some(Private)),
            ("2002:808:808::1", None),
            ("fc00::1", Some(UniqueLocal)),
            ("fd12:3456::1", Some(UniqueLocal)),
            ("fe80::1", Some(LinkLocal)),
            ("febf::1", Some(LinkLocal)),
            ("fec0::1", Some(SiteLocal)),
            ("ff02::1", Some(Multicast)),
            ("2606:4700:4700::1111", None),
            ("2a00:1450:4001:80b::200e", None),
        ];
        for (addr, want) in table {
            let ip: IpAddr = addr.parse().unwrap();
            assert_eq!(classify(ip), *want, "{addr}");
        }
    }

    #[test]
    fn allowed_targets_are_the_only_exception() {
        let p = Policy::new(vec![
            "127.0.0.0/8".parse().unwrap(),
            "fd00::/8".parse().unwrap(),
        ]);
        for ok in [
            "127.0.0.1",
            "127.9.9.9",
            "::ffff:127.0.0.1",
            "fd00::5",
            "8.8.8.8",
        ] {
            assert_eq!(p.check(ok.parse().unwrap()), Ok(()), "{ok}");
        }
        for bad in ["10.0.0.1", "::1", "169.254.169.254", "fc00::1", "0.0.0.0"] {
            assert!(p.check(bad.parse().unwrap()).is_err(), "{bad}");
        }
        let one = Policy::new(vec!["127.0.0.1/32".parse().unwrap()]);
        assert!(one.check("127.0.0.2".parse().unwrap()).is_err());
    }

    #[test]
    fn refusals_say_why() {
        let p = Policy::default();
        let e = p.check("127.0.0.1".parse().unwrap()).unwrap_err();
        assert_eq!(e.to_string(), "target address 127.0.0.1 is loopback");
        let e = p
            .check("::ffff:169.254.169.254".parse().unwrap())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "target address ::ffff:169.254.169.254 is link-local (IPv4-mapped 169.254.169.254)"
        );
    }
}
