//! `riptide-server`: one node of a Riptide cluster.
//!
//! Parses the flags, binds the client and peer addresses (so a taken port is reported before
//! anything else happens), then runs the node until SIGTERM or SIGINT.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use riptide_server::bugs::{PlantedBug, PlantedBugs};
use riptide_server::node::{self, NodeOptions};
use riptide_server::raft::NodeId;
use tracing_subscriber::EnvFilter;

/// One node of a Riptide Raft key-value cluster.
///
/// The initial members are this node plus every `--peer` (or `--initial-members`). Example
/// of node 1 of 3:
///
///   riptide-server --id 1 --data-dir data/1 --listen-client 127.0.0.1:8001
///   --listen-peer 127.0.0.1:7001 --peer 2=127.0.0.1:7002 --peer 3=127.0.0.1:7003
///   --peer-client-url 2=http://127.0.0.1:8002 --peer-client-url 3=http://127.0.0.1:8003
///
/// A fourth node joining that cluster (added as a learner, then promoted to voter):
///
///   riptide-server --id 4 --data-dir data/4 --listen-client 127.0.0.1:8004
///   --listen-peer 127.0.0.1:7004 --join http://127.0.0.1:8001
#[derive(Debug, Parser)]
// A flag given twice keeps its last value, so a wrapper's defaults can be overridden by
// flags appended after them (the harness and the tests rely on it).
#[command(
    name = "riptide-server",
    version,
    verbatim_doc_comment,
    args_override_self = true
)]
struct Args {
    /// This node's id (nodes are numbered 1..=N).
    #[arg(long)]
    id: NodeId,
    /// Directory of this node's hard state, write-ahead log and snapshot (created when absent).
    #[arg(long)]
    data_dir: PathBuf,
    /// Address of the HTTP client API.
    #[arg(long, default_value = "127.0.0.1:8001")]
    listen_client: String,
    /// Address peers connect to for Raft messages.
    #[arg(long, default_value = "127.0.0.1:7001")]
    listen_peer: String,
    /// ID=ADDR: the address this node uses to reach peer ID's peer port (may be a proxy).
    /// Repeat for every peer.
    #[arg(long = "peer", value_name = "ID=ADDR", value_parser = parse_id_pair)]
    peers: Vec<(NodeId, String)>,
    /// ID=URL: peer ID's client URL, where followers redirect clients when ID leads.
    #[arg(long = "peer-client-url", value_name = "ID=URL", value_parser = parse_id_pair)]
    peer_client_urls: Vec<(NodeId, String)>,
    /// This node's client URL as others should use it (default: http://<listen-client>).
    #[arg(long)]
    client_url: Option<String>,
    /// This node's peer address as others should use it, stored in the configuration when it
    /// joins (default: --listen-peer).
    #[arg(long)]
    advertise_peer: Option<String>,
    /// The initial configuration's voters, comma-separated, this node included (default:
    /// this node and every --peer). Lets --peer name spare ids that may join later. Ignored
    /// once the data dir holds a configuration.
    #[arg(long, value_delimiter = ',', conflicts_with = "join")]
    initial_members: Option<Vec<NodeId>>,
    /// URL of any member of a running cluster to join: start with an empty configuration,
    /// ask to be added as a learner (following redirects to the leader), learn the members'
    /// addresses from the answer, then ask to be promoted to voter once caught up. A node
    /// whose data dir already names it a member is not added again.
    #[arg(long, value_name = "URL")]
    join: Option<String>,
    /// With --join: stay a learner (receive the log, never vote).
    #[arg(long, requires = "join")]
    join_as_learner: bool,
    /// With --join: how long each step (add, promote) is retried before the node gives up
    /// and exits.
    #[arg(long, default_value_t = 120_000)]
    join_timeout_ms: u64,
    /// Length of one Raft tick in milliseconds.
    #[arg(long, default_value_t = 10)]
    tick_ms: u64,
    /// Leader heartbeat interval in milliseconds.
    #[arg(long, default_value_t = 50)]
    heartbeat_ms: u64,
    /// Base election timeout in milliseconds (randomised in [t, 2t)). The default gives a
    /// failover after kill -9 of the leader of about 200-250 ms (median) on loopback; raise it
    /// on machines that stall for 150 ms or more (overloaded, swapping), where it would start
    /// needless elections.
    #[arg(long, default_value_t = 150)]
    election_ms: u64,
    /// Turn pre-vote off (classic Raft: a node cut off and rejoining deposes the leader by
    /// campaigning its term up). For comparisons only.
    #[arg(long)]
    no_pre_vote: bool,
    /// Turn check-quorum off (a leader cut off from the majority keeps leading, and clients
    /// wait on it until their timeout). For comparisons only.
    #[arg(long)]
    no_check_quorum: bool,
    /// Take a snapshot of the state machine and drop the log before it once this many
    /// entries were applied since the last snapshot; 0 never snapshots. Bounds the
    /// write-ahead log and lets a follower that fell behind catch up by InstallSnapshot.
    #[arg(long, default_value_t = 10_000)]
    snapshot_entries: u64,
    /// Entries kept in memory before the latest snapshot (etcd's SnapshotCatchUpEntries), so
    /// a follower only slightly behind is sent entries, not the whole snapshot.
    #[arg(long, default_value_t = 5_000)]
    snapshot_catchup_entries: u64,
    /// At most this many entries in one AppendEntries message (a tuning knob like etcd's
    /// MaxSizePerMsg; the byte cap of 1 MiB per message applies too). A follower further
    /// behind catches up over several messages.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    max_entries_per_message: u64,
    /// Client sessions (Request-Id clients) kept for exactly-once retries; past it the least
    /// recently used is evicted and its retries answer 409 (outcome unknown). Must be the same
    /// on every node.
    #[arg(long, default_value_t = riptide_server::kv::DEFAULT_MAX_SESSIONS)]
    max_sessions: usize,
    /// How long a request may wait for commit or read confirmation before 504.
    #[arg(long, default_value_t = 3000)]
    request_timeout_ms: u64,
    /// Log filter (tracing EnvFilter syntax); RUST_LOG is used when this is absent.
    #[arg(long)]
    log_level: Option<String>,
    /// TEST ONLY: plant a deliberate bug (repeatable) so a test harness can prove it finds
    /// it. Refused unless --unsafe is also given. Each breaks the rule named below.
    #[arg(long = "bug", value_enum, value_name = "NAME")]
    bugs: Vec<PlantedBug>,
    /// Allow --bug: this node then deliberately breaks Raft's guarantees. Never in production.
    #[arg(long = "unsafe")]
    allow_unsafe: bool,
}

/// Parses `ID=VALUE`.
fn parse_id_pair(text: &str) -> Result<(NodeId, String), String> {
    let (id, value) = text
        .split_once('=')
        .ok_or_else(|| format!("expected ID=VALUE, got {text:?}"))?;
    let id: NodeId = id
        .trim()
        .parse()
        .map_err(|_| format!("bad node id {id:?} in {text:?}"))?;
    if id == 0 {
        return Err("node ids start at 1".to_string());
    }
    if value.is_empty() {
        return Err(format!("empty value in {text:?}"));
    }
    Ok((id, value.to_string()))
}

/// Turns repeated `ID=VALUE` flags into a map, refusing duplicates and this node's own id.
fn id_map(
    flag: &str,
    self_id: NodeId,
    pairs: &[(NodeId, String)],
) -> Result<BTreeMap<NodeId, String>> {
    let mut map = BTreeMap::new();
    for (id, value) in pairs {
        if *id == self_id {
            bail!("--{flag} {id}=...: {id} is this node's own id");
        }
        if map.insert(*id, value.clone()).is_some() {
            bail!("--{flag} given twice for node {id}");
        }
    }
    Ok(map)
}

fn init_logging(level: Option<&str>) -> Result<()> {
    let filter = match level {
        Some(level) => {
            EnvFilter::try_new(level).with_context(|| format!("bad --log-level {level:?}"))?
        }
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The whole chain on one line: "what we tried: why: root cause".
            eprintln!("riptide-server: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args = Args::parse();
    init_logging(args.log_level.as_deref())?;
    if args.id == 0 {
        bail!("--id must be at least 1");
    }
    if !args.bugs.is_empty() && !args.allow_unsafe {
        bail!(
            "--bug plants a deliberate bug that breaks Raft's guarantees (for testing the test \
             harness only); add --unsafe to confirm"
        );
    }
    let peers = id_map("peer", args.id, &args.peers)?;
    let peer_client_urls = id_map("peer-client-url", args.id, &args.peer_client_urls)?;
    if let Some(unknown) = peer_client_urls.keys().find(|id| !peers.contains_key(id)) {
        bail!("--peer-client-url {unknown}=...: node {unknown} is not given with --peer");
    }
    for missing in peers.keys().filter(|id| !peer_client_urls.contains_key(id)) {
        tracing::warn!(
            peer = missing,
            "no --peer-client-url: clients cannot be redirected to it"
        );
    }
    if args.tick_ms == 0 {
        bail!("--tick-ms must be at least 1");
    }
    if args.heartbeat_ms < args.tick_ms || args.election_ms <= args.heartbeat_ms {
        bail!(
            "need tick-ms <= heartbeat-ms < election-ms (got {} / {} / {})",
            args.tick_ms,
            args.heartbeat_ms,
            args.election_ms
        );
    }
    if let Some(members) = &args.initial_members {
        if !members.contains(&args.id) {
            bail!(
                "--initial-members {members:?} does not name this node ({}); a node that is \
                 not an initial member joins with --join",
                args.id
            );
        }
        if let Some(zero) = members.iter().find(|&&id| id == 0) {
            bail!("--initial-members: node ids start at 1, got {zero}");
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(serve(args, peers, peer_client_urls))
}

async fn serve(
    args: Args,
    peers: BTreeMap<NodeId, String>,
    peer_client_urls: BTreeMap<NodeId, String>,
) -> Result<()> {
    let client_listener = tokio::net::TcpListener::bind(&args.listen_client)
        .await
        .with_context(|| {
            format!(
                "cannot listen for clients on {} (port taken?)",
                args.listen_client
            )
        })?;
    let peer_listener = tokio::net::TcpListener::bind(&args.listen_peer)
        .await
        .with_context(|| {
            format!(
                "cannot listen for peers on {} (port taken?)",
                args.listen_peer
            )
        })?;
    let client_addr = client_listener
        .local_addr()
        .context("client listener address")?;
    let client_url = args
        .client_url
        .clone()
        .unwrap_or_else(|| format!("http://{client_addr}"));
    tracing::info!(
        id = args.id,
        client = %client_addr,
        peer = %args.listen_peer,
        peers = ?peers,
        "riptide-server starting"
    );
    let initial_members = if args.join.is_some() {
        Vec::new()
    } else {
        let mut members = args
            .initial_members
            .clone()
            .unwrap_or_else(|| peers.keys().copied().collect());
        members.push(args.id);
        members.sort_unstable();
        members.dedup();
        members
    };
    let join = args.join.as_ref().map(|url| node::join::JoinOptions {
        url: url.clone(),
        as_learner: args.join_as_learner,
        timeout: Duration::from_millis(args.join_timeout_ms),
    });
    let options = NodeOptions {
        id: args.id,
        data_dir: args.data_dir.clone(),
        peers,
        peer_client_urls,
        initial_members,
        client_url,
        advertise_peer: match &args.advertise_peer {
            Some(addr) => addr.clone(),
            None => peer_listener
                .local_addr()
                .context("peer listener address")?
                .to_string(),
        },
        join,
        tick: Duration::from_millis(args.tick_ms),
        heartbeat: Duration::from_millis(args.heartbeat_ms),
        election: Duration::from_millis(args.election_ms),
        request_timeout: Duration::from_millis(args.request_timeout_ms),
        pre_vote: !args.no_pre_vote,
        check_quorum: !args.no_check_quorum,
        snapshot_entries: args.snapshot_entries,
        snapshot_catchup_entries: args.snapshot_catchup_entries,
        max_entries_per_message: usize::try_from(args.max_entries_per_message)
            .unwrap_or(usize::MAX),
        max_sessions: args.max_sessions,
        bugs: PlantedBugs::from_list(&args.bugs),
    };
    let (shutdown_tx, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        match wait_for_signal().await {
            Ok(name) => tracing::info!(signal = name, "stopping"),
            Err(e) => tracing::error!(error = %e, "cannot listen for signals"),
        }
        let _ = shutdown_tx.send(true);
    });
    node::run(options, client_listener, peer_listener, shutdown)
        .await
        .with_context(|| format!("node {} (data dir {})", args.id, args.data_dir.display()))
}

/// Waits for SIGTERM or SIGINT and returns its name.
async fn wait_for_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}
