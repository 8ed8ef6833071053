//! The SSRF guard: webhook destinations in private, loopback, link-local and similar
//! ranges are refused unless an operator allow-listed them (`webhooks.allow_destinations`).
//!
//! Checking a URL's host once and then letting the HTTP client resolve it again would
//! leave a DNS-rebinding hole (the name answers a public address to the check and
//! `127.0.0.1` to the connect). So the check lives *in the resolver* the webhook HTTP
//! client uses ([`GuardedResolver`]): the addresses that were checked are exactly the
//! addresses connected to. IP-literal hosts never reach a resolver, so they are checked
//! up front by [`DestinationGuard::check_url`]. Proxies are disabled on that client for
//! the same reason (a proxy would resolve the name itself).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::Url;

use crate::error::{Error, Result};

/// Decides which destination addresses webhooks may reach.
#[derive(Debug, Clone, Default)]
pub struct DestinationGuard {
    allow: Vec<IpNet>,
}

impl DestinationGuard {
    /// A guard that lets addresses inside `allow` through even if they are in a
    /// refused range (e.g. `127.0.0.0/8` for a receiver on the same host).
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self { allow }
    }

    /// The allow-list.
    pub fn allowed(&self) -> &[IpNet] {
        &self.allow
    }

    /// `Ok` if `addr` may be connected to; otherwise the name of the refused range.
    pub fn check_addr(&self, addr: IpAddr) -> Result<(), &'static str> {
        match restricted_range(addr) {
            None => Ok(()),
            Some(_) if self.allow.iter().any(|net| net.contains(&canonical(addr))) => Ok(()),
            Some(range) => Err(range),
        }
    }

    /// Parses a webhook URL (http or https, with a host) and checks an IP-literal host.
    /// A host name is checked when it is resolved, at send time, by [`GuardedResolver`].
    pub fn check_url(&self, url: &str) -> Result<Url> {
        let parsed = parse_webhook_url(url)?;
        if let Some(ip) = literal_ip(&parsed) {
            self.check_addr(ip)
                .map_err(|range| Error::DestinationRefused {
                    host: parsed.host_str().unwrap_or_default().to_owned(),
                    addr: ip,
                    range,
                })?;
        }
        Ok(parsed)
    }

    /// Resolves `host` and checks every address; refuses the whole name if any address
    /// is refused (a name that mixes public and private answers is suspicious).
    pub async fn resolve_checked(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| Error::Resolve {
                host: host.to_owned(),
                reason: e.to_string(),
            })?
            .collect();
        if addrs.is_empty() {
            return Err(Error::Resolve {
                host: host.to_owned(),
                reason: "no addresses".into(),
            });
        }
        for addr in &addrs {
            self.check_addr(addr.ip())
                .map_err(|range| Error::DestinationRefused {
                    host: host.to_owned(),
                    addr: addr.ip(),
                    range,
                })?;
        }
        Ok(addrs)
    }
}

/// Parses and shape-checks a webhook URL: absolute, `http` or `https`, with a host,
/// without credentials.
pub fn parse_webhook_url(url: &str) -> Result<Url> {
    let invalid = |reason: &str| Error::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let parsed = Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("scheme must be http or https"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("missing host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid("credentials in the url are not allowed"));
    }
    Ok(parsed)
}

fn literal_ip(url: &Url) -> Option<IpAddr> {
    // `host_str` brackets IPv6 literals; `Url` has already normalised IPv4 forms
    // such as `http://0x7f.1/` to dotted decimal.
    let host = url.host_str()?;
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// An IPv4 address wrapped in IPv6 (`::ffff:a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`) is
/// judged as the IPv4 address it reaches.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = v6.segments();
    // NAT64 well-known prefix 64:ff9b::/96.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        return Some(Ipv4Addr::new(a, b, c, d));
    }
    None
}

/// The refused range `addr` falls in, or `None` for an ordinary public address.
pub fn restricted_range(addr: IpAddr) -> Option<&'static str> {
    match canonical(addr) {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            if v4.is_unspecified() || a == 0 {
                Some("unspecified")
            } else if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_private() {
                Some("private")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if a == 100 && (64..128).contains(&b) {
                Some("carrier-grade nat")
            } else if v4.is_multicast() {
                Some("multicast")
            } else if v4.is_broadcast()
                || a >= 240
                || (a, b, c) == (192, 0, 0)
                || (a == 198 && (b == 18 || b == 19))
            {
                Some("reserved")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if first & 0xfe00 == 0xfc00 {
                Some("unique-local")
            } else if first & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if first & 0xffc0 == 0xfec0 {
                Some("site-local")
            } else {
                None
            }
        }
    }
}

/// A `reqwest` DNS resolver that resolves with the system resolver and refuses names
/// with any address the guard refuses; the client then connects only to the checked
/// addresses.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    guard: Arc<DestinationGuard>,
}

impl GuardedResolver {
    /// A resolver enforcing `guard`.
    pub fn new(guard: Arc<DestinationGuard>) -> Self {
        Self { guard }
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = Arc::clone(&self.guard);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: reqwest substitutes the URL's port.
            let addrs = guard.resolve_checked(&host, 0).await?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// Finds a [`Error::DestinationRefused`] in an error's source chain (a refusal by the
/// resolver arrives wrapped in a `reqwest::Error`).
pub(crate) fn find_refusal<'e>(err: &'e (dyn std::error::Error + 'static)) -> Option<&'e Error> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(ours @ Error::DestinationRefused { .. }) = e.downcast_ref::<Error>() {
            return Some(ours);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn refuses_the_usual_internal_ranges() {
        let guard = DestinationGuard::default();
        for (addr, range) in [
            ("127.0.0.1", "loopback"),
            ("10.0.0.1", "private"),
            ("172.16.5.4", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("100.64.0.1", "carrier-grade nat"),
            ("0.0.0.0", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "reserved"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fd00::1", "unique-local"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "link-local"),
            ("64:ff9b::a00:1", "private"),
        ] {
            assert_eq!(guard.check_addr(ip(addr)), Err(range), "{addr}");
        }
    }

    #[test]
    fn lets_public_addresses_through() {
        let guard = DestinationGuard::default();
        for addr in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "100.128.0.1",
            "172.32.0.1",
        ] {
            assert_eq!(guard.check_addr(ip(addr)), Ok(()), "{addr}");
        }
    }

    #[test]
    fn allow_list_opens_exactly_its_ranges() {
        let guard = DestinationGuard::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert_eq!(guard.check_addr(ip("127.0.0.1")), Ok(()));
        assert_eq!(guard.check_addr(ip("::ffff:127.0.0.2")), Ok(()));
        assert_eq!(guard.check_addr(ip("::1")), Err("loopback"));
        assert_eq!(guard.check_addr(ip("10.0.0.1")), Err("private"));
    }

    #[test]
    fn check_url_refuses_literal_internal_hosts_without_resolving() {
        let guard = DestinationGuard::default();
        for url in [
            "http://169.254.169.254/",
            "http://10.0.0.1/",
            "http://[::1]:8080/x",
        ] {
            assert!(
                matches!(guard.check_url(url), Err(Error::DestinationRefused { .. })),
                "{url}"
            );
        }
        assert!(guard.check_url("https://example.com/hook").is_ok());
    }

    #[test]
    fn check_url_rejects_bad_shapes() {
        let guard = DestinationGuard::default();
        for url in [
            "ftp://example.com/",
            "not a url",
            "http://user:pw@example.com/",
            "file:///etc/passwd",
        ] {
            assert!(
                matches!(guard.check_url(url), Err(Error::InvalidUrl { .. })),
                "{url}"
            );
        }
    }

    #[tokio::test]
    async fn resolver_refuses_names_that_resolve_to_loopback() {
        let guard = DestinationGuard::default();
        let err = guard.resolve_checked("localhost", 80).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::DestinationRefused {
                    range: "loopback",
                    ..
                }
            ),
            "{err}"
        );
    }
}
