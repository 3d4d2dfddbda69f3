//! The L4 TCP proxy: `ListenerActor` (control plane: binds, accepts, stops accepting) and the
//! per-connection data path in `session` (pick backend, connect, relay bytes with half-close).

pub mod connect;
pub mod listener;
pub mod session;

use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;

/// Binds a listening socket the way a proxy wants it: SO_REUSEADDR, a deep backlog, and
/// non-blocking (ready for tokio or actix-web).
pub fn bind_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // `[::]:port` should accept IPv4 too, as `:port` users expect.
        let _ = socket.set_only_v6(false);
    }
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}
