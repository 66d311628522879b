//! The peer transport: Raft messages over persistent TCP connections.
//!
//! Each peer gets one outbound connection, owned by a task that takes messages from a bounded
//! queue and writes them as frames: a 4-byte big-endian length, then the body, which is a
//! version byte ([`WIRE_VERSION`]) followed by the message in postcard, a compact binary
//! serde format (varint integers, byte strings as length + bytes: a command or a snapshot
//! chunk costs its own size, where JSON spent 3.5-4 bytes per byte on arrays of numbers). A
//! frame of another version (a JSON frame of an older node starts with `{`) is refused with
//! an error naming both versions, and the connection is closed: nodes of different wire
//! formats never guess at each other's messages.
//! Raft tolerates loss, so the transport never pushes back on the Raft loop: when the queue is
//! full, or the link is down, messages are dropped and Raft retries (heartbeats, re-sent
//! AppendEntries). Writes have a timeout, so a peer behind a proxy that blackholes traffic costs
//! a reconnect, never a stuck loop; a reset link is reconnected with capped exponential backoff.
//!
//! Inbound, the node accepts connections on its peer address and feeds every decoded message
//! to the Raft loop. Connections are one-way: a node sends on its own outbound connections and
//! receives on the ones its peers opened, so each directed link can be proxied separately.
//!
//! The set of links grows with the configuration ([`PeerLinks`]): a member added at run time
//! gets a link as soon as its configuration entry is in this node's log, and a node that is
//! not a member yet (a joining learner) opens one to whoever sends it messages once it knows
//! an address for them (see [`super::members::AddressBook`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::members::AddressBook;
use super::metrics::Metrics;
use crate::raft::{Membership, Message, NodeId};

/// Largest frame accepted or sent; larger frames mean a broken or hostile peer.
pub const MAX_FRAME_BYTES: usize = 256 << 20;
/// The first byte of every frame's body: the wire format this node speaks (and the only one it
/// reads). Version 1 is postcard; before it, bodies were JSON.
pub const WIRE_VERSION: u8 = 1;
/// Messages waiting for one peer before new ones are dropped.
const PEER_QUEUE_LEN: usize = 4096;
/// Time allowed for one batch of frames to be written before the link is considered dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Time allowed for a TCP connect.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// First and largest delay between reconnect attempts.
const MIN_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_millis(100);
/// An inbound connection silent for this long is closed, so connections left half-open by a
/// proxy that swallowed the close do not pile up. Long: a link between two followers is idle
/// for as long as they both follow, and closing it makes the sender reconnect for nothing.
const INBOUND_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// At most this many bytes are gathered into one write.
const MAX_BATCH_BYTES: usize = 4 << 20;

/// The Raft loop's handle to one peer's outbound queue.
#[derive(Debug, Clone)]
pub struct PeerSender {
    queue: mpsc::Sender<Message>,
    metrics: Arc<Metrics>,
}

impl PeerSender {
    /// Queues a message without waiting; drops it when the queue is full.
    pub fn send(&self, message: Message) {
        match self.queue.try_send(message) {
            Ok(()) => Metrics::inc(&self.metrics.peer_messages_sent_total),
            Err(_) => Metrics::inc(&self.metrics.peer_messages_dropped_total),
        }
    }
}

/// Starts the task owning the outbound connection to `peer` at `addr`.
pub fn spawn_outbound(
    peer: NodeId,
    addr: String,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> PeerSender {
    let (queue, rx) = mpsc::channel(PEER_QUEUE_LEN);
    let link = OutboundLink {
        peer,
        addr,
        queue: rx,
        metrics: metrics.clone(),
    };
    tokio::spawn(link.run(shutdown));
    PeerSender { queue, metrics }
}

/// Every outbound link of the node, opened on demand at the address the book knows.
///
/// A link, once opened, stays open for the node's lifetime, also after its peer left the
/// configuration (it then idles): a removed node may still need to hear from the leader that
/// it was removed, and ids are never reused for another node.
pub struct PeerLinks {
    self_id: NodeId,
    links: HashMap<NodeId, PeerSender>,
    book: Arc<AddressBook>,
    /// The links' tasks run on the node's multi-threaded runtime, not on the Raft loop's
    /// thread, whose fsyncs block.
    runtime: tokio::runtime::Handle,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
}

impl PeerLinks {
    pub fn new(
        self_id: NodeId,
        book: Arc<AddressBook>,
        runtime: tokio::runtime::Handle,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
    ) -> PeerLinks {
        PeerLinks {
            self_id,
            links: HashMap::new(),
            book,
            runtime,
            metrics,
            shutdown,
        }
    }

    /// The link to `peer`, opened now if there is none yet and its address is known.
    pub fn get_or_open(&mut self, peer: NodeId) -> Option<&PeerSender> {
        if peer == self.self_id {
            return None;
        }
        if !self.links.contains_key(&peer) {
            let addr = self.book.peer_addr(peer)?;
            let _entered = self.runtime.enter();
            let sender = spawn_outbound(peer, addr, self.metrics.clone(), self.shutdown.clone());
            self.links.insert(peer, sender);
        }
        self.links.get(&peer)
    }

    /// Opens a link to every member of `membership` that has none (called at every change).
    pub fn open_members(&mut self, membership: &Membership) {
        for &id in membership.members.keys() {
            if self.get_or_open(id).is_none() && id != self.self_id {
                tracing::warn!(
                    peer = id,
                    "no address for member: give --peer or add it with a peer_addr"
                );
            }
        }
    }

    /// The peers a link is open to, ascending.
    pub fn open_ids(&self) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self.links.keys().copied().collect();
        ids.sort_unstable();
        ids
    }
}

/// One peer's outbound connection and the queue that feeds it.
struct OutboundLink {
    peer: NodeId,
    /// The address this node uses to reach the peer (maybe a nemesis proxy).
    addr: String,
    queue: mpsc::Receiver<Message>,
    metrics: Arc<Metrics>,
}

impl OutboundLink {
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = MIN_BACKOFF;
        let mut was_connected = true;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let connected = tokio::select! {
                _ = shutdown.changed() => return,
                c = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.addr)) => c,
            };
            match connected {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    Metrics::inc(&self.metrics.peer_connects_total);
                    tracing::info!(peer = self.peer, addr = %self.addr, "connected to peer");
                    was_connected = true;
                    backoff = MIN_BACKOFF;
                    let why = tokio::select! {
                        _ = shutdown.changed() => return,
                        why = self.pump(stream) => why,
                    };
                    tracing::info!(peer = self.peer, addr = %self.addr, %why, "peer link lost");
                }
                Ok(Err(e)) => {
                    if was_connected {
                        tracing::debug!(peer = self.peer, addr = %self.addr, error = %e, "cannot connect to peer");
                    }
                    was_connected = false;
                }
                Err(_) => {
                    if was_connected {
                        tracing::debug!(peer = self.peer, addr = %self.addr, "connect to peer timed out");
                    }
                    was_connected = false;
                }
            }
            // Messages queued while the link was down are stale by now; Raft will resend.
            self.discard_queued();
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Writes queued messages to the stream until it fails; returns why it stopped.
    ///
    /// The peer never writes on this connection, so the read half only ever sees the end of
    /// the stream: reading it notices at once a peer that died or reset the link. Without
    /// that, an idle link (a follower has nothing to say to another follower) to a restarted
    /// peer would look alive until the next write, and that write — often a RequestVote —
    /// would vanish into the dead socket, costing an election round.
    async fn pump(&mut self, stream: TcpStream) -> String {
        let (mut reader, mut writer) = stream.into_split();
        let mut buf = Vec::new();
        let mut probe = [0u8; 64];
        loop {
            let first = tokio::select! {
                first = self.queue.recv() => first,
                read = reader.read(&mut probe) => match read {
                    Ok(0) => return "closed by peer".to_string(),
                    Ok(_) => continue,
                    Err(e) => return format!("read failed: {e}"),
                },
            };
            let Some(first) = first else {
                return "node shutting down".to_string();
            };
            buf.clear();
            if let Err(e) = encode_frame(&first, &mut buf) {
                tracing::error!(peer = self.peer, error = %e, "cannot encode message; dropped");
                continue;
            }
            // Gather whatever else is queued into the same write.
            while buf.len() < MAX_BATCH_BYTES {
                let Ok(next) = self.queue.try_recv() else {
                    break;
                };
                if let Err(e) = encode_frame(&next, &mut buf) {
                    tracing::error!(peer = self.peer, error = %e, "cannot encode message; dropped");
                }
            }
            match tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(&buf)).await {
                Ok(Ok(())) => Metrics::add(&self.metrics.peer_bytes_sent_total, buf.len() as u64),
                Ok(Err(e)) => return format!("write failed: {e}"),
                Err(_) => return format!("write timed out after {WRITE_TIMEOUT:?}"),
            }
        }
    }

    fn discard_queued(&mut self) {
        while self.queue.try_recv().is_ok() {
            Metrics::inc(&self.metrics.peer_messages_dropped_total);
        }
    }
}

/// Why a frame could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the limit of {MAX_FRAME_BYTES}")]
    TooLarge(usize),
    #[error("peer frame of wire format version {found}{hint}; this node speaks version {WIRE_VERSION}", hint = version_hint(*.found))]
    UnknownVersion { found: u8 },
    #[error("empty peer frame")]
    Empty,
    #[error("undecodable peer message: {0}")]
    Decode(#[from] postcard::Error),
    #[error("peer message followed by {0} stray bytes in its frame")]
    TrailingBytes(usize),
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// What a frame of an unknown version probably is, for the error message.
fn version_hint(found: u8) -> &'static str {
    if found == b'{' {
        " (a JSON frame: a riptide-server from before wire format 1)"
    } else {
        ""
    }
}

/// Appends one length-prefixed frame (version byte, then the postcard message) to `buf`.
pub fn encode_frame(message: &Message, buf: &mut Vec<u8>) -> Result<(), FrameError> {
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    buf.push(WIRE_VERSION);
    if let Err(e) = postcard::to_io(message, &mut *buf) {
        buf.truncate(start);
        return Err(e.into());
    }
    let len = buf.len() - start - 4;
    if len > MAX_FRAME_BYTES {
        buf.truncate(start);
        return Err(FrameError::TooLarge(len));
    }
    buf[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub async fn read_frame<R: AsyncReadExt + Unpin>(
    reader: &mut R,
) -> Result<Option<Message>, FrameError> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).await?;
    decode_body(&body).map(Some)
}

/// Decodes a frame's body (after its length): the version byte, then the message.
pub fn decode_body(body: &[u8]) -> Result<Message, FrameError> {
    let (&version, message) = body.split_first().ok_or(FrameError::Empty)?;
    if version != WIRE_VERSION {
        return Err(FrameError::UnknownVersion { found: version });
    }
    let (message, rest) = postcard::take_from_bytes(message)?;
    if !rest.is_empty() {
        return Err(FrameError::TrailingBytes(rest.len()));
    }
    Ok(message)
}

/// Accepts peer connections and forwards their messages to the Raft loop until shutdown.
pub async fn serve_inbound(
    listener: TcpListener,
    self_id: NodeId,
    to_raft: mpsc::Sender<Message>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, remote)) => {
                let _ = stream.set_nodelay(true);
                let to_raft = to_raft.clone();
                let metrics = metrics.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    let why = read_inbound(stream, self_id, to_raft, metrics, shutdown).await;
                    tracing::debug!(%remote, %why, "inbound peer connection closed");
                });
            }
            Err(e) => {
                // Usually EMFILE; back off instead of spinning.
                tracing::warn!(error = %e, "accepting a peer connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn read_inbound(
    stream: TcpStream,
    self_id: NodeId,
    to_raft: mpsc::Sender<Message>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> String {
    let mut reader = tokio::io::BufReader::with_capacity(64 << 10, stream);
    loop {
        let frame = tokio::select! {
            _ = shutdown.changed() => return "shutdown".to_string(),
            f = tokio::time::timeout(INBOUND_IDLE_TIMEOUT, read_frame(&mut reader)) => f,
        };
        let message = match frame {
            Err(_) => return "idle timeout".to_string(),
            Ok(Ok(Some(m))) => m,
            Ok(Ok(None)) => return "closed by peer".to_string(),
            Ok(Err(e)) => return e.to_string(),
        };
        if message.to != self_id {
            tracing::warn!(
                to = message.to,
                from = message.from,
                "dropping a message addressed to another node"
            );
            continue;
        }
        Metrics::inc(&metrics.peer_messages_received_total);
        if to_raft.send(message).await.is_err() {
            return "raft loop stopped".to_string();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::MessageBody;

    fn message(from: NodeId, to: NodeId) -> Message {
        Message {
            from,
            to,
            term: 3,
            body: MessageBody::RequestVoteResponse { granted: true },
        }
    }

    #[tokio::test]
    async fn frames_round_trip() {
        let mut buf = Vec::new();
        encode_frame(&message(1, 2), &mut buf).unwrap();
        encode_frame(&message(3, 2), &mut buf).unwrap();
        let mut reader = &buf[..];
        assert_eq!(read_frame(&mut reader).await.unwrap(), Some(message(1, 2)));
        assert_eq!(read_frame(&mut reader).await.unwrap(), Some(message(3, 2)));
        assert_eq!(read_frame(&mut reader).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_frame_of_another_wire_version_is_refused_naming_both_versions() {
        // What a node of the JSON era sent: a length, then `{"from":1,...}`.
        let json = br#"{"from":1,"to":2,"term":3,"body":{"RequestVoteResponse":{"granted":true}}}"#;
        let mut buf = (json.len() as u32).to_be_bytes().to_vec();
        buf.extend_from_slice(json);
        let err = read_frame(&mut &buf[..]).await.unwrap_err();
        assert!(
            matches!(err, FrameError::UnknownVersion { found: b'{' }),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("version 123") && text.contains("JSON"),
            "{text}"
        );
        assert!(
            text.contains(&format!("speaks version {WIRE_VERSION}")),
            "{text}"
        );
        // A future version is refused the same way, not decoded as if it were this one.
        let mut buf = Vec::new();
        encode_frame(&message(1, 2), &mut buf).unwrap();
        buf[4] = WIRE_VERSION + 1;
        let err = read_frame(&mut &buf[..]).await.unwrap_err();
        assert!(
            matches!(err, FrameError::UnknownVersion { found } if found == WIRE_VERSION + 1),
            "{err}"
        );
    }

    #[test]
    fn commands_and_snapshot_chunks_cost_their_own_size_on_the_wire() {
        let payload = vec![0xA5u8; 1000];
        let append = Message {
            from: 1,
            to: 2,
            term: 7,
            body: MessageBody::AppendEntries {
                prev_log_index: 41,
                prev_log_term: 7,
                entries: vec![crate::raft::Entry {
                    index: 42,
                    term: 7,
                    payload: crate::raft::EntryPayload::Command(payload.clone()),
                }],
                leader_commit: 41,
                read_round: 9,
            },
        };
        let chunk = Message {
            from: 1,
            to: 2,
            term: 7,
            body: MessageBody::InstallSnapshot {
                meta: crate::raft::SnapshotMeta { index: 40, term: 7 },
                membership: Some(crate::raft::Membership::from_voters([1, 2, 3])),
                offset: 0,
                data: payload,
                done: true,
            },
        };
        for message in [append, chunk] {
            let mut buf = Vec::new();
            encode_frame(&message, &mut buf).unwrap();
            // 1,000 bytes of data, plus a few dozen of framing and fields.
            assert!(buf.len() < 1040, "{} bytes", buf.len());
            assert_eq!(decode_body(&buf[4..]).unwrap(), message);
        }
    }

    #[tokio::test]
    async fn oversized_frame_is_refused() {
        let buf = ((MAX_FRAME_BYTES + 1) as u32).to_be_bytes();
        let mut reader = &buf[..];
        assert!(matches!(
            read_frame(&mut reader).await,
            Err(FrameError::TooLarge(_))
        ));
    }

    /// Sends until one message arrives (messages may be dropped while connecting).
    async fn deliver(sender: &PeerSender, rx: &mut mpsc::Receiver<Message>) -> Message {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            sender.send(message(1, 2));
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(50), rx.recv()).await {
                return m;
            }
            assert!(tokio::time::Instant::now() < deadline, "no message arrived");
        }
    }

    #[tokio::test]
    async fn an_idle_link_to_a_restarted_peer_reconnects_before_the_next_message() {
        let metrics = Arc::new(Metrics::default());
        let (_stop_tx, stop) = watch::channel(false);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let (old_peer_stop, old_peer) = watch::channel(false);
        tokio::spawn(serve_inbound(listener, 2, tx, metrics.clone(), old_peer));
        let sender = spawn_outbound(2, addr.to_string(), metrics.clone(), stop.clone());
        assert_eq!(deliver(&sender, &mut rx).await, message(1, 2));
        while rx.try_recv().is_ok() {}

        // The peer "restarts": its listener and connections close, a new one binds the port.
        old_peer_stop.send(true).unwrap();
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(listener) => break listener,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        };
        let (tx, mut rx) = mpsc::channel(16);
        tokio::spawn(serve_inbound(
            listener,
            2,
            tx,
            metrics.clone(),
            stop.clone(),
        ));
        // Without sending anything, the link notices and reconnects...
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while metrics
            .peer_connects_total
            .load(std::sync::atomic::Ordering::Relaxed)
            < 2
        {
            assert!(tokio::time::Instant::now() < deadline, "no reconnect");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // ...so the very first message after the restart arrives.
        sender.send(message(1, 2));
        let received = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await;
        assert_eq!(received.ok().flatten(), Some(message(1, 2)));
    }
}
