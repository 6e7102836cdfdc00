//! The one outbound (egress) policy: every HTTP request the gateway makes on behalf of a tenant
//! (model routes, webhooks, remote upstreams) goes through [`Egress`], so no tenant-supplied URL
//! can be turned against the gateway's own network — its loopback, its private networks, the
//! cloud metadata service, or the gateway's own listeners.
//!
//! Three layers, each failing closed:
//!
//! 1. [`EgressPolicy::check_url`] vets the URL before any lookup: `http`/`https` only, no
//!    userinfo, no port 0, the tenant's [`HostAllowList`], and an IP-literal host is checked at
//!    once (the WHATWG parser has already normalised `0x7f000001`, `0177.0.0.1`, `127.1` and the
//!    like to `127.0.0.1`). IP-literal URLs never reach a resolver, so this check is the only
//!    one they get: it runs on every request [`Egress`] sends.
//! 2. [`CheckedResolver`] is the client's only resolver: it looks a name up once, refuses the
//!    whole answer if any address is refused, and otherwise hands back exactly the checked
//!    addresses. hyper-util's connector connects only to the addresses the resolver returned —
//!    there is no second lookup a rebinding DNS server could answer differently.
//! 3. The client follows no redirects and uses no proxy (an environment proxy would connect on
//!    our behalf to whatever it is asked, bypassing both checks).
//!
//! Address classification ([`classify`]) is a hand-written table: no crate classifies special
//! purpose addresses adequately and `std`'s `is_global` is unstable.

use futures::future::BoxFuture;
use ipnet::IpNet;
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why a destination is refused: an address range, or a property of the URL.
///
/// The names ([`Rule::name`]) are stable: they appear in logs, metrics and error bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`.
    Private,
    /// `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// A cloud instance metadata service: `169.254.169.254` (AWS, GCP, Azure, OCI and others),
    /// `169.254.170.2` (AWS ECS task credentials), `100.100.100.200` (Alibaba Cloud),
    /// `fd00:ec2::254` (AWS over IPv6).
    Metadata,
    /// `100.64.0.0/10` (shared address space, RFC 6598).
    CarrierGradeNat,
    /// `198.18.0.0/15`, `2001:2::/48`.
    Benchmark,
    /// `192.0.2.0/24`, `198.51.100.0/24`, `203.0.113.0/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `240.0.0.0/4` (except the broadcast address).
    Reserved,
    /// `0.0.0.0`, `::` — connecting to it reaches the local host.
    Unspecified,
    /// `255.255.255.255`.
    Broadcast,
    /// `0.0.0.0/8` except `0.0.0.0`.
    ThisNetwork,
    /// IETF protocol assignments: `192.0.0.0/24`, `2001::/23` (outside its Teredo and
    /// benchmarking parts).
    IetfProtocol,
    /// `::ffff:0:0/96`: an IPv4 address in IPv6 clothing.
    Ipv4Mapped,
    /// `::/96` (deprecated IPv4-compatible addresses).
    Ipv4Compatible,
    /// `64:ff9b::/96`, `64:ff9b:1::/48`: reaches IPv4 through a translator.
    Nat64,
    /// `2002::/16`, and the deprecated relay anycast `192.88.99.0/24`.
    SixToFour,
    /// `2001::/32`.
    Teredo,
    /// `fc00::/7`.
    UniqueLocal,
    /// `fec0::/10` (deprecated).
    SiteLocal,
    /// `100::/64`.
    DiscardOnly,
    /// `5f00::/16`: SRv6 segment identifiers.
    Srv6Sid,
    /// Any IPv6 address outside `2000::/3` not named otherwise.
    NotGlobalUnicast,
    /// One of the gateway's own listen addresses.
    OwnAddress,
    /// The URL does not parse.
    InvalidUrl,
    /// A scheme other than `http` or `https`.
    Scheme,
    /// Credentials in the URL (`user:pass@`).
    Userinfo,
    /// The URL has no host.
    NoHost,
    /// The host is not on the tenant's allow list.
    HostNotAllowed,
    /// The name has no addresses, or the lookup failed.
    Unresolvable,
    /// Port 0.
    Port,
    /// `http://` to a public address: credentials and bodies would cross the internet in
    /// clear. Plain HTTP reaches only the networks the operator opened (`allow_private`).
    PlainHttp,
}

impl Rule {
    /// Every rule, in declaration order.
    pub const ALL: [Rule; 32] = [
        Rule::Loopback,
        Rule::Private,
        Rule::LinkLocal,
        Rule::Metadata,
        Rule::CarrierGradeNat,
        Rule::Benchmark,
        Rule::Documentation,
        Rule::Multicast,
        Rule::Reserved,
        Rule::Unspecified,
        Rule::Broadcast,
        Rule::ThisNetwork,
        Rule::IetfProtocol,
        Rule::Ipv4Mapped,
        Rule::Ipv4Compatible,
        Rule::Nat64,
        Rule::SixToFour,
        Rule::Teredo,
        Rule::UniqueLocal,
        Rule::SiteLocal,
        Rule::DiscardOnly,
        Rule::Srv6Sid,
        Rule::NotGlobalUnicast,
        Rule::OwnAddress,
        Rule::InvalidUrl,
        Rule::Scheme,
        Rule::Userinfo,
        Rule::NoHost,
        Rule::HostNotAllowed,
        Rule::Unresolvable,
        Rule::Port,
        Rule::PlainHttp,
    ];

    /// The stable kebab-case name.
    pub fn name(&self) -> &'static str {
        match self {
            Rule::Loopback => "loopback",
            Rule::Private => "private",
            Rule::LinkLocal => "link-local",
            Rule::Metadata => "metadata",
            Rule::CarrierGradeNat => "carrier-grade-nat",
            Rule::Benchmark => "benchmark",
            Rule::Documentation => "documentation",
            Rule::Multicast => "multicast",
            Rule::Reserved => "reserved",
            Rule::Unspecified => "unspecified",
            Rule::Broadcast => "broadcast",
            Rule::ThisNetwork => "this-network",
            Rule::IetfProtocol => "ietf-protocol",
            Rule::Ipv4Mapped => "ipv4-mapped",
            Rule::Ipv4Compatible => "ipv4-compatible",
            Rule::Nat64 => "nat64",
            Rule::SixToFour => "6to4",
            Rule::Teredo => "teredo",
            Rule::UniqueLocal => "unique-local",
            Rule::SiteLocal => "site-local",
            Rule::DiscardOnly => "discard-only",
            Rule::Srv6Sid => "srv6-sid",
            Rule::NotGlobalUnicast => "not-global-unicast",
            Rule::OwnAddress => "own-address",
            Rule::InvalidUrl => "invalid-url",
            Rule::Scheme => "scheme",
            Rule::Userinfo => "userinfo",
            Rule::NoHost => "no-host",
            Rule::HostNotAllowed => "host-not-allowed",
            Rule::Unresolvable => "unresolvable",
            Rule::Port => "port",
            Rule::PlainHttp => "plain-http",
        }
    }

    /// An IPv6 range that carries (or reaches) an IPv4 address. These are refused whatever
    /// the embedded address is, and `allowed_private` never admits them: the operator names
    /// the IPv4 address itself instead.
    fn is_ipv4_wrapper(self) -> bool {
        matches!(
            self,
            Rule::Ipv4Mapped | Rule::Ipv4Compatible | Rule::Nat64 | Rule::SixToFour | Rule::Teredo
        )
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A refused destination. The detail names the host or address only — never the URL's
/// userinfo, path or query, which may hold secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("egress refused ({rule}): {detail}")]
pub struct Refusal {
    pub rule: Rule,
    pub detail: String,
}

impl Refusal {
    fn new(rule: Rule, detail: impl Into<String>) -> Self {
        Self {
            rule,
            detail: detail.into(),
        }
    }
}

/// What [`Egress::send`] can fail with.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// The policy refused the destination; nothing was sent.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// Connecting or exchanging failed. The message never holds the URL.
    #[error("egress failed: {0}")]
    Transport(String),
}

impl EgressError {
    fn from_reqwest(error: reqwest::Error) -> Self {
        if let Some(refusal) = refusal_in(&error) {
            return EgressError::Refused(refusal.clone());
        }
        // `without_url` drops the URL (and with it any query) from reqwest's own message;
        // the sources below it name addresses at most.
        let error = error.without_url();
        let mut message = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        EgressError::Transport(message)
    }
}

/// The [`Refusal`] somewhere in an error's source chain, if any: how a caller of the plain
/// [`reqwest::Client`] finds out that [`CheckedResolver`] refused the destination (reqwest
/// wraps it as `reqwest::Error` → hyper-util's client error → its connect error → reqwest's
/// DNS error → the `Refusal`).
pub fn refusal_in<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refusal> {
    let mut current = Some(err);
    while let Some(error) = current {
        if let Some(refusal) = error.downcast_ref::<Refusal>() {
            return Some(refusal);
        }
        current = error.source();
    }
    None
}

// IANA IPv4 and IPv6 Special-Purpose Address Registries, written out by hand (no crate does
// this adequately and `std`'s `is_global` is unstable). First match wins, so single addresses
// come before the ranges that hold them. Ranges the registry marks globally reachable inside
// 192.0.0.0/24 and 2001::/23 are refused anyway: nothing a tenant needs lives there.
#[rustfmt::skip]
const V4_SPECIAL: &[(Ipv4Addr, u32, Rule)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 32, Rule::Unspecified),
    (Ipv4Addr::new(0, 0, 0, 0), 8, Rule::ThisNetwork),
    (Ipv4Addr::new(10, 0, 0, 0), 8, Rule::Private),
    (Ipv4Addr::new(100, 100, 100, 200), 32, Rule::Metadata),
    (Ipv4Addr::new(100, 64, 0, 0), 10, Rule::CarrierGradeNat),
    (Ipv4Addr::new(127, 0, 0, 0), 8, Rule::Loopback),
    (Ipv4Addr::new(169, 254, 169, 254), 32, Rule::Metadata),
    (Ipv4Addr::new(169, 254, 170, 2), 32, Rule::Metadata),
    (Ipv4Addr::new(169, 254, 0, 0), 16, Rule::LinkLocal),
    (Ipv4Addr::new(172, 16, 0, 0), 12, Rule::Private),
    (Ipv4Addr::new(192, 0, 0, 0), 24, Rule::IetfProtocol),
    (Ipv4Addr::new(192, 0, 2, 0), 24, Rule::Documentation),
    (Ipv4Addr::new(192, 88, 99, 0), 24, Rule::SixToFour),
    (Ipv4Addr::new(192, 168, 0, 0), 16, Rule::Private),
    (Ipv4Addr::new(198, 18, 0, 0), 15, Rule::Benchmark),
    (Ipv4Addr::new(198, 51, 100, 0), 24, Rule::Documentation),
    (Ipv4Addr::new(203, 0, 113, 0), 24, Rule::Documentation),
    (Ipv4Addr::new(224, 0, 0, 0), 4, Rule::Multicast),
    (Ipv4Addr::new(255, 255, 255, 255), 32, Rule::Broadcast),
    (Ipv4Addr::new(240, 0, 0, 0), 4, Rule::Reserved),
];

// IPv6 is denied by default: only 2000::/3 can be public (checked after this table).
#[rustfmt::skip]
const V6_SPECIAL: &[(Ipv6Addr, u32, Rule)] = &[
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 128, Rule::Unspecified),
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 1), 128, Rule::Loopback),
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96, Rule::Ipv4Mapped),
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 96, Rule::Ipv4Compatible),
    (Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96, Rule::Nat64),
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48, Rule::Nat64),
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64, Rule::DiscardOnly),
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 32, Rule::Teredo),
    (Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0), 48, Rule::Benchmark),
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23, Rule::IetfProtocol),
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32, Rule::Documentation),
    (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16, Rule::SixToFour),
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20, Rule::Documentation),
    (Ipv6Addr::new(0x5f00, 0, 0, 0, 0, 0, 0, 0), 16, Rule::Srv6Sid),
    (Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254), 128, Rule::Metadata),
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7, Rule::UniqueLocal),
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, Rule::LinkLocal),
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10, Rule::SiteLocal),
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, Rule::Multicast),
];

/// Why an address may not be contacted, or `None` for a public global unicast address — the
/// only kind a tenant may reach without an operator's `allowed_private`.
pub fn classify(ip: IpAddr) -> Option<Rule> {
    match ip {
        IpAddr::V4(ip) => V4_SPECIAL
            .iter()
            .find(|(base, prefix, _)| {
                let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
                ip.to_bits() & mask == base.to_bits() & mask
            })
            .map(|(_, _, rule)| *rule),
        IpAddr::V6(ip) => {
            let special = V6_SPECIAL.iter().find(|(base, prefix, _)| {
                let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
                ip.to_bits() & mask == base.to_bits() & mask
            });
            match special {
                Some((_, _, rule)) => Some(*rule),
                None if ip.segments()[0] & 0xe000 != 0x2000 => Some(Rule::NotGlobalUnicast),
                None => None,
            }
        }
    }
}

/// The IPv4 address an IPv6 address carries: mapped, compatible, NAT64 (the well-known
/// prefix; the local-use `64:ff9b:1::/48` places it where its operator chose), 6to4, or the
/// obfuscated Teredo client address.
pub fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let pair = |high: u16, low: u16| Ipv4Addr::from_bits((u32::from(high) << 16) | u32::from(low));
    match classify(IpAddr::V6(ip))? {
        Rule::Ipv4Mapped | Rule::Ipv4Compatible => Some(pair(s[6], s[7])),
        Rule::Nat64 if s[2] == 0 => Some(pair(s[6], s[7])),
        Rule::SixToFour => Some(pair(s[1], s[2])),
        Rule::Teredo => Some(pair(!s[6], !s[7])),
        _ => None,
    }
}

/// What the gateway may connect to.
#[derive(Debug)]
pub struct EgressPolicy {
    /// Operator-only: networks reachable even though [`classify`] refuses them (development,
    /// tests, on-premises upstreams). Never admits a metadata address unless a net names it
    /// exactly (`/32`, `/128`), never `0.0.0.0`/`::`, never an IPv4-carrying IPv6 range
    /// (mapped, compatible, NAT64, 6to4, Teredo), and never an address in `own`.
    allowed_private: Vec<IpNet>,
    /// The gateway's own listen addresses. A listener on `0.0.0.0` or `::` accepts on every
    /// local address, so on that port every address `classify` refuses (loopback, private,
    /// unspecified, …) counts as own. The host's public addresses cannot be known here: a
    /// listener bound to one must be listed with it.
    /// Grows when a listener is bound (its port may have been chosen by the system).
    own: std::sync::RwLock<Vec<SocketAddr>>,
}

impl EgressPolicy {
    pub fn new(allowed_private: Vec<IpNet>, own: Vec<SocketAddr>) -> Self {
        Self {
            allowed_private,
            own: std::sync::RwLock::new(own),
        }
    }

    /// Count one more listen address as the gateway's own (a listener bound after the policy
    /// was made, on a port the system chose).
    pub fn add_own(&self, addr: SocketAddr) {
        let mut own = self.own.write().expect("lock poisoned");
        if !own.contains(&addr) {
            own.push(addr);
        }
    }

    /// Check one destination before connecting.
    pub fn check_addr(&self, addr: SocketAddr) -> Result<(), Refusal> {
        self.check_ip(addr.ip(), Some(addr.port()))
            .map_err(|rule| Refusal::new(rule, describe(addr.ip(), rule, &addr.to_string())))
    }

    /// Check a whole lookup answer for `host`: refused whole if any address is refused, or if
    /// there is none. `port` is the destination port when known; when it is not (`None`), an
    /// address counts as own if it would be own on any port — the safe side.
    pub fn check_answer(
        &self,
        host: &str,
        port: Option<u16>,
        answer: &[IpAddr],
    ) -> Result<(), Refusal> {
        if answer.is_empty() {
            return Err(Refusal::new(
                Rule::Unresolvable,
                format!("`{host}` has no addresses"),
            ));
        }
        for ip in answer {
            self.check_ip(*ip, port).map_err(|rule| {
                let shown = match port {
                    Some(port) => SocketAddr::new(*ip, port).to_string(),
                    None => ip.to_string(),
                };
                Refusal::new(rule, format!("`{host}` → {}", describe(*ip, rule, &shown)))
            })?;
        }
        Ok(())
    }

    /// Vet a URL before any lookup; see the module documentation.
    pub fn check_url(&self, url: &str, tenant_hosts: &HostAllowList) -> Result<Url, Refusal> {
        // The parser's messages ("invalid IPv4 address", …) never repeat the input.
        let url = Url::parse(url).map_err(|e| Refusal::new(Rule::InvalidUrl, e.to_string()))?;
        self.check_parsed(&url, tenant_hosts)?;
        Ok(url)
    }

    /// [`check_url`](Self::check_url) for a URL already parsed; returns the destination port.
    fn check_parsed(&self, url: &Url, tenant_hosts: &HostAllowList) -> Result<u16, Refusal> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refusal::new(Rule::Scheme, format!("`{}`", url.scheme())));
        }
        let host = url.host_str().unwrap_or_default();
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refusal::new(
                Rule::Userinfo,
                format!("credentials for `{host}`"),
            ));
        }
        if host.is_empty() {
            return Err(Refusal::new(Rule::NoHost, "no host"));
        }
        let port = match url.port_or_known_default() {
            Some(0) | None => return Err(Refusal::new(Rule::Port, format!("`{host}:0`"))),
            Some(port) => port,
        };
        if let Some(ip) = ip_literal(host) {
            self.check_addr(SocketAddr::new(ip, port))?;
            if url.scheme() == "http" && classify(ip).is_none() {
                return Err(Refusal::new(
                    Rule::PlainHttp,
                    format!("`{host}` is public: use https"),
                ));
            }
        }
        if !tenant_hosts.allows(host) {
            return Err(Refusal::new(Rule::HostNotAllowed, format!("`{host}`")));
        }
        Ok(port)
    }

    fn check_ip(&self, ip: IpAddr, port: Option<u16>) -> Result<(), Rule> {
        if let Some(rule) = classify(ip)
            && !self.admits(ip, rule)
        {
            return Err(rule);
        }
        if self.is_own(ip, port) {
            return Err(Rule::OwnAddress);
        }
        Ok(())
    }

    /// Whether `allowed_private` lets through `ip`, which `classify` refused with `rule`.
    fn admits(&self, ip: IpAddr, rule: Rule) -> bool {
        match rule {
            Rule::Unspecified => false,
            rule if rule.is_ipv4_wrapper() => false,
            Rule::Metadata => self
                .allowed_private
                .iter()
                .any(|net| net.prefix_len() == net.max_prefix_len() && net.addr() == ip),
            _ => self.allowed_private.iter().any(|net| net.contains(&ip)),
        }
    }

    fn is_own(&self, ip: IpAddr, port: Option<u16>) -> bool {
        let ip = ip.to_canonical();
        self.own
            .read()
            .expect("lock poisoned")
            .iter()
            .any(|listener| {
                if port.is_some_and(|port| port != listener.port()) {
                    return false;
                }
                if listener.ip().is_unspecified() {
                    classify(ip).is_some()
                } else {
                    listener.ip().to_canonical() == ip
                }
            })
    }
}

/// `shown`, plus what an IPv4-carrying IPv6 address carries and how that would be classified.
fn describe(ip: IpAddr, rule: Rule, shown: &str) -> String {
    let embedded = match ip {
        IpAddr::V6(v6) if rule.is_ipv4_wrapper() => embedded_ipv4(v6),
        _ => None,
    };
    match embedded {
        Some(v4) => {
            let inner = classify(IpAddr::V4(v4)).map_or("public", |r| r.name());
            format!("{shown} embeds {v4} ({inner})")
        }
        None => shown.to_owned(),
    }
}

/// The address in a URL host, if the host is an IP literal (`[…]` for IPv6, as `Url` gives it).
fn ip_literal(host: &str) -> Option<IpAddr> {
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        None => host.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

/// A tenant's allowed hosts: exact hosts (`api.example.com`, `93.184.215.14`,
/// `[2606:4700::1]`) and suffix patterns (`*.example.com`: every name below `example.com`,
/// not `example.com` itself). Stored lowercase and IDNA-encoded, as [`Url`] gives hosts.
///
/// Empty means any public host. It only ever narrows: an allowed host whose address is
/// refused stays refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostAllowList {
    exact: Vec<String>,
    /// With the leading dot: `.example.com`.
    suffixes: Vec<String>,
}

/// A host pattern that is not a host (or `*.` and a domain).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid host pattern `{0}`")]
pub struct InvalidHostPattern(pub String);

impl HostAllowList {
    /// Any public host.
    pub fn any() -> Self {
        Self::default()
    }

    pub fn parse<I, S>(patterns: I) -> Result<Self, InvalidHostPattern>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list = Self::default();
        for pattern in patterns {
            let pattern = pattern.as_ref();
            let invalid = || InvalidHostPattern(pattern.to_owned());
            match pattern.strip_prefix("*.") {
                Some(suffix) => {
                    let suffix = normalise_host(suffix).ok_or_else(invalid)?;
                    if ip_literal(&suffix).is_some() {
                        return Err(invalid());
                    }
                    list.suffixes.push(format!(".{suffix}"));
                }
                None => list
                    .exact
                    .push(normalise_host(pattern).ok_or_else(invalid)?),
            }
        }
        Ok(list)
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.suffixes.is_empty()
    }

    /// Whether `host` (as [`Url::host_str`] gives it) is allowed.
    pub fn allows(&self, host: &str) -> bool {
        if self.is_empty() {
            return true;
        }
        let host = host.strip_suffix('.').unwrap_or(host);
        self.exact.iter().any(|exact| exact == host)
            || self.suffixes.iter().any(|suffix| host.ends_with(suffix))
    }
}

/// A pattern as `Url` would give it as a host (lowercase, IDNA, canonical IP), without a
/// trailing dot; `None` unless the pattern is a host and nothing else.
fn normalise_host(pattern: &str) -> Option<String> {
    if pattern.is_empty()
        || pattern
            .chars()
            .any(|c| matches!(c, '/' | '\\' | '@' | '?' | '#' | '*' | '%') || c.is_whitespace())
    {
        return None;
    }
    // A port (`host:80`) is not part of a host; `Url::port` would hide the default one.
    let has_port = if pattern.starts_with('[') {
        !pattern.ends_with(']')
    } else {
        pattern.contains(':')
    };
    if has_port {
        return None;
    }
    let url = Url::parse(&format!("http://{pattern}/")).ok()?;
    let host = url.host_str()?;
    Some(host.strip_suffix('.').unwrap_or(host).to_owned()).filter(|h| !h.is_empty())
}

/// Name resolution, as a seam: the system resolver in production, a table in tests.
pub trait Lookup: Send + Sync + 'static {
    fn lookup(&self, host: &str) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>>;
}

/// The system resolver (`getaddrinfo`, through tokio's blocking pool).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: &str) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
        let host = host.to_owned();
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(addrs.map(|addr| addr.ip()).collect())
        })
    }
}

/// A fixed table of answers, for tests. Each host has a sequence of answers handed out in
/// turn, the last one repeating — so a rebinding resolver ("public, then loopback") can be
/// modelled. Unknown hosts fail as `NotFound`. Names are matched lowercase, without a
/// trailing dot.
#[derive(Debug, Default)]
pub struct StaticLookup {
    hosts: HashMap<String, (Vec<Vec<IpAddr>>, Mutex<usize>)>,
}

impl StaticLookup {
    pub fn new() -> Self {
        Self::default()
    }

    /// `host` always answers `answer`.
    pub fn with(self, host: &str, answer: Vec<IpAddr>) -> Self {
        self.with_sequence(host, vec![answer])
    }

    /// `host` answers each of `answers` in turn, then the last one forever.
    pub fn with_sequence(mut self, host: &str, answers: Vec<Vec<IpAddr>>) -> Self {
        self.hosts
            .insert(static_key(host), (answers, Mutex::new(0)));
        self
    }

    /// How many times `host` was looked up.
    pub fn lookups(&self, host: &str) -> usize {
        self.hosts.get(&static_key(host)).map_or(0, |(_, count)| {
            *count.lock().unwrap_or_else(|e| e.into_inner())
        })
    }
}

fn static_key(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

impl Lookup for StaticLookup {
    fn lookup(&self, host: &str) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
        let answer = match self.hosts.get(&static_key(host)) {
            Some((answers, count)) => {
                let mut count = count.lock().unwrap_or_else(|e| e.into_inner());
                let answer = answers
                    .get(*count)
                    .or(answers.last())
                    .cloned()
                    .unwrap_or_default();
                *count += 1;
                Ok(answer)
            }
            None => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such host",
            )),
        };
        Box::pin(futures::future::ready(answer))
    }
}

tokio::task_local! {
    /// The destination port of the request [`Egress::send`] is sending. reqwest's resolver is
    /// handed a bare name, but whether an address is the gateway's own depends on the port.
    /// hyper-util calls the resolver while the request future is first polled, inside this
    /// scope; where it is absent (the plain client, or a connect finished in the background)
    /// the resolver assumes any port — refusing more, never less.
    static DESTINATION_PORT: u16;
    /// Whether that request is plain `http://` (public answers are then refused: see
    /// [`Rule::PlainHttp`]). Absent: assumed plain — refusing more, never less.
    static PLAIN_HTTP: bool;
}

/// The client's resolver: one lookup, every address checked, the whole answer refused if any
/// address is, otherwise exactly the checked addresses returned (with port 0, which hyper-util
/// replaces by the URL's port). hyper-util connects only to what this returns.
pub struct CheckedResolver {
    policy: Arc<EgressPolicy>,
    lookup: Arc<dyn Lookup>,
    /// Refusals so far (resolver and, through [`Egress`], URL checks), for metrics.
    refusals: Arc<AtomicU64>,
    /// The destination port, when this resolver serves one destination only (a client made
    /// for one upstream); otherwise the port [`Egress::send`] sets for its request.
    port: Option<u16>,
    /// Whether that one destination is plain `http://` (likewise).
    plain: Option<bool>,
}

impl CheckedResolver {
    pub fn new(policy: Arc<EgressPolicy>, lookup: Arc<dyn Lookup>) -> Self {
        Self {
            policy,
            lookup,
            refusals: Arc::new(AtomicU64::new(0)),
            port: None,
            plain: None,
        }
    }

    /// How many destinations were refused.
    pub fn refusals(&self) -> u64 {
        self.refusals.load(Ordering::Relaxed)
    }
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let port = self
            .port
            .or_else(|| DESTINATION_PORT.try_with(|port| *port).ok());
        let plain = self
            .plain
            .or_else(|| PLAIN_HTTP.try_with(|plain| *plain).ok())
            .unwrap_or(true);
        let lookup = self.lookup.lookup(&host);
        let policy = self.policy.clone();
        let refusals = self.refusals.clone();
        Box::pin(async move {
            let checked = match lookup.await {
                Ok(answer) => policy
                    .check_answer(&host, port, &answer)
                    .and_then(
                        |()| match answer.iter().find(|ip| classify(**ip).is_none()) {
                            Some(public) if plain => Err(Refusal::new(
                                Rule::PlainHttp,
                                format!("`{host}` → {public} is public: use https"),
                            )),
                            _ => Ok(()),
                        },
                    )
                    .map(|()| answer),
                Err(e) => Err(Refusal::new(
                    Rule::Unresolvable,
                    format!("`{host}`: {}", e.kind()),
                )),
            };
            match checked {
                Ok(answer) => {
                    let addrs: Addrs =
                        Box::new(answer.into_iter().map(|ip| SocketAddr::new(ip, 0)));
                    Ok(addrs)
                }
                Err(refusal) => {
                    note_refusal(&refusals, &refusal);
                    Err(Box::new(refusal) as Box<dyn std::error::Error + Send + Sync>)
                }
            }
        })
    }
}

fn note_refusal(refusals: &AtomicU64, refusal: &Refusal) {
    refusals.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(rule = refusal.rule.name(), detail = %refusal.detail, "egress refused");
}

/// The one pooled outbound client, resolving through a [`CheckedResolver`].
///
/// IP-literal URLs never reach a resolver: a request sent with this client directly is only
/// checked if its host is a name. Send through [`Egress`], which vets every URL first.
pub fn client(
    policy: Arc<EgressPolicy>,
    lookup: Arc<dyn Lookup>,
) -> Result<reqwest::Client, reqwest::Error> {
    build_client(Arc::new(CheckedResolver::new(policy, lookup)), &[])
}

fn build_client(
    resolver: Arc<CheckedResolver>,
    roots: &[reqwest::Certificate],
) -> Result<reqwest::Client, reqwest::Error> {
    let mut builder = reqwest::Client::builder()
        // rustls: the system's trusted roots plus the operator's (`egress.ca_file`), TLS 1.2
        // at least, names and addresses verified.
        .min_tls_version(reqwest::tls::Version::TLS_1_2);
    for root in roots {
        builder = builder.add_root_certificate(root.clone());
    }
    builder
        .dns_resolver(resolver)
        // A redirect is a new destination nobody vetted; callers see the 3xx.
        .redirect(reqwest::redirect::Policy::none())
        // reqwest honours HTTP_PROXY/HTTPS_PROXY/ALL_PROXY by default; a proxy would resolve
        // and connect on our behalf, bypassing both checks.
        .no_proxy()
        .pool_max_idle_per_host(64)
        .pool_idle_timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10))
        .build()
}

/// The policy and the client together: the only way the gateway should send outbound HTTP.
pub struct Egress {
    /// Extra trusted roots, for the clients made per destination too.
    roots: Vec<reqwest::Certificate>,
    policy: Arc<EgressPolicy>,
    resolver: Arc<CheckedResolver>,
    client: reqwest::Client,
}

impl Egress {
    pub fn new(policy: EgressPolicy, lookup: Arc<dyn Lookup>) -> Result<Self, reqwest::Error> {
        Self::with_roots(policy, lookup, Vec::new())
    }

    /// With certificate authorities trusted besides the system's (an on-premises upstream's
    /// private CA).
    pub fn with_roots(
        policy: EgressPolicy,
        lookup: Arc<dyn Lookup>,
        roots: Vec<reqwest::Certificate>,
    ) -> Result<Self, reqwest::Error> {
        let policy = Arc::new(policy);
        let resolver = Arc::new(CheckedResolver::new(policy.clone(), lookup));
        let client = build_client(resolver.clone(), &roots)?;
        Ok(Self {
            policy,
            resolver,
            client,
            roots,
        })
    }

    pub fn policy(&self) -> &EgressPolicy {
        &self.policy
    }

    /// Where a tunnel to `target` (`host:port`, as a CONNECT request names it) may go: the
    /// destination vetted as an `https://` URL would be, then every address its name resolves
    /// to (the whole answer refused if any address is). The launched programs' egress proxy
    /// connects only to what this returns.
    pub async fn tunnel_addrs(
        &self,
        target: &str,
        hosts: &HostAllowList,
    ) -> Result<Vec<SocketAddr>, Refusal> {
        // Only `host:port`: nothing that would make the URL mean something else.
        if target.is_empty()
            || target.len() > 300
            || target
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "/?#@\\".contains(c))
        {
            return Err(Refusal::new(Rule::InvalidUrl, "not a host:port"));
        }
        let url = self.check_url(&format!("https://{target}/"), hosts)?;
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default().unwrap_or(443);
        if let Some(ip) = ip_literal(host) {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let answer = self
            .resolver
            .lookup
            .lookup(host)
            .await
            .map_err(|e| Refusal::new(Rule::Unresolvable, format!("`{host}`: {}", e.kind())));
        let answer = answer.and_then(|answer| {
            self.policy
                .check_answer(host, Some(port), &answer)
                .map(|()| answer)
        });
        match answer {
            Ok(answer) => Ok(answer
                .into_iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect()),
            Err(refusal) => {
                note_refusal(&self.resolver.refusals, &refusal);
                Err(refusal)
            }
        }
    }

    /// The pooled client, for building requests. Send them with [`send`](Self::send).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// A client of its own for one vetted destination whose requests are sent by a library
    /// (rmcp's streamable-HTTP transport) rather than through [`send`](Self::send): the URL
    /// is checked here, once, and the resolver knows the destination port. The URL must not
    /// change afterwards (an upstream's address is fixed per connection).
    pub fn client_for(
        &self,
        url: &str,
        hosts: &HostAllowList,
    ) -> Result<(Url, reqwest::Client), EgressError> {
        let url = self.check_url(url, hosts)?;
        let port = url.port_or_known_default().unwrap_or(0);
        let resolver = Arc::new(CheckedResolver {
            policy: self.policy.clone(),
            lookup: self.resolver.lookup.clone(),
            refusals: self.resolver.refusals.clone(),
            port: Some(port),
            plain: Some(url.scheme() == "http"),
        });
        let client = build_client(resolver, &self.roots).map_err(EgressError::from_reqwest)?;
        Ok((url, client))
    }

    /// How many destinations were refused, by URL check or resolver.
    pub fn refusals(&self) -> u64 {
        self.resolver.refusals()
    }

    pub fn check_url(&self, url: &str, hosts: &HostAllowList) -> Result<Url, Refusal> {
        self.policy
            .check_url(url, hosts)
            .inspect_err(|refusal| note_refusal(&self.resolver.refusals, refusal))
    }

    /// `GET url`, vetted.
    pub async fn get(
        &self,
        url: &str,
        hosts: &HostAllowList,
    ) -> Result<reqwest::Response, EgressError> {
        let url = self.check_url(url, hosts)?;
        self.send(reqwest::Request::new(reqwest::Method::GET, url), hosts)
            .await
    }

    /// Vet the request's URL, then send it; a resolver refusal comes back as
    /// [`EgressError::Refused`].
    pub async fn send(
        &self,
        request: reqwest::Request,
        hosts: &HostAllowList,
    ) -> Result<reqwest::Response, EgressError> {
        let port = self
            .policy
            .check_parsed(request.url(), hosts)
            .inspect_err(|refusal| note_refusal(&self.resolver.refusals, refusal))?;
        let plain = request.url().scheme() == "http";
        DESTINATION_PORT
            .scope(port, PLAIN_HTTP.scope(plain, self.client.execute(request)))
            .await
            .map_err(EgressError::from_reqwest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio::net::TcpListener;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    /// Which policy and allow list a hostile case is checked under.
    #[derive(Debug, Clone, Copy)]
    enum Context {
        /// Nothing private allowed; the gateway listens on `0.0.0.0:8080`.
        Strict,
        /// `allowed_private = 127.0.0.0/8`; the gateway listens on `127.0.0.1:8080` and
        /// `[::]:9443`.
        LoopbackAllowed,
        /// Strict, with a tenant allow list that (wrongly) names loopback hosts too.
        Tenant,
    }

    fn policy(context: Context) -> EgressPolicy {
        match context {
            Context::Strict | Context::Tenant => {
                EgressPolicy::new(vec![], vec!["0.0.0.0:8080".parse().unwrap()])
            }
            Context::LoopbackAllowed => EgressPolicy::new(
                vec![net("127.0.0.0/8")],
                vec![
                    "127.0.0.1:8080".parse().unwrap(),
                    "[::]:9443".parse().unwrap(),
                ],
            ),
        }
    }

    fn hosts(context: Context) -> HostAllowList {
        match context {
            Context::Tenant => HostAllowList::parse([
                "api.example.com",
                "*.example.org",
                "127.0.0.1",
                "localhost.test",
                "[::1]",
            ])
            .unwrap(),
            _ => HostAllowList::any(),
        }
    }

    fn names() -> StaticLookup {
        StaticLookup::new()
            .with("internal.test", vec![ip("10.0.0.1")])
            .with("localhost.test", vec![ip("127.0.0.1")])
            .with("localhost", vec![ip("127.0.0.1"), ip("::1")])
            .with("v6loop.test", vec![ip("::1")])
            .with("metadata.test", vec![ip("169.254.169.254")])
            .with("mixed.test", vec![ip("93.184.215.14"), ip("10.0.0.1")])
            .with("mixed6.test", vec![ip("2606:4700::1"), ip("fd00::1")])
            .with("mapped.test", vec![ip("::ffff:169.254.169.254")])
            .with("empty.test", vec![])
            .with("self.test", vec![ip("127.0.0.1")])
            .with("lan.test", vec![ip("192.168.1.10")])
            .with("public.test", vec![ip("93.184.215.14"), ip("2606:4700::1")])
            .with("evil.example.net", vec![ip("93.184.215.14")])
            .with("example.org", vec![ip("93.184.215.14")])
            .with("api.example.com.evil.net", vec![ip("93.184.215.14")])
    }

    /// Check `url` the way [`Egress::send`] does — URL first, then (for a name) the resolver
    /// with the destination port in scope — without connecting. Returns what the client
    /// would connect to.
    async fn vet(
        policy: EgressPolicy,
        lookup: Arc<dyn Lookup>,
        url: &str,
        hosts: &HostAllowList,
    ) -> Result<Vec<SocketAddr>, Refusal> {
        let policy = Arc::new(policy);
        let url = policy.check_url(url, hosts)?;
        let port = url.port_or_known_default().unwrap();
        let host = url.host_str().unwrap();
        if let Some(ip) = ip_literal(host) {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let resolver = CheckedResolver::new(policy, lookup);
        let name: Name = host.parse().unwrap();
        let plain = url.scheme() == "http";
        let resolved = DESTINATION_PORT
            .scope(
                port,
                PLAIN_HTTP.scope(plain, async { resolver.resolve(name).await }),
            )
            .await;
        match resolved {
            Ok(addrs) => Ok(addrs.map(|a| SocketAddr::new(a.ip(), port)).collect()),
            Err(e) => Err(refusal_in(e.as_ref()).expect("a refusal").clone()),
        }
    }

    use Context::{LoopbackAllowed, Strict, Tenant};

    /// The hostile destinations: 92 cases, each refused with the rule named.
    const HOSTILE: &[(&str, Context, Rule)] = &[
        // IPv4 in every spelling the WHATWG parser normalises.
        ("http://2130706433/", Strict, Rule::Loopback),
        ("http://0x7f000001/", Strict, Rule::Loopback),
        ("http://0177.0.0.1/", Strict, Rule::Loopback),
        ("http://127.1/", Strict, Rule::Loopback),
        ("http://0x7f.1/", Strict, Rule::Loopback),
        ("http://017700000001/", Strict, Rule::Loopback),
        ("http://127.0.0.1/", Strict, Rule::Loopback),
        ("http://127.255.255.254:8443/", Strict, Rule::Loopback),
        ("http://0.0.0.0/", Strict, Rule::Unspecified),
        ("http://0/", Strict, Rule::Unspecified),
        ("http://0.1.2.3/", Strict, Rule::ThisNetwork),
        ("http://10.0.0.1/", Strict, Rule::Private),
        ("http://172.16.0.1/", Strict, Rule::Private),
        ("http://172.31.255.255/", Strict, Rule::Private),
        ("http://192.168.1.1/", Strict, Rule::Private),
        ("http://0xc0a80001/", Strict, Rule::Private),
        (
            "http://169.254.169.254/latest/meta-data/",
            Strict,
            Rule::Metadata,
        ),
        (
            "http://169.254.170.2/v2/credentials",
            Strict,
            Rule::Metadata,
        ),
        ("http://100.100.100.200/", Strict, Rule::Metadata),
        ("http://[fd00:ec2::254]/", Strict, Rule::Metadata),
        ("http://169.254.0.1/", Strict, Rule::LinkLocal),
        ("http://100.64.0.1/", Strict, Rule::CarrierGradeNat),
        ("http://100.127.255.254/", Strict, Rule::CarrierGradeNat),
        ("http://198.18.0.1/", Strict, Rule::Benchmark),
        ("http://198.19.255.255/", Strict, Rule::Benchmark),
        ("http://192.0.2.1/", Strict, Rule::Documentation),
        ("http://198.51.100.7/", Strict, Rule::Documentation),
        ("http://203.0.113.9/", Strict, Rule::Documentation),
        ("http://192.0.0.8/", Strict, Rule::IetfProtocol),
        ("http://192.88.99.1/", Strict, Rule::SixToFour),
        ("http://224.0.0.1/", Strict, Rule::Multicast),
        ("http://239.255.255.250/", Strict, Rule::Multicast),
        ("http://240.0.0.1/", Strict, Rule::Reserved),
        ("http://255.255.255.255/", Strict, Rule::Broadcast),
        // IPv6, including every way of carrying IPv4.
        ("http://[::1]/", Strict, Rule::Loopback),
        ("http://[::]/", Strict, Rule::Unspecified),
        ("http://[::ffff:127.0.0.1]/", Strict, Rule::Ipv4Mapped),
        ("http://[::ffff:7f00:1]/", Strict, Rule::Ipv4Mapped),
        ("http://[::ffff:8.8.8.8]/", Strict, Rule::Ipv4Mapped),
        ("http://[::127.0.0.1]/", Strict, Rule::Ipv4Compatible),
        ("http://[64:ff9b::a9fe:a9fe]/", Strict, Rule::Nat64),
        ("http://[64:ff9b:1::1]/", Strict, Rule::Nat64),
        ("http://[2002:a9fe:a9fe::]/", Strict, Rule::SixToFour),
        (
            "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
            Strict,
            Rule::Teredo,
        ),
        ("http://[2001:2::1]/", Strict, Rule::Benchmark),
        ("http://[2001:10::1]/", Strict, Rule::IetfProtocol),
        ("http://[2001:db8::1]/", Strict, Rule::Documentation),
        ("http://[3fff::1]/", Strict, Rule::Documentation),
        ("http://[5f00::1]/", Strict, Rule::Srv6Sid),
        ("http://[100::1]/", Strict, Rule::DiscardOnly),
        ("http://[fc00::1]/", Strict, Rule::UniqueLocal),
        ("http://[fd12:3456::1]/", Strict, Rule::UniqueLocal),
        ("http://[fe80::1]/", Strict, Rule::LinkLocal),
        // The parser refuses zone identifiers outright.
        ("http://[fe80::1%25eth0]/", Strict, Rule::InvalidUrl),
        ("http://[fec0::1]/", Strict, Rule::SiteLocal),
        ("http://[ff02::1]/", Strict, Rule::Multicast),
        ("http://[4000::1]/", Strict, Rule::NotGlobalUnicast),
        // Schemes, credentials, ports, malformed URLs.
        ("ftp://example.com/", Strict, Rule::Scheme),
        ("file:///etc/passwd", Strict, Rule::Scheme),
        ("gopher://example.com:70/_", Strict, Rule::Scheme),
        ("javascript:alert(1)", Strict, Rule::Scheme),
        ("http://user:pass@example.com/", Strict, Rule::Userinfo),
        ("http://example.com@127.0.0.1/", Strict, Rule::Userinfo),
        ("http://:secret@example.com/", Strict, Rule::Userinfo),
        ("http://127.0.0.1#@evil.com/", Strict, Rule::Loopback),
        ("http://127.0.0.1\\@evil.com/", Strict, Rule::Loopback),
        ("http://example.com:0/", Strict, Rule::Port),
        ("http://", Strict, Rule::InvalidUrl),
        ("127.0.0.1", Strict, Rule::InvalidUrl),
        ("http://example.com:99999/", Strict, Rule::InvalidUrl),
        // Names whose answers are refused (whole, when mixed).
        ("http://internal.test/", Strict, Rule::Private),
        ("http://localhost.test/", Strict, Rule::Loopback),
        ("http://LOCALHOST.test./", Strict, Rule::Loopback),
        ("http://localhost/", Strict, Rule::Loopback),
        ("http://v6loop.test/", Strict, Rule::Loopback),
        ("http://metadata.test/", Strict, Rule::Metadata),
        ("http://mixed.test/", Strict, Rule::Private),
        ("http://mixed6.test/", Strict, Rule::UniqueLocal),
        ("http://mapped.test/", Strict, Rule::Ipv4Mapped),
        ("http://nowhere.test/", Strict, Rule::Unresolvable),
        ("http://empty.test/", Strict, Rule::Unresolvable),
        // The gateway's own listeners, with loopback allowed.
        ("http://127.0.0.1:8080/", LoopbackAllowed, Rule::OwnAddress),
        ("http://127.0.0.5:9443/", LoopbackAllowed, Rule::OwnAddress),
        ("http://self.test:8080/", LoopbackAllowed, Rule::OwnAddress),
        ("http://169.254.169.254/", LoopbackAllowed, Rule::Metadata),
        ("http://lan.test/", LoopbackAllowed, Rule::Private),
        // Tenant allow lists narrow, never widen.
        ("http://evil.example.net/", Tenant, Rule::HostNotAllowed),
        ("http://example.org/", Tenant, Rule::HostNotAllowed),
        (
            "http://api.example.com.evil.net/",
            Tenant,
            Rule::HostNotAllowed,
        ),
        ("http://127.0.0.1/", Tenant, Rule::Loopback),
        ("http://[::1]/", Tenant, Rule::Loopback),
        ("http://localhost.test/", Tenant, Rule::Loopback),
    ];

    #[tokio::test]
    async fn every_hostile_destination_is_refused_naming_its_rule() {
        assert_eq!(
            HOSTILE.len(),
            92,
            "update the count in the table's doc comment"
        );
        let lookup: Arc<dyn Lookup> = Arc::new(names());
        let mut wrong = Vec::new();
        for (url, context, rule) in HOSTILE {
            match vet(policy(*context), lookup.clone(), url, &hosts(*context)).await {
                Ok(addrs) => wrong.push(format!("{url} ({context:?}): allowed {addrs:?}")),
                Err(refusal) if refusal.rule != *rule => wrong.push(format!(
                    "{url} ({context:?}): expected {rule}, got {refusal}"
                )),
                Err(_) => {}
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[tokio::test]
    async fn public_destinations_pass() {
        let lookup: Arc<dyn Lookup> = Arc::new(names());
        for addr in [
            "93.184.215.14:443",
            "[2606:4700::1]:443",
            "1.1.1.1:80",
            "[2001:4860:4860::8888]:53",
            // Just outside special ranges.
            "172.32.0.1:80",
            "100.128.0.1:80",
            "198.20.0.1:80",
            "192.0.1.1:80",
            "[2001:200::1]:80",
            "[2003::1]:80",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            assert_eq!(policy(Strict).check_addr(addr), Ok(()), "{addr}");
        }
        let reached = vet(
            policy(Strict),
            lookup.clone(),
            "https://public.test/x",
            &HostAllowList::any(),
        )
        .await
        .unwrap();
        assert_eq!(
            reached,
            vec![
                "93.184.215.14:443".parse().unwrap(),
                "[2606:4700::1]:443".parse().unwrap()
            ]
        );
        let allowed = HostAllowList::parse(["API.Example.com", "*.example.org"]).unwrap();
        for url in [
            "http://api.example.com/",
            "http://api.example.com./v1",
            "http://a.example.org/",
            "http://a.b.example.org:8443/",
            "https://93.184.215.14/",
        ] {
            let result = policy(Strict).check_url(url, &allowed);
            if url.contains("93.184") {
                assert_eq!(result.unwrap_err().rule, Rule::HostNotAllowed);
            } else {
                assert!(result.is_ok(), "{url}: {result:?}");
            }
        }
    }

    #[test]
    fn allowed_private_admits_its_networks_but_not_metadata_or_own_addresses() {
        let loopback = policy(LoopbackAllowed);
        assert_eq!(
            loopback.check_addr("127.0.0.1:9000".parse().unwrap()),
            Ok(())
        );
        assert_eq!(
            loopback.check_addr("127.0.0.2:8080".parse().unwrap()),
            Ok(())
        );
        let own = loopback
            .check_addr("127.0.0.1:8080".parse().unwrap())
            .unwrap_err();
        assert_eq!(own.rule, Rule::OwnAddress);
        // `[::]:9443` is every local address on that port.
        for addr in ["127.0.0.9:9443", "[::ffff:127.0.0.1]:8080"] {
            let refused = loopback.check_addr(addr.parse().unwrap()).unwrap_err();
            assert!(
                matches!(refused.rule, Rule::OwnAddress | Rule::Ipv4Mapped),
                "{addr}: {refused}"
            );
        }
        // A port-less check (the plain client's resolver) assumes the worst.
        let refused = loopback
            .check_answer("self.test", None, &[ip("127.0.0.1")])
            .unwrap_err();
        assert_eq!(refused.rule, Rule::OwnAddress);

        let link_local = EgressPolicy::new(vec![net("169.254.0.0/16"), net("fd00::/8")], vec![]);
        assert_eq!(
            link_local.check_addr("169.254.1.1:80".parse().unwrap()),
            Ok(())
        );
        for metadata in [
            "169.254.169.254:80",
            "169.254.170.2:80",
            "[fd00:ec2::254]:80",
        ] {
            let refused = link_local
                .check_addr(metadata.parse().unwrap())
                .unwrap_err();
            assert_eq!(refused.rule, Rule::Metadata, "{metadata}");
        }
        let named = EgressPolicy::new(
            vec![net("169.254.169.254/32"), net("fd00:ec2::254/128")],
            vec![],
        );
        assert_eq!(
            named.check_addr("169.254.169.254:80".parse().unwrap()),
            Ok(())
        );
        assert_eq!(
            named.check_addr("[fd00:ec2::254]:80".parse().unwrap()),
            Ok(())
        );
        assert_eq!(
            named
                .check_addr("169.254.170.2:80".parse().unwrap())
                .unwrap_err()
                .rule,
            Rule::Metadata
        );

        // Never the unspecified address or an IPv4-carrying wrapper, whatever the nets say.
        let everything = EgressPolicy::new(vec![net("0.0.0.0/0"), net("::/0")], vec![]);
        for (addr, rule) in [
            ("0.0.0.0:80", Rule::Unspecified),
            ("[::]:80", Rule::Unspecified),
            ("[::ffff:10.0.0.1]:80", Rule::Ipv4Mapped),
            ("[64:ff9b::a00:1]:80", Rule::Nat64),
            ("[2002:a00:1::]:80", Rule::SixToFour),
            ("[2001::1]:80", Rule::Teredo),
            ("169.254.169.254:80", Rule::Metadata),
        ] {
            let refused = everything.check_addr(addr.parse().unwrap()).unwrap_err();
            assert_eq!(refused.rule, rule, "{addr}");
        }
        assert_eq!(
            everything.check_addr("10.0.0.1:80".parse().unwrap()),
            Ok(())
        );
    }

    #[test]
    fn refusals_name_the_embedded_ipv4_and_hold_no_secrets() {
        let strict = policy(Strict);
        let mapped = strict
            .check_addr("[::ffff:127.0.0.1]:80".parse().unwrap())
            .unwrap_err();
        assert_eq!(
            mapped.to_string(),
            "egress refused (ipv4-mapped): [::ffff:127.0.0.1]:80 embeds 127.0.0.1 (loopback)"
        );
        let teredo = strict
            .check_url(
                "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
                &HostAllowList::any(),
            )
            .unwrap_err();
        assert!(
            teredo.detail.ends_with("embeds 192.0.2.45 (documentation)"),
            "{teredo}"
        );
        let six_to_four = strict
            .check_url("http://[2002:a9fe:a9fe::]/", &HostAllowList::any())
            .unwrap_err();
        assert!(
            six_to_four
                .detail
                .ends_with("embeds 169.254.169.254 (metadata)")
        );
        let nat64 = strict
            .check_url("http://[64:ff9b::808:808]/", &HostAllowList::any())
            .unwrap_err();
        assert!(nat64.detail.ends_with("embeds 8.8.8.8 (public)"), "{nat64}");

        for url in [
            "http://alice:hunter2@127.0.0.1/private/path?token=abc",
            "http://127.0.0.1/private/path?token=abc#frag",
            "ftp://alice:hunter2@example.com/private/path?token=abc",
        ] {
            let message = strict
                .check_url(url, &HostAllowList::any())
                .unwrap_err()
                .to_string();
            for secret in ["hunter2", "alice", "private", "token", "frag"] {
                assert!(!message.contains(secret), "{message}");
            }
        }
    }

    #[test]
    fn rule_names_are_unique_kebab_case() {
        let mut names: Vec<_> = Rule::ALL.iter().map(Rule::name).collect();
        for name in &names {
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{name}"
            );
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Rule::ALL.len());
        assert_eq!(Rule::CarrierGradeNat.to_string(), "carrier-grade-nat");
    }

    #[test]
    fn host_patterns_are_normalised_and_validated() {
        let list =
            HostAllowList::parse(["*.Bücher.example", "[2606:4700:0::1]", "EXAMPLE.net."]).unwrap();
        assert!(list.allows("shop.xn--bcher-kva.example"));
        assert!(!list.allows("xn--bcher-kva.example"));
        assert!(list.allows("[2606:4700::1]"));
        assert!(list.allows("example.net"));
        assert!(!list.allows("www.example.net"));
        let url = policy(Strict)
            .check_url("http://SHOP.BÜCHER.example/", &list)
            .unwrap();
        assert_eq!(url.host_str(), Some("shop.xn--bcher-kva.example"));
        for bad in [
            "",
            "*",
            "*.",
            "a.*.com",
            "host:80",
            "user@host",
            "a/b",
            "ex ample.com",
            "*.1.2.3",
            "http://x",
        ] {
            assert!(HostAllowList::parse([bad]).is_err(), "{bad:?}");
        }
        assert!(HostAllowList::any().allows("anything.example"));
    }

    #[test]
    fn refusal_in_walks_the_source_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] Box<dyn std::error::Error + Send + Sync>);
        let refusal = Refusal::new(Rule::Loopback, "127.0.0.1:80");
        let nested = Outer(Box::new(Outer(Box::new(refusal.clone()))));
        assert_eq!(refusal_in(&nested), Some(&refusal));
        assert_eq!(refusal_in(&Outer("plain".into())), None);
    }

    // Integration: real loopback servers, a real client. Nothing leaves the host: every name
    // resolves through `StaticLookup` and every refused address is refused before connecting.

    /// Serve `body` to every request on `listener`; returns the hit counter.
    fn serve(listener: TcpListener, body: &'static str) -> Arc<AtomicUsize> {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let app = axum::Router::new().fallback(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async move { body }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        hits
    }

    /// Listeners on 127.0.0.2 and 127.0.0.1 with the same port (Linux routes all of
    /// 127.0.0.0/8 to the loopback interface).
    async fn listener_pair() -> (TcpListener, TcpListener) {
        for _ in 0..32 {
            let allowed = TcpListener::bind("127.0.0.2:0").await.unwrap();
            let port = allowed.local_addr().unwrap().port();
            if let Ok(refused) = TcpListener::bind(("127.0.0.1", port)).await {
                return (allowed, refused);
            }
        }
        panic!("no port free on both 127.0.0.2 and 127.0.0.1");
    }

    fn only_127_0_0_2(own: Vec<SocketAddr>) -> EgressPolicy {
        EgressPolicy::new(vec![net("127.0.0.2/32")], own)
    }

    fn refused(result: Result<reqwest::Response, EgressError>) -> Refusal {
        match result {
            Err(EgressError::Refused(refusal)) => refusal,
            Err(other) => panic!("expected a refusal, got {other}"),
            Ok(response) => panic!("expected a refusal, got {}", response.status()),
        }
    }

    #[tokio::test]
    async fn a_rebinding_resolver_reaches_only_the_checked_address() {
        let (allowed, hostile) = listener_pair().await;
        let port = allowed.local_addr().unwrap().port();
        let allowed_hits = serve(allowed, "allowed");
        let hostile_hits = serve(hostile, "hostile");
        let lookup = Arc::new(StaticLookup::new().with_sequence(
            "rebind.test",
            vec![vec![ip("127.0.0.2")], vec![ip("127.0.0.1")]],
        ));
        let url = format!("http://rebind.test:{port}/");
        let any = HostAllowList::any();

        // A fresh client (and pool) per request, so every request looks the name up.
        let first = Egress::new(only_127_0_0_2(vec![]), lookup.clone()).unwrap();
        let response = first.get(&url, &any).await.unwrap();
        assert_eq!(response.text().await.unwrap(), "allowed");

        let second = Egress::new(only_127_0_0_2(vec![]), lookup.clone()).unwrap();
        let refusal = refused(second.get(&url, &any).await);
        assert_eq!(refusal.rule, Rule::Loopback);
        assert_eq!(
            refusal.to_string(),
            format!("egress refused (loopback): `rebind.test` → 127.0.0.1:{port}")
        );
        assert_eq!(second.refusals(), 1);

        let third = Egress::new(only_127_0_0_2(vec![]), lookup.clone()).unwrap();
        assert_eq!(refused(third.get(&url, &any).await).rule, Rule::Loopback);

        assert_eq!(lookup.lookups("rebind.test"), 3);
        assert_eq!(allowed_hits.load(Ordering::SeqCst), 1);
        assert_eq!(hostile_hits.load(Ordering::SeqCst), 0);

        // An IP-literal URL never reaches the resolver: only the URL check stops it.
        let hostile_url = format!("http://127.0.0.1:{port}/");
        assert_eq!(
            refused(first.get(&hostile_url, &any).await).rule,
            Rule::Loopback
        );
        assert_eq!(hostile_hits.load(Ordering::SeqCst), 0);
        let unchecked = first.client().get(&hostile_url).send().await.unwrap();
        assert_eq!(unchecked.text().await.unwrap(), "hostile");
        assert_eq!(hostile_hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn redirects_are_returned_not_followed() {
        let target = TcpListener::bind("127.0.0.2:0").await.unwrap();
        let target_port = target.local_addr().unwrap().port();
        let target_hits = serve(target, "followed");
        let location = format!("http://other.test:{target_port}/");
        let app = axum::Router::new()
            .route(
                "/metadata",
                axum::routing::get(|| async {
                    (
                        http::StatusCode::FOUND,
                        [(http::header::LOCATION, "http://169.254.169.254/")],
                    )
                }),
            )
            .route(
                "/inside",
                axum::routing::get(move || async move {
                    (
                        http::StatusCode::FOUND,
                        [(http::header::LOCATION, location)],
                    )
                }),
            );
        let redirector = TcpListener::bind("127.0.0.2:0").await.unwrap();
        let port = redirector.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(redirector, app).await });
        let lookup = Arc::new(
            StaticLookup::new()
                .with("redirector.test", vec![ip("127.0.0.2")])
                .with("other.test", vec![ip("127.0.0.2")]),
        );
        let egress = Egress::new(only_127_0_0_2(vec![]), lookup.clone()).unwrap();
        let any = HostAllowList::any();

        let response = egress
            .get(&format!("http://redirector.test:{port}/metadata"), &any)
            .await
            .unwrap();
        assert_eq!(response.status(), http::StatusCode::FOUND);
        assert_eq!(
            response.headers()[http::header::LOCATION],
            "http://169.254.169.254/"
        );
        // Even a redirect to an allowed destination is the caller's decision.
        let response = egress
            .get(&format!("http://redirector.test:{port}/inside"), &any)
            .await
            .unwrap();
        assert_eq!(response.status(), http::StatusCode::FOUND);
        assert_eq!(lookup.lookups("other.test"), 0);
        assert_eq!(target_hits.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_mixed_answer_is_refused_whole_and_the_rule_reaches_reqwest_callers() {
        let listener = TcpListener::bind("127.0.0.2:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = serve(listener, "reached");
        let lookup =
            Arc::new(StaticLookup::new().with("mixed.test", vec![ip("127.0.0.2"), ip("10.0.0.1")]));
        let egress = Egress::new(only_127_0_0_2(vec![]), lookup.clone()).unwrap();
        let url = format!("http://mixed.test:{port}/");

        let refusal = refused(egress.get(&url, &HostAllowList::any()).await);
        assert_eq!(refusal.rule, Rule::Private);

        // Through the plain client the refusal is in reqwest's error's source chain.
        let error = egress.client().get(&url).send().await.unwrap_err();
        assert!(error.is_connect(), "{error:?}");
        assert_eq!(refusal_in(&error).map(|r| r.rule), Some(Rule::Private));
        assert_eq!(hits.load(Ordering::SeqCst), 0);
        assert_eq!(lookup.lookups("mixed.test"), 2);
        assert_eq!(egress.refusals(), 2);
    }

    #[tokio::test]
    async fn the_gateways_own_listener_is_refused_by_port() {
        let gateway = TcpListener::bind("127.0.0.2:0").await.unwrap();
        let gateway_addr = gateway.local_addr().unwrap();
        let gateway_hits = serve(gateway, "gateway");
        let upstream = TcpListener::bind("127.0.0.2:0").await.unwrap();
        let upstream_port = upstream.local_addr().unwrap().port();
        let upstream_hits = serve(upstream, "upstream");
        let lookup = Arc::new(StaticLookup::new().with("host.test", vec![ip("127.0.0.2")]));
        let egress = Egress::new(only_127_0_0_2(vec![gateway_addr]), lookup.clone()).unwrap();
        let any = HostAllowList::any();

        let own = format!("http://host.test:{}/", gateway_addr.port());
        assert_eq!(refused(egress.get(&own, &any).await).rule, Rule::OwnAddress);
        let own_literal = format!("http://{gateway_addr}/");
        assert_eq!(
            refused(egress.get(&own_literal, &any).await).rule,
            Rule::OwnAddress
        );
        // `send` tells the resolver the port, so the same address on another port passes.
        let upstream_url = format!("http://host.test:{upstream_port}/");
        let response = egress.get(&upstream_url, &any).await.unwrap();
        assert_eq!(response.text().await.unwrap(), "upstream");
        // The plain client's resolver does not know the port and refuses the address. (A new
        // client: the one above has a pooled connection to the upstream and would not resolve.)
        let plain = Egress::new(only_127_0_0_2(vec![gateway_addr]), lookup.clone()).unwrap();
        let error = plain.client().get(&upstream_url).send().await.unwrap_err();
        assert_eq!(refusal_in(&error).map(|r| r.rule), Some(Rule::OwnAddress));
        assert_eq!(gateway_hits.load(Ordering::SeqCst), 0);
        assert_eq!(upstream_hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn send_vets_requests_and_transport_errors_hide_the_url() {
        let lookup = Arc::new(StaticLookup::new().with("closed.test", vec![ip("127.0.0.2")]));
        let egress = Egress::new(only_127_0_0_2(vec![]), lookup).unwrap();
        let any = HostAllowList::any();

        // reqwest's builder moves URL credentials into an `Authorization` header; a request
        // made directly keeps them in the URL, and `send` refuses it.
        let url = Url::parse("http://alice:hunter2@closed.test/").unwrap();
        let request = reqwest::Request::new(reqwest::Method::POST, url);
        assert_eq!(
            refused(egress.send(request, &any).await).rule,
            Rule::Userinfo
        );
        let request = egress.client().post("http://127.0.0.1/").build().unwrap();
        assert_eq!(
            refused(egress.send(request, &any).await).rule,
            Rule::Loopback
        );

        // A port nothing listens on: bound, then released.
        let port = {
            let listener = TcpListener::bind("127.0.0.2:0").await.unwrap();
            listener.local_addr().unwrap().port()
        };
        let url = format!("http://closed.test:{port}/secret-path?token=hunter2");
        match egress.get(&url, &any).await {
            Err(EgressError::Transport(message)) => {
                assert!(!message.contains("hunter2"), "{message}");
                assert!(!message.contains("secret-path"), "{message}");
                assert!(!message.contains("closed.test"), "{message}");
            }
            other => panic!("expected a transport error, got {other:?}"),
        }
    }

    /// A TLS server on 127.0.0.2 with a certificate for `127.0.0.2` and `tls.test`, signed by
    /// a CA only the test knows; answers `200 tls` to one request per connection.
    async fn tls_server() -> (u16, reqwest::Certificate) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        use tokio_rustls::rustls;
        let ca = rcgen::generate_simple_self_signed(vec!["127.0.0.2".into(), "tls.test".into()])
            .expect("certificate");
        let trusted = reqwest::Certificate::from_pem(ca.cert.pem().as_bytes()).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ca.signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![ca.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.2:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let mut buf = [0u8; 4096];
                    let _ = tls.read(&mut buf).await;
                    let _ = tls
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\ntls",
                        )
                        .await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        (port, trusted)
    }

    #[tokio::test]
    async fn https_reaches_a_trusted_upstream_and_nothing_else() {
        let (port, trusted) = tls_server().await;
        let lookup = || -> Arc<dyn Lookup> {
            Arc::new(StaticLookup::new().with("tls.test", vec![ip("127.0.0.2")]))
        };
        let any = HostAllowList::any();
        let egress =
            Egress::with_roots(only_127_0_0_2(Vec::new()), lookup(), vec![trusted.clone()])
                .unwrap();
        for url in [
            format!("https://127.0.0.2:{port}/"),
            format!("https://tls.test:{port}/"),
        ] {
            let response = egress.get(&url, &any).await.expect(&url);
            assert_eq!(response.status(), 200, "{url}");
            assert_eq!(response.text().await.unwrap(), "tls");
        }
        // A certificate nobody trusts: refused by TLS, fails closed.
        let untrusting = Egress::new(only_127_0_0_2(Vec::new()), lookup()).unwrap();
        match untrusting
            .get(&format!("https://tls.test:{port}/"), &any)
            .await
        {
            Err(EgressError::Transport(_)) => {}
            other => panic!("expected a TLS failure, got {other:?}"),
        }
        // The name the certificate does not carry: refused even with the CA trusted.
        let wrong_name = Egress::with_roots(
            only_127_0_0_2(Vec::new()),
            Arc::new(StaticLookup::new().with("other.test", vec![ip("127.0.0.2")])),
            vec![trusted],
        )
        .unwrap();
        assert!(
            wrong_name
                .get(&format!("https://other.test:{port}/"), &any)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn plain_http_reaches_only_opened_networks() {
        let policy = EgressPolicy::new(Vec::new(), Vec::new());
        let any = HostAllowList::any();
        assert_eq!(
            policy
                .check_url("http://93.184.215.14/", &any)
                .unwrap_err()
                .rule,
            Rule::PlainHttp
        );
        assert!(policy.check_url("https://93.184.215.14/", &any).is_ok());
        // A name answering a public address over plain http is refused at the lookup.
        let egress = Egress::new(
            EgressPolicy::new(Vec::new(), Vec::new()),
            Arc::new(StaticLookup::new().with("public.test", vec![ip("93.184.215.14")])),
        )
        .unwrap();
        match egress.get("http://public.test/", &any).await {
            Err(EgressError::Refused(refusal)) => assert_eq!(refusal.rule, Rule::PlainHttp),
            other => panic!("expected plain-http, got {other:?}"),
        }
    }
}
