//! A TCP proxy for one directed link of the cluster, whose quality can be changed while traffic flows.
//!
//! Node A is told to reach node B at the proxy's address; the proxy forwards every connection A opens
//! to B's real address, bytes both ways. Because A's requests *and* B's answers travel through it,
//! one proxy fully controls whether A can talk to B; the reverse link (B opens connections to A) has
//! its own proxy.
//!
//! # Faults
//! The current [`LinkFault`] lives in a `tokio::sync::watch` channel that every connection's pumps
//! select on, so a change takes effect within milliseconds, also on data already queued:
//! - [`LinkFault::Heal`]: forward everything as it comes.
//! - [`LinkFault::Blackhole`]: no byte passes in either direction and connections stay open. New
//!   connections are accepted (the kernel completes the handshake) but not forwarded to B until the
//!   fault is lifted. *Held, not dropped:* the proxy stops reading, so bytes wait in the kernel
//!   buffers and the sender eventually blocks, exactly as TCP behaves when the network drops its
//!   packets (it keeps retransmitting; nothing is lost from the stream). After `Heal`, the held bytes
//!   arrive late, like the retransmissions after a real partition heals, unless an endpoint gave up
//!   and closed the connection meanwhile. Dropping bytes instead would hand B a stream with a hole in
//!   it, which a real network can never produce.
//! - [`LinkFault::Reject`]: every open connection is reset (RST to both ends, via `SO_LINGER` 0) and
//!   every new one is reset as soon as it is accepted: A sees `ECONNRESET` (or EOF) on its first read.
//! - [`LinkFault::Delay`]: each chunk is delivered `latency + U(0, jitter)` after the proxy read it,
//!   in each direction (a request-response round trip pays it twice). Order is always preserved:
//!   chunks leave in the order they came, a chunk never overtakes the one before it.
//! - [`LinkFault::Bandwidth`]: each direction is paced to `bytes_per_sec`, in slices of 1/50 s.
//!
//! A fault normally applies to both directions ([`LinkProxy::set_fault`]); [`LinkProxy::set_faults`]
//! sets the forward (source to target) and backward directions apart, e.g. to let requests through
//! but hold the answers, or to delay only one way. `Reject` in either direction resets the
//! connection, since a TCP connection cannot be half reset.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::error::NemesisError;

/// Size of one read from a socket.
const READ_CHUNK: usize = 256 * 1024;

/// Bytes a direction may hold in its queue (delayed or paced data) before it stops reading, which
/// pushes back on the sender through TCP flow control instead of growing memory without bound.
const MAX_QUEUED: usize = 4 * 1024 * 1024;

/// Bandwidth pacing quantum: a direction writes at most `bytes_per_sec / PACING_SLICES_PER_SEC`
/// bytes at a time, so the rate is smooth at the scale of tens of milliseconds.
const PACING_SLICES_PER_SEC: u64 = 50;

/// The quality of a link, switchable at any time with [`LinkProxy::set_fault`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "fault")]
pub enum LinkFault {
    /// No fault: bytes are forwarded as soon as they arrive.
    #[default]
    Heal,
    /// A silent network: connections stay open, nothing passes either way (bytes are held, see the
    /// module docs), new connections hang.
    Blackhole,
    /// Open connections are reset and new ones are reset right after the handshake.
    Reject,
    /// Every chunk arrives `latency` plus a uniform random part of `jitter` late, in each direction,
    /// in order.
    Delay {
        /// Fixed part of the added latency.
        latency: Duration,
        /// Upper bound of the random part added on top of `latency`.
        jitter: Duration,
    },
    /// Each direction carries at most this many bytes per second.
    Bandwidth {
        /// The rate; 0 is treated as 1.
        bytes_per_sec: u64,
    },
}

impl LinkFault {
    /// True for the faults that cut the link (no byte passes).
    pub fn is_cut(&self) -> bool {
        matches!(self, LinkFault::Blackhole | LinkFault::Reject)
    }
}

/// The faults of the two directions of a link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct DirectedFaults {
    /// Bytes from the source node to the target node.
    forward: LinkFault,
    /// Bytes from the target node back to the source node.
    backward: LinkFault,
}

impl DirectedFaults {
    fn get(self, direction: Direction) -> LinkFault {
        match direction {
            Direction::Forward => self.forward,
            Direction::Backward => self.backward,
        }
    }

    fn rejects(self) -> bool {
        self.forward == LinkFault::Reject || self.backward == LinkFault::Reject
    }
}

/// Which way a pump copies.
#[derive(Clone, Copy, Debug)]
enum Direction {
    /// Source node to target node.
    Forward,
    /// Target node back to source node.
    Backward,
}

/// Counters of a proxy since it started, for logs, tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStats {
    /// Connections accepted from the link's source node.
    pub connections: u64,
    /// Bytes delivered from the source node to the target node.
    pub bytes_forward: u64,
    /// Bytes delivered from the target node back to the source node.
    pub bytes_backward: u64,
}

/// The live counters behind [`LinkStats`].
#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    bytes_forward: AtomicU64,
    bytes_backward: AtomicU64,
}

/// One directed link: listens on `127.0.0.1:<free port>` and forwards to the target node.
///
/// Dropping the proxy closes its listener and every connection through it.
#[derive(Debug)]
pub struct LinkProxy {
    /// Where the source node must connect to reach the target.
    listen: SocketAddr,
    /// The target node's real address.
    target: SocketAddr,
    /// The current faults; every connection watches them.
    fault: watch::Sender<DirectedFaults>,
    /// Shared with the connection tasks.
    counters: Arc<Counters>,
    /// The accept loop; it owns the connection tasks, so aborting it ends them all.
    accept_loop: JoinHandle<()>,
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

impl LinkProxy {
    /// Starts a healthy proxy to `target` on a free loopback port. Needs a tokio runtime.
    pub async fn bind(target: SocketAddr) -> Result<LinkProxy, NemesisError> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(NemesisError::ProxyBind)?;
        let listen = listener.local_addr().map_err(NemesisError::ProxyBind)?;
        let (fault, _) = watch::channel(DirectedFaults::default());
        let counters = Arc::new(Counters::default());
        let accept_loop = tokio::spawn(accept_loop(
            listener,
            target,
            fault.subscribe(),
            Arc::clone(&counters),
        ));
        Ok(LinkProxy {
            listen,
            target,
            fault,
            counters,
            accept_loop,
        })
    }

    /// The address the source node must use to reach the target through this link.
    pub fn addr(&self) -> SocketAddr {
        self.listen
    }

    /// The target node's real address.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Switches both directions of the link to `fault`; open connections follow within
    /// milliseconds.
    pub fn set_fault(&self, fault: LinkFault) {
        self.set_faults(fault, fault);
    }

    /// Sets the fault of each direction: `forward` for bytes from the source node to the target,
    /// `backward` for the answers.
    pub fn set_faults(&self, forward: LinkFault, backward: LinkFault) {
        let faults = DirectedFaults { forward, backward };
        let previous = self.fault.send_replace(faults);
        if previous != faults {
            tracing::debug!(
                listen = %self.listen,
                target = %self.target,
                ?forward,
                ?backward,
                "link fault"
            );
        }
    }

    /// Removes any fault (same as `set_fault(LinkFault::Heal)`).
    pub fn heal(&self) {
        self.set_fault(LinkFault::Heal);
    }

    /// The fault of the forward direction (source to target); the same as the backward one
    /// unless they were set apart with [`LinkProxy::set_faults`].
    pub fn fault(&self) -> LinkFault {
        self.fault.borrow().forward
    }

    /// The faults of both directions, `(forward, backward)`.
    pub fn faults(&self) -> (LinkFault, LinkFault) {
        let faults = *self.fault.borrow();
        (faults.forward, faults.backward)
    }

    /// True when either direction is cut (no byte passes that way).
    pub fn is_cut(&self) -> bool {
        let faults = *self.fault.borrow();
        faults.forward.is_cut() || faults.backward.is_cut()
    }

    /// True when both directions are healthy.
    pub fn is_healthy(&self) -> bool {
        *self.fault.borrow() == DirectedFaults::default()
    }

    /// Counters since the proxy started.
    pub fn stats(&self) -> LinkStats {
        LinkStats {
            connections: self.counters.connections.load(Ordering::Relaxed),
            bytes_forward: self.counters.bytes_forward.load(Ordering::Relaxed),
            bytes_backward: self.counters.bytes_backward.load(Ordering::Relaxed),
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    fault: watch::Receiver<DirectedFaults>,
    counters: Arc<Counters>,
) {
    // Owning the connection tasks here means dropping this future (abort) drops them all.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    counters.connections.fetch_add(1, Ordering::Relaxed);
                    connections.spawn(forward_connection(
                        client,
                        target,
                        fault.clone(),
                        Arc::clone(&counters),
                    ));
                }
                Err(e) => {
                    // Typically EMFILE; back off instead of spinning.
                    tracing::warn!(error = %e, "proxy accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = connections.join_next() => {}
        }
    }
}

/// Marker: the connection must be reset (fault `Reject`, or an error on either side).
struct Reset;

async fn forward_connection(
    mut client: TcpStream,
    target: SocketAddr,
    mut fault: watch::Receiver<DirectedFaults>,
    counters: Arc<Counters>,
) {
    let _ = client.set_nodelay(true);
    // Under a forward blackhole the connection is held, not forwarded, until the fault changes.
    loop {
        let current = *fault.borrow_and_update();
        if current.rejects() {
            return reset(&client);
        }
        if current.forward != LinkFault::Blackhole {
            break;
        }
        if fault.changed().await.is_err() {
            return;
        }
    }
    let mut server = match TcpStream::connect(target).await {
        Ok(server) => server,
        // The target is down: the source sees what it would see connecting to it directly.
        Err(_) => return reset(&client),
    };
    let _ = server.set_nodelay(true);
    let seed: u64 = rand::random();
    let outcome = {
        let (mut client_read, mut client_write) = client.split();
        let (mut server_read, mut server_write) = server.split();
        tokio::try_join!(
            pump(
                &mut client_read,
                &mut server_write,
                fault.clone(),
                Direction::Forward,
                &counters.bytes_forward,
                ChaCha8Rng::seed_from_u64(seed),
            ),
            pump(
                &mut server_read,
                &mut client_write,
                fault.clone(),
                Direction::Backward,
                &counters.bytes_backward,
                ChaCha8Rng::seed_from_u64(seed.wrapping_add(1)),
            ),
        )
    };
    if outcome.is_err() {
        reset(&client);
        reset(&server);
    }
}

/// Makes the coming close of `stream` send RST instead of FIN.
fn reset(stream: &TcpStream) {
    // Zero linger makes close() abort the connection instead of draining it; it never blocks.
    let _ = stream.set_zero_linger();
}

/// Data read from one side, waiting to be written to the other.
struct Chunk {
    /// When the proxy read it: delays count from here.
    received: Instant,
    /// Where in `[0, 1)` of the jitter range this chunk falls, drawn when it was read.
    jitter_fraction: f64,
    /// The bytes.
    data: Vec<u8>,
    /// How many of them are already written.
    written: usize,
}

/// Copies one direction of a connection, applying the link's current fault. Returns `Ok` after
/// forwarding the sender's EOF, `Err(Reset)` when the connection must be torn down.
async fn pump(
    from: &mut ReadHalf<'_>,
    to: &mut WriteHalf<'_>,
    mut fault: watch::Receiver<DirectedFaults>,
    direction: Direction,
    delivered: &AtomicU64,
    mut rng: ChaCha8Rng,
) -> Result<(), Reset> {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut queue: VecDeque<Chunk> = VecDeque::new();
    let mut queued_bytes = 0usize;
    let mut eof = false;
    // Bandwidth pacing: the earliest time the next slice may be written.
    let mut paced_until = Instant::now();
    loop {
        let both = *fault.borrow_and_update();
        if both.rejects() {
            return Err(Reset);
        }
        let current = both.get(direction);
        if eof && queue.is_empty() {
            let _ = to.shutdown().await;
            return Ok(());
        }
        let flowing = current != LinkFault::Blackhole;
        let can_read = flowing && !eof && queued_bytes < MAX_QUEUED;
        let next_write = match queue.front() {
            Some(chunk) if flowing => Some(next_slice(chunk, current, paced_until)),
            _ => None,
        };
        tokio::select! {
            biased;
            changed = fault.changed() => {
                if changed.is_err() {
                    return Err(Reset);
                }
            }
            written = write_when_due(to, next_write), if next_write.is_some() => {
                let n = match written {
                    Ok(0) | Err(_) => return Err(Reset),
                    Ok(n) => n,
                };
                delivered.fetch_add(n as u64, Ordering::Relaxed);
                queued_bytes -= n;
                if let Some(front) = queue.front_mut() {
                    front.written += n;
                    if front.written == front.data.len() {
                        queue.pop_front();
                    }
                }
                if let LinkFault::Bandwidth { bytes_per_sec } = current {
                    let cost = Duration::from_secs_f64(n as f64 / bytes_per_sec.max(1) as f64);
                    paced_until = paced_until.max(Instant::now()) + cost;
                }
            }
            read = from.read(&mut buf), if can_read => match read {
                Ok(0) => eof = true,
                Ok(n) => {
                    // Fast path of a healthy link: hand the bytes straight to the socket when
                    // nothing is queued ahead of them (order) and it can take them now.
                    let mut sent = 0;
                    if current == LinkFault::Heal && queue.is_empty() {
                        match to.try_write(&buf[..n]) {
                            Ok(written) => sent = written,
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(_) => return Err(Reset),
                        }
                        delivered.fetch_add(sent as u64, Ordering::Relaxed);
                    }
                    if sent < n {
                        queue.push_back(Chunk {
                            received: Instant::now(),
                            jitter_fraction: rng.gen(),
                            data: buf[sent..n].to_vec(),
                            written: 0,
                        });
                        queued_bytes += n - sent;
                    }
                }
                Err(_) => return Err(Reset),
            },
        }
    }
}

/// When the front chunk may be written under `fault`, and which bytes of it.
fn next_slice(chunk: &Chunk, fault: LinkFault, paced_until: Instant) -> (Instant, &[u8]) {
    let rest = &chunk.data[chunk.written..];
    match fault {
        LinkFault::Delay { latency, jitter } => (
            chunk.received + latency + jitter.mul_f64(chunk.jitter_fraction),
            rest,
        ),
        LinkFault::Bandwidth { bytes_per_sec } => {
            let slice = (bytes_per_sec / PACING_SLICES_PER_SEC).max(1);
            let len = rest.len().min(usize::try_from(slice).unwrap_or(usize::MAX));
            (paced_until, &rest[..len])
        }
        LinkFault::Heal | LinkFault::Blackhole | LinkFault::Reject => (chunk.received, rest),
    }
}

/// Sleeps until `due`, then writes (part of) the bytes. Cancel-safe: a cancelled call has written
/// nothing, so the select loop above can drop it whenever the fault changes.
async fn write_when_due(
    to: &mut WriteHalf<'_>,
    next: Option<(Instant, &[u8])>,
) -> std::io::Result<usize> {
    let Some((due, bytes)) = next else {
        return std::future::pending().await;
    };
    // Only sleep for a deadline in the future: tokio rounds timers up to the next millisecond tick,
    // so even an already-passed deadline would cost about 1 ms per chunk on a healthy link.
    if due > Instant::now() {
        tokio::time::sleep_until(due).await;
    }
    to.write(bytes).await
}
