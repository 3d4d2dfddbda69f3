//! How host names become addresses: a small trait object, so the gateway uses the system
//! resolver and tests map names to the addresses of their own upstreams. Lookups are futures the
//! config actor spawns; the system one runs `getaddrinfo` on tokio's blocking pool, never on an
//! actor thread.

use futures_util::future::BoxFuture;
use std::io;
use std::net::SocketAddr;

/// Resolves a backend target written `host:port` into socket addresses.
pub trait Resolver: Send + Sync + 'static {
    /// Every address `target` (`host:port`) resolves to; the port is part of each answer.
    fn lookup(&self, target: &str) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>>;
}

/// The operating system's resolver (`/etc/hosts`, `resolv.conf`, ...) through
/// `tokio::net::lookup_host`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn lookup(&self, target: &str) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        let target = target.to_string();
        Box::pin(async move { Ok(tokio::net::lookup_host(target).await?.collect()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn system_resolver_answers_localhost_with_the_port() {
        let addrs = SystemResolver
            .lookup("localhost:4321")
            .await
            .expect("localhost resolves");
        assert!(
            addrs
                .iter()
                .all(|a| a.port() == 4321 && a.ip().is_loopback()),
            "{addrs:?}"
        );
        assert!(!addrs.is_empty());
    }
}
