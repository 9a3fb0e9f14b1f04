//! The `http` tool's SSRF guard: which hosts and addresses a call may reach, under the
//! workflow's `network` policy.
//!
//! The guard judges the addresses the connection uses, not the URL text: names are resolved by
//! [`GuardedResolver`], which reqwest calls for every new connection (redirects included), so a
//! name that resolves to a metadata address, or that changes its answer between a check and the
//! connect (DNS rebinding), cannot get through. URLs whose host is an IP literal skip DNS, so they
//! are checked directly ([`Policy::check_url`]) before sending and on every redirect.

use std::error::Error as StdError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use baton_core::model::Network;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Redirects followed per request, as reqwest's default policy does.
const MAX_REDIRECTS: usize = 10;

/// The guard's policy, normalised so equal policies share one client.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct Policy {
    allow_private: bool,
    strict: bool,
    /// Lower case, without a trailing dot; `*.example.com` entries keep their `*.`.
    allow_hosts: Vec<String>,
    /// Loopback refused by the host, whatever the workflow says (a Lambda worker: the Lambda
    /// Runtime API listens on loopback, and a call to it could take other invocations).
    host_refuses_loopback: bool,
}

impl From<&Network> for Policy {
    fn from(n: &Network) -> Self {
        Self {
            allow_private: n.allow_private,
            strict: n.strict,
            allow_hosts: n.allow_hosts.iter().map(|h| normalise_host(h)).collect(),
            host_refuses_loopback: false,
        }
    }
}

impl Policy {
    /// The same policy on a host that refuses loopback (see [`Policy::host_refuses_loopback`]).
    pub(crate) fn refusing_loopback(mut self, refuse: bool) -> Self {
        self.host_refuses_loopback = refuse;
        self
    }
}

/// Why a call was refused; the message a user reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    /// Link-local or a cloud metadata address.
    Metadata,
    /// A private range, without `allow_private`.
    Private,
    /// Loopback, with `strict`.
    Loopback,
    /// Loopback, on a host that refuses it (a Lambda worker).
    LoopbackOnThisHost,
    /// Unspecified, broadcast, multicast or reserved: never a server.
    NotUnicast,
    /// The host is not in a non-empty `allow_hosts`.
    Unlisted,
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Rule::Metadata => "link-local and metadata addresses are never allowed",
            Rule::Private => "private addresses are refused unless `network.allow_private` is set",
            Rule::Loopback => "loopback addresses are refused because `network.strict` is set",
            Rule::LoopbackOnThisHost => {
                "loopback addresses are refused on this worker (on AWS Lambda the Runtime API listens there; BATON_ALLOW_LOOPBACK=1 allows them)"
            }
            Rule::NotUnicast => "unspecified, broadcast, multicast and reserved addresses are never allowed",
            Rule::Unlisted => "the host is not in `network.allow_hosts`",
        })
    }
}

/// A refused host or address. It travels inside reqwest's error (from the resolver or the
/// redirect policy), where the tool finds it again to report `network_refused`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) struct Refused {
    /// The host as the URL names it.
    pub host: String,
    /// The address refused, when an address was the reason.
    pub addr: Option<IpAddr>,
    /// The rule that refused it.
    pub rule: Rule,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.addr {
            Some(addr) => write!(f, "refused {addr} for {}: {}", self.host, self.rule),
            None => write!(f, "refused {}: {}", self.host, self.rule),
        }
    }
}

/// What kind of address an IP is, as far as the guard cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Metadata,
    NotUnicast,
    Private,
    Loopback,
    Public,
}

fn classify_v4(ip: Ipv4Addr) -> Class {
    let [a, b, ..] = ip.octets();
    match (a, b) {
        // 169.254/16 is link-local, and where AWS, GCP, Azure and others serve instance
        // metadata (credentials included).
        (169, 254) => Class::Metadata,
        // 0/8 is "this network" (0.0.0.0 reaches the local host on Linux); 224/4 multicast;
        // 240/4 reserved, 255.255.255.255 (broadcast) included.
        (0, _) | (224..=255, _) => Class::NotUnicast,
        (127, _) => Class::Loopback,
        (10, _) | (172, 16..=31) | (192, 168) => Class::Private,
        // 100.64/10 (CGNAT, RFC 6598) is not publicly routable either: it holds carrier NAT,
        // VPN overlays (Tailscale), Kubernetes pod ranges, and Alibaba Cloud's metadata service
        // (100.100.100.200). So it counts as private.
        (100, 64..=127) => Class::Private,
        _ => Class::Public,
    }
}

fn classify_v6(ip: Ipv6Addr) -> Class {
    // ::ffff:a.b.c.d connects to a.b.c.d.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let s = ip.segments();
    // 64:ff9b::/96 (NAT64) reaches the embedded IPv4 address through the network's translator.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., hi, lo] = s;
        return classify_v4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)));
    }
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) || s[0] & 0xffc0 == 0xfe80 {
        // AWS's IPv6 metadata endpoint (it sits in fc00::/7, so it must be caught first), and
        // link-local fe80::/10.
        Class::Metadata
    } else if ip.is_unspecified() || s[0] & 0xff00 == 0xff00 {
        Class::NotUnicast
    } else if ip.is_loopback() {
        Class::Loopback
    } else if s[0] & 0xfe00 == 0xfc00 || s[0] & 0xffc0 == 0xfec0 {
        // Unique local fc00::/7, and the deprecated site-local fec0::/10.
        Class::Private
    } else {
        Class::Public
    }
}

/// The class of `ip`; IPv4-mapped IPv6 addresses are judged as their IPv4 address.
pub(crate) fn classify(ip: IpAddr) -> Class {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn normalise_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

impl Policy {
    /// Whether a connection to `ip` is allowed.
    pub(crate) fn check_addr(&self, ip: IpAddr) -> Result<(), Rule> {
        match classify(ip) {
            Class::Metadata => Err(Rule::Metadata),
            Class::NotUnicast => Err(Rule::NotUnicast),
            Class::Private if !self.allow_private => Err(Rule::Private),
            Class::Loopback if self.strict => Err(Rule::Loopback),
            Class::Loopback if self.host_refuses_loopback => Err(Rule::LoopbackOnThisHost),
            _ => Ok(()),
        }
    }

    /// Whether `host` (a name or an IP literal, as the URL writes it) passes `allow_hosts`.
    pub(crate) fn host_allowed(&self, host: &str) -> bool {
        if self.allow_hosts.is_empty() {
            return true;
        }
        let host = normalise_host(host);
        self.allow_hosts.iter().any(|entry| match entry.strip_prefix('*') {
            // `*.example.com` matches `a.example.com` and `a.b.example.com`, not `example.com`.
            Some(suffix) if suffix.starts_with('.') => host.len() > suffix.len() && host.ends_with(suffix),
            _ => host == *entry,
        })
    }

    /// The check before a request is sent and before each redirect is followed: the host
    /// against `allow_hosts`, and an IP-literal host against the address rules (no DNS, so
    /// the resolver never sees it).
    pub(crate) fn check_url(&self, url: &reqwest::Url) -> Result<(), Refused> {
        let Some(host) = url.host_str() else { return Ok(()) };
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            self.check_addr(ip).map_err(|rule| Refused { host: bare.to_owned(), addr: Some(ip), rule })?;
        }
        if self.host_allowed(bare) {
            Ok(())
        } else {
            Err(Refused { host: bare.to_owned(), addr: None, rule: Rule::Unlisted })
        }
    }

    /// The addresses of `host` a connection may use: the allowed ones, in order. When none is
    /// allowed, the refusal of the first. Refusing only what is forbidden keeps dual-stack and
    /// multi-address hosts working, and nothing forbidden is ever handed to the connector.
    pub(crate) fn filter(&self, host: &str, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, Refused> {
        let mut first = None;
        let allowed: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| match self.check_addr(a.ip()) {
                Ok(()) => true,
                Err(rule) => {
                    first.get_or_insert(Refused { host: host.to_owned(), addr: Some(a.ip()), rule });
                    false
                }
            })
            .collect();
        match first {
            Some(refused) if allowed.is_empty() => Err(refused),
            _ => Ok(allowed),
        }
    }
}

/// How names become addresses; tests answer from a table instead of DNS.
#[derive(Debug, Clone)]
enum Lookup {
    System,
    #[cfg(test)]
    Fixed(Vec<IpAddr>),
}

/// A name that resolved to no address at all.
#[derive(Debug, thiserror::Error)]
#[error("{0} resolved to no address")]
struct NoAddress(String);

/// The reqwest resolver that enforces a [`Policy`] on every name a client connects to.
pub(crate) struct GuardedResolver {
    policy: Arc<Policy>,
    lookup: Lookup,
}

impl GuardedResolver {
    /// A resolver using the system's resolver (through tokio) and then `policy`.
    pub(crate) fn new(policy: Arc<Policy>) -> Self {
        Self { policy, lookup: Lookup::System }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let (policy, lookup, host) = (self.policy.clone(), self.lookup.clone(), name.as_str().to_owned());
        Box::pin(async move {
            if !policy.host_allowed(&host) {
                return Err(Refused { host, addr: None, rule: Rule::Unlisted }.into());
            }
            let addrs: Vec<SocketAddr> = match lookup {
                Lookup::System => tokio::net::lookup_host((host.as_str(), 0)).await?.collect(),
                #[cfg(test)]
                Lookup::Fixed(ips) => ips.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect(),
            };
            if addrs.is_empty() {
                return Err(NoAddress(host).into());
            }
            let allowed = policy.filter(&host, addrs)?;
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// A custom redirect policy must count hops itself; this is reqwest's own limit.
#[derive(Debug, thiserror::Error)]
#[error("too many redirects (more than {MAX_REDIRECTS})")]
struct TooManyRedirects;

/// reqwest's default redirect behaviour (at most 10 hops) plus the policy's URL check on
/// every target: an IP-literal target never reaches the resolver. With `stop_cross_origin`
/// (a request carrying secrets in its own headers) a redirect to another origin is not
/// followed: the caller follows it itself without those headers, which reqwest would keep.
pub(crate) fn redirect_policy(policy: Arc<Policy>, stop_cross_origin: bool) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(TooManyRedirects);
        }
        if let Err(refused) = policy.check_url(attempt.url()) {
            return attempt.error(refused);
        }
        let from = attempt.previous().last().map(reqwest::Url::origin);
        if stop_cross_origin && from.is_some_and(|o| o != attempt.url().origin()) {
            return attempt.stop();
        }
        attempt.follow()
    })
}

/// The refusal inside an error from reqwest, if the guard was the cause.
pub(crate) fn refusal<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a Refused> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<Refused>() {
            return Some(r);
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn policy(allow_private: bool, strict: bool, hosts: &[&str]) -> Policy {
        Policy::from(&Network { allow_private, strict, allow_hosts: hosts.iter().map(|h| (*h).to_owned()).collect() })
    }

    #[test]
    fn every_range_is_classified() {
        for (addr, class) in [
            ("169.254.169.254", Class::Metadata),
            ("169.254.0.1", Class::Metadata),
            ("fd00:ec2::254", Class::Metadata),
            ("fe80::1", Class::Metadata),
            ("febf::1", Class::Metadata),
            ("10.0.0.1", Class::Private),
            ("10.255.255.255", Class::Private),
            ("172.16.0.1", Class::Private),
            ("172.31.255.254", Class::Private),
            ("192.168.1.1", Class::Private),
            ("100.64.0.1", Class::Private),
            ("100.127.255.255", Class::Private),
            ("100.100.100.200", Class::Private),
            ("fc00::1", Class::Private),
            ("fd12:3456::1", Class::Private),
            ("fd00:ec2::253", Class::Private),
            ("fec0::1", Class::Private),
            ("127.0.0.1", Class::Loopback),
            ("127.255.0.9", Class::Loopback),
            ("::1", Class::Loopback),
            ("0.0.0.0", Class::NotUnicast),
            ("0.1.2.3", Class::NotUnicast),
            ("::", Class::NotUnicast),
            ("255.255.255.255", Class::NotUnicast),
            ("224.0.0.1", Class::NotUnicast),
            ("239.255.255.250", Class::NotUnicast),
            ("240.0.0.1", Class::NotUnicast),
            ("ff02::1", Class::NotUnicast),
            ("ff05::2", Class::NotUnicast),
            ("8.8.8.8", Class::Public),
            ("172.15.255.255", Class::Public),
            ("172.32.0.0", Class::Public),
            ("100.63.255.255", Class::Public),
            ("100.128.0.0", Class::Public),
            ("169.253.255.255", Class::Public),
            ("192.167.1.1", Class::Public),
            ("2606:4700::1111", Class::Public),
            ("fe00::1", Class::Public),
            // IPv4-mapped and NAT64 addresses are judged as the IPv4 address they carry.
            ("::ffff:169.254.169.254", Class::Metadata),
            ("::ffff:a9fe:a9fe", Class::Metadata),
            ("::ffff:10.0.0.1", Class::Private),
            ("::ffff:127.0.0.1", Class::Loopback),
            ("::ffff:0.0.0.0", Class::NotUnicast),
            ("::ffff:8.8.8.8", Class::Public),
            ("64:ff9b::169.254.169.254", Class::Metadata),
            ("64:ff9b::10.1.2.3", Class::Private),
            ("64:ff9b::8.8.8.8", Class::Public),
        ] {
            assert_eq!(classify(ip(addr)), class, "{addr}");
        }
    }

    #[test]
    fn the_policy_flags_open_only_what_they_name() {
        let default = Policy::default();
        let open = policy(true, false, &[]);
        let strict = policy(false, true, &[]);
        let both = policy(true, true, &[]);
        // No flag opens metadata endpoints or non-unicast addresses; every policy lets public
        // addresses through.
        let always = [
            ("169.254.169.254", Err(Rule::Metadata)),
            ("fd00:ec2::254", Err(Rule::Metadata)),
            ("fe80::1", Err(Rule::Metadata)),
            ("0.0.0.0", Err(Rule::NotUnicast)),
            ("ff02::1", Err(Rule::NotUnicast)),
            ("93.184.215.14", Ok(())),
        ];
        let by_policy = [
            (&default, "10.0.0.1", Err(Rule::Private)),
            (&default, "100.64.0.1", Err(Rule::Private)),
            (&default, "fc00::1", Err(Rule::Private)),
            (&default, "127.0.0.1", Ok(())),
            (&default, "::1", Ok(())),
            (&open, "192.168.0.10", Ok(())),
            (&open, "fd12::1", Ok(())),
            (&strict, "127.0.0.1", Err(Rule::Loopback)),
            (&strict, "::1", Err(Rule::Loopback)),
            (&strict, "::ffff:127.0.0.1", Err(Rule::Loopback)),
            (&strict, "10.0.0.1", Err(Rule::Private)),
            (&both, "10.0.0.1", Ok(())),
            (&both, "127.0.0.1", Err(Rule::Loopback)),
        ];
        let every = [&default, &open, &strict, &both].into_iter().flat_map(|p| always.map(|(a, want)| (p, a, want)));
        for (p, addr, want) in every.chain(by_policy) {
            assert_eq!(p.check_addr(ip(addr)), want, "{addr}");
        }
    }

    #[test]
    fn allow_hosts_match_exactly_or_by_subdomain_wildcard() {
        let p = policy(false, false, &["api.example.com", "*.Partner.example", "billing.test."]);
        assert!(p.host_allowed("api.example.com"));
        assert!(p.host_allowed("API.Example.COM"));
        assert!(p.host_allowed("api.example.com."));
        assert!(!p.host_allowed("example.com"));
        assert!(!p.host_allowed("x.api.example.com"));
        assert!(!p.host_allowed("api.example.com.evil.test"));
        assert!(p.host_allowed("eu.partner.example"));
        assert!(p.host_allowed("a.b.partner.example"));
        assert!(!p.host_allowed("partner.example"));
        assert!(!p.host_allowed("evilpartner.example"));
        assert!(!p.host_allowed(".partner.example"));
        assert!(p.host_allowed("billing.test"));
        assert!(Policy::default().host_allowed("anything.example"));
    }

    #[test]
    fn urls_with_ip_literals_are_checked_without_dns() {
        let url = |s: &str| reqwest::Url::parse(s).expect("url");
        let p = Policy::default();
        let refused = p.check_url(&url("http://169.254.169.254/latest/meta-data/")).expect_err("metadata");
        assert_eq!(refused.addr, Some(ip("169.254.169.254")));
        assert_eq!(
            refused.to_string(),
            "refused 169.254.169.254 for 169.254.169.254: link-local and metadata addresses are never allowed"
        );
        // The URL parser normalises other spellings of an IPv4 address, so they are caught too.
        for spelled in
            ["http://0xa9fea9fe/", "http://2852039166/", "http://169.254.43518/", "http://[::ffff:a9fe:a9fe]/"]
        {
            assert_eq!(p.check_url(&url(spelled)).map_err(|r| r.rule), Err(Rule::Metadata), "{spelled}");
        }
        assert_eq!(p.check_url(&url("http://[fe80::1]/")).map_err(|r| r.rule), Err(Rule::Metadata));
        assert_eq!(p.check_url(&url("http://10.1.2.3:8080/")).map_err(|r| r.rule), Err(Rule::Private));
        assert_eq!(p.check_url(&url("http://127.0.0.1:9/")), Ok(()));
        assert_eq!(p.check_url(&url("https://example.com/")), Ok(()));
        let listed = policy(false, false, &["*.example.com"]);
        let unlisted = listed.check_url(&url("https://example.com/")).expect_err("unlisted");
        assert_eq!(unlisted.to_string(), "refused example.com: the host is not in `network.allow_hosts`");
        assert_eq!(listed.check_url(&url("https://api.example.com/")), Ok(()));
        assert_eq!(listed.check_url(&url("http://127.0.0.1/")).map_err(|r| r.rule), Err(Rule::Unlisted));
    }

    #[test]
    fn filtering_keeps_allowed_addresses_and_refuses_when_none_is_left() {
        let sock = |s: &str| SocketAddr::new(ip(s), 0);
        let p = Policy::default();
        assert_eq!(
            p.filter("h", vec![sock("169.254.169.254"), sock("93.184.215.14")]),
            Ok(vec![sock("93.184.215.14")])
        );
        let refused = p.filter("metadata.internal", vec![sock("169.254.169.254"), sock("10.0.0.1")]).expect_err("none");
        assert_eq!(
            refused.to_string(),
            "refused 169.254.169.254 for metadata.internal: link-local and metadata addresses are never allowed"
        );
    }

    async fn resolve(resolver: &GuardedResolver, host: &str) -> Result<Vec<SocketAddr>, String> {
        let name: Name = host.parse().map_err(|_| "bad name".to_owned())?;
        resolver.resolve(name).await.map(|a| a.collect()).map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn the_resolver_refuses_names_that_resolve_to_forbidden_addresses() {
        let fixed = |p: Policy, ips: &[&str]| GuardedResolver {
            policy: Arc::new(p),
            lookup: Lookup::Fixed(ips.iter().map(|s| ip(s)).collect()),
        };
        let metadata = fixed(Policy::default(), &["169.254.169.254"]);
        let err = resolve(&metadata, "metadata.internal").await.expect_err("refused");
        assert_eq!(
            err,
            "refused 169.254.169.254 for metadata.internal: link-local and metadata addresses are never allowed"
        );
        let private = resolve(&fixed(Policy::default(), &["10.1.2.3"]), "db.internal").await.expect_err("refused");
        assert!(private.contains("private addresses are refused"), "{private}");
        // With `allow_private` the same answer is handed to the connector (nothing connects here).
        let allowed = resolve(&fixed(policy(true, false, &[]), &["10.1.2.3"]), "db.internal").await;
        assert_eq!(allowed, Ok(vec![SocketAddr::new(ip("10.1.2.3"), 0)]));
        let unlisted =
            resolve(&fixed(policy(false, false, &["api.example.com"]), &["93.184.215.14"]), "other.test").await;
        assert_eq!(unlisted, Err("refused other.test: the host is not in `network.allow_hosts`".to_owned()));
        assert!(resolve(&fixed(Policy::default(), &[]), "nothing.test").await.is_err());
    }

    #[tokio::test]
    async fn the_system_lookup_is_judged_too() {
        // `localhost` resolves to loopback addresses only: allowed by default, refused when strict.
        let default = GuardedResolver::new(Arc::new(Policy::default()));
        let addrs = resolve(&default, "localhost").await.expect("localhost");
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
        let strict = GuardedResolver::new(Arc::new(policy(false, true, &[])));
        let err = resolve(&strict, "localhost").await.expect_err("strict");
        assert!(err.starts_with("refused ") && err.contains("for localhost: loopback"), "{err}");
    }

    #[test]
    fn refusals_are_found_inside_wrapping_errors() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] Box<dyn StdError + Send + Sync>);
        let r = Refused { host: "h".into(), addr: None, rule: Rule::Unlisted };
        let outer = Outer(Box::new(r.clone()));
        assert_eq!(refusal(&outer), Some(&r));
        assert_eq!(refusal(&NoAddress("x".into())), None);
    }
}
