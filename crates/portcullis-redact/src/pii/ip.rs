//! IP addresses. IPv4 candidates are four dot-separated groups of one to three digits that do
//! not continue a longer dotted number (`1.2.3.4.5`, version strings); IPv6 candidates are
//! runs of hex digits and colons (with an optional IPv4 tail). Both are confirmed by the
//! standard library's parsers, so `256.1.1.1`, `01.2.3.4` and `12:30:45` are not addresses.

use std::net::{Ipv4Addr, Ipv6Addr};

use regex::Regex;

use crate::kind::{Encoding, Finding, Kind};
use crate::text::{byte_at, byte_before, number_isolated};

pub(crate) struct Ip {
    v4: Regex,
    v6: Regex,
}

impl Ip {
    pub(crate) fn new() -> Ip {
        Ip {
            v4: Regex::new(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}").expect("ipv4 regex"),
            v6: Regex::new(r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:\.[0-9]{1,3}){0,3}")
                .expect("ipv6 regex"),
        }
    }

    pub(crate) fn scan(&self, text: &str, out: &mut Vec<Finding>) {
        for candidate in self.v4.find_iter(text) {
            let (start, end) = (candidate.start(), candidate.end());
            // After a colon it is the tail of an IPv6 address, which the IPv6 pass reports whole.
            let in_ipv6 = byte_before(text, start) == Some(b':');
            if !in_ipv6
                && number_isolated(text, start, end)
                && candidate.as_str().parse::<Ipv4Addr>().is_ok()
            {
                out.push(Finding::new(Kind::IpAddress, start, end, Encoding::Plain));
            }
        }
        for candidate in self.v6.find_iter(text) {
            let (start, end) = (candidate.start(), candidate.end());
            let value = candidate.as_str();
            let glued = |b: Option<u8>| {
                b.is_some_and(|b| b.is_ascii_alphanumeric() || b == b':' || b == b'.')
            };
            if glued(byte_before(text, start)) || glued(byte_at(text, end)) {
                continue;
            }
            // `Abc::de` in source code parses as IPv6; addresses in text have digits.
            if !value.bytes().any(|b| b.is_ascii_digit()) || value.matches(':').count() < 2 {
                continue;
            }
            if value.parse::<Ipv6Addr>().is_ok() {
                out.push(Finding::new(Kind::IpAddress, start, end, Encoding::Plain));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pii::test_support::found;

    fn ips(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        Ip::new().scan(text, &mut out);
        found(text, &out, Kind::IpAddress)
    }

    #[test]
    fn finds_addresses() {
        assert_eq!(
            ips("from 192.168.1.20, to 10.0.0.1."),
            ["192.168.1.20", "10.0.0.1"]
        );
        assert_eq!(
            ips("host 2001:db8::8a2e:370:7334 up"),
            ["2001:db8::8a2e:370:7334"]
        );
        assert_eq!(ips("[::1]:8080"), ["::1"]);
        assert_eq!(ips("::ffff:192.0.2.128"), ["::ffff:192.0.2.128"]);
        assert_eq!(
            ips("fe80::1ff:fe23:4567:890a"),
            ["fe80::1ff:fe23:4567:890a"]
        );
    }

    #[test]
    fn rejects_near_misses() {
        for text in [
            "256.1.1.1",
            "1.2.3.4.5",
            "v1.2.3.4",
            "01.2.3.4",
            "at 12:30:45",
            "Foo::Bar",
            "a::b",
            "1.2.3",
            "00:1a:2b:3c:4d:5e",
            "2001:db8::8a2e::7334",
        ] {
            assert!(ips(text).is_empty(), "{text}: {:?}", ips(text));
        }
    }
}
