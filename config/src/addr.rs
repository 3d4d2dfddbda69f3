//! Addresses as written in configs: listen addresses (`":8080"` = every interface,
//! `"127.0.0.1:9090"`, `"[::1]:80"`), backend addresses (`host:port`, DNS names allowed) and
//! the CIDRs of `trustedProxies`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Parses a listen address; `":PORT"` binds every interface, `localhost` means 127.0.0.1.
pub fn parse_listen_addr(text: &str) -> Result<SocketAddr, String> {
    let t = text.trim();
    if let Some(port) = t.strip_prefix(':') {
        let port = parse_port(port, text)?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    if let Some(port) = t.strip_prefix("localhost:") {
        return Ok(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            parse_port(port, text)?,
        ));
    }
    if let Some(port) = t.strip_prefix("0.0.0.0:").or_else(|| t.strip_prefix("*:")) {
        let port = parse_port(port, text)?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    t.parse::<SocketAddr>().map_err(|_| {
        format!(
            "invalid listen address {text:?}; expected \":PORT\", \"IP:PORT\" or \"[IPv6]:PORT\""
        )
    })
}

fn parse_port(port: &str, text: &str) -> Result<u16, String> {
    port.parse::<u16>()
        .map_err(|_| format!("invalid port in {text:?}; expected a number from 0 to 65535"))
}

/// Checks a backend address `host:port` (host an IP, `[IPv6]` or a DNS name; port 1-65535).
pub fn check_backend_addr(text: &str) -> Result<(), String> {
    let bad = || {
        format!("invalid backend address {text:?}; expected \"host:port\", e.g. \"127.0.0.1:9001\"")
    };
    if text.parse::<SocketAddr>().is_ok() {
        return match text.parse::<SocketAddr>() {
            Ok(a) if a.port() == 0 => Err(format!("backend address {text:?} has port 0")),
            _ => Ok(()),
        };
    }
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 {
        return Err(format!("backend address {text:?} has port 0"));
    }
    let valid_host = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                && !label.starts_with('-')
        });
    if valid_host {
        Ok(())
    } else {
        Err(bad())
    }
}

/// A network in CIDR notation; a bare IP is a /32 (or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let bad = || format!("invalid CIDR {text:?}; expected e.g. \"10.0.0.0/8\" or \"::1/128\"");
        let (ip, prefix) = match text.trim().split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (text.trim(), None),
        };
        let addr: IpAddr = ip.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }

    /// Whether `ip` is inside this network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix)
                };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix)
                };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen_addr(":8080").unwrap().to_string(),
            "0.0.0.0:8080"
        );
        assert_eq!(parse_listen_addr("127.0.0.1:0").unwrap().port(), 0);
        assert_eq!(
            parse_listen_addr("[::1]:90").unwrap().to_string(),
            "[::1]:90"
        );
        assert_eq!(
            parse_listen_addr("localhost:9").unwrap().to_string(),
            "127.0.0.1:9"
        );
        assert!(parse_listen_addr("8080").is_err());
        assert!(parse_listen_addr(":99999").is_err());
        assert!(parse_listen_addr("example.com:80").is_err());
    }

    #[test]
    fn backend_addresses() {
        for ok in [
            "127.0.0.1:9001",
            "[::1]:80",
            "api.internal:8080",
            "svc-a.ns.svc:80",
        ] {
            assert!(check_backend_addr(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "127.0.0.1",
            "host:",
            ":80",
            "host:0",
            "a b:80",
            "host:x",
            "-a:80",
        ] {
            assert!(check_backend_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cidr_contains() {
        let net = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("1.2.3.4".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nope").is_err());
    }
}
