//! Loopback ports that stay reserved: the one way the harness and every test pick ports for the
//! nodes they start.
//!
//! Binding port 0 and closing the socket again hands out a port that is free *now*; until the
//! node binds it, the OS may give it to anyone else (a parallel test's node, a proxy's listener,
//! or the source port of an outgoing connection), and the node then cannot start. A
//! [`ReservedPort`] keeps the socket bound, never listening, with `SO_REUSEADDR`: a node binds
//! the port anyway (its listener sets `SO_REUSEADDR` too, as Rust's tokio and Go's net package
//! do, and the reservation does not listen), connecting to it while no node listens is refused
//! as for a free port, and as long as the reservation is held the OS hands the port to nobody
//! else, also while the node is killed and before it is started again.

use std::net::SocketAddr;
use std::sync::Mutex;

/// A port on 127.0.0.1 held for as long as this value lives (see the module docs).
#[derive(Debug)]
pub struct ReservedPort {
    socket: tokio::net::TcpSocket,
    addr: SocketAddr,
}

impl ReservedPort {
    /// Asks the OS for a free loopback port and holds it.
    pub fn new() -> std::io::Result<ReservedPort> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let addr = socket.local_addr()?;
        Ok(ReservedPort { socket, addr })
    }

    /// The reserved port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Keeps the reservation until the process exits (for tests, whose nodes may outlive any
    /// value that could own it).
    pub fn hold_for_process(self) -> u16 {
        static HELD: Mutex<Vec<tokio::net::TcpSocket>> = Mutex::new(Vec::new());
        let port = self.port();
        HELD.lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(self.socket);
        port
    }
}

/// A free port on 127.0.0.1, reserved for this process until it exits: what tests use.
///
/// # Panics
/// When the OS has no loopback port to give (a test cannot go on without one).
pub fn free_port() -> u16 {
    ReservedPort::new()
        .expect("reserving a loopback port (bind 127.0.0.1:0)")
        .hold_for_process()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserved_port_is_never_handed_out_again_and_can_still_be_bound_by_a_listener() {
        let reserved: Vec<ReservedPort> = (0..50).map(|_| ReservedPort::new().unwrap()).collect();
        let mut ports: Vec<u16> = reserved.iter().map(ReservedPort::port).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 50);
        // Connecting while nobody listens is refused, as for a free port.
        assert!(std::net::TcpStream::connect(reserved[0].addr()).is_err());
        // A listener with SO_REUSEADDR (what a node sets) binds it while it is reserved.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(reserved[0].addr()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = socket.listen(16).unwrap();
            let addr = listener.local_addr().unwrap();
            let (accepted, connected) =
                tokio::join!(listener.accept(), tokio::net::TcpStream::connect(addr));
            assert!(accepted.is_ok() && connected.is_ok());
        });
    }
}
