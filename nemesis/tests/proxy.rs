//! Link proxies and network topologies over real loopback sockets, with a tiny echo server standing
//! in for each node.

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use riptide_nemesis::{
    apply, heal, parse_fault_list, run_schedule, Cuts, FaultOptions, FaultPlan, LinkFault,
    LinkProxy, NemesisEvent, Network, Notice, Schedule, ScheduleSpec, Supervisor, Targets,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

/// Generous bound for anything that should happen "promptly" on a loaded 2-core machine.
const PROMPTLY: Duration = Duration::from_secs(10);

/// How long we watch a cut link to be convinced nothing passes.
const SILENCE: Duration = Duration::from_millis(500);

/// An echo server on a free loopback port; aborted when the handle drops at test end.
struct Echo {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo_server() -> Echo {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                continue;
            };
            connections.spawn(async move {
                let (mut read, mut write) = socket.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    Echo { addr, task }
}

/// Writes `bytes` and reads the same number back within `within`.
async fn round_trip(stream: &mut TcpStream, bytes: &[u8], within: Duration) -> Option<Vec<u8>> {
    stream.write_all(bytes).await.ok()?;
    let mut back = vec![0; bytes.len()];
    match timeout(within, stream.read_exact(&mut back)).await {
        Ok(Ok(_)) => Some(back),
        _ => None,
    }
}

#[tokio::test]
async fn healthy_proxy_forwards_bytes_both_ways_and_counts_them() {
    let echo = echo_server().await;
    let proxy = LinkProxy::bind(echo.addr).await.unwrap();
    assert_eq!(proxy.target(), echo.addr);
    assert_ne!(proxy.addr(), echo.addr);
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let (mut read, mut write) = client.split();
    let (_, back) = tokio::join!(
        async {
            write.write_all(&payload).await.unwrap();
        },
        async {
            let mut back = vec![0; payload.len()];
            timeout(PROMPTLY, read.read_exact(&mut back))
                .await
                .unwrap()
                .unwrap();
            back
        }
    );
    assert_eq!(back, payload);
    let stats = proxy.stats();
    assert_eq!(stats.connections, 1);
    assert_eq!(stats.bytes_forward, payload.len() as u64);
    assert_eq!(stats.bytes_backward, payload.len() as u64);
}

#[tokio::test]
async fn blackhole_stops_bytes_both_ways_and_heal_lets_them_through_again() {
    let echo = echo_server().await;
    let proxy = LinkProxy::bind(echo.addr).await.unwrap();
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(
        round_trip(&mut client, b"ping", PROMPTLY).await.unwrap(),
        b"ping"
    );

    proxy.set_fault(LinkFault::Blackhole);
    let before = proxy.stats();
    assert!(
        round_trip(&mut client, b"lost?", SILENCE).await.is_none(),
        "bytes crossed a blackholed link"
    );
    assert_eq!(
        proxy.stats(),
        before,
        "the proxy delivered bytes while blackholed"
    );

    // Held, not dropped: after heal the bytes sent during the blackhole arrive, in order.
    proxy.heal();
    let mut back = [0u8; 5];
    timeout(PROMPTLY, client.read_exact(&mut back))
        .await
        .expect("held bytes never arrived after heal")
        .unwrap();
    assert_eq!(&back, b"lost?");
    assert_eq!(
        round_trip(&mut client, b"pong", PROMPTLY).await.unwrap(),
        b"pong"
    );
}

#[tokio::test]
async fn blackhole_holds_new_connections_until_heal() {
    let echo = echo_server().await;
    let proxy = LinkProxy::bind(echo.addr).await.unwrap();
    proxy.set_fault(LinkFault::Blackhole);
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    assert!(round_trip(&mut client, b"x", SILENCE).await.is_none());
    proxy.heal();
    let mut back = [0u8; 1];
    timeout(PROMPTLY, client.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&back, b"x");
}

/// Reads until the connection ends; returns how it ended, or `None` if it did not end in time.
async fn read_until_closed(stream: &mut TcpStream) -> Option<std::io::Result<usize>> {
    let mut buf = [0u8; 64];
    timeout(PROMPTLY, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return Ok(0),
                Ok(_) => continue,
                Err(e) => return Err(e),
            }
        }
    })
    .await
    .ok()
}

fn is_reset_or_eof(outcome: &std::io::Result<usize>) -> bool {
    match outcome {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(
            e.kind(),
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
        ),
    }
}

#[tokio::test]
async fn reject_resets_a_live_connection_and_refuses_new_ones() {
    let echo = echo_server().await;
    let proxy = LinkProxy::bind(echo.addr).await.unwrap();
    let mut live = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(
        round_trip(&mut live, b"ping", PROMPTLY).await.unwrap(),
        b"ping"
    );

    let started = Instant::now();
    proxy.set_fault(LinkFault::Reject);
    let ended = read_until_closed(&mut live)
        .await
        .expect("a live connection survived reject");
    assert!(is_reset_or_eof(&ended), "unexpected end {ended:?}");
    assert!(
        matches!(&ended, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "expected an RST, got {ended:?} after {:?}",
        started.elapsed()
    );

    // A new connection either fails to connect or is reset right away.
    if let Ok(mut fresh) = TcpStream::connect(proxy.addr()).await {
        let _ = fresh.write_all(b"hello").await;
        let ended = read_until_closed(&mut fresh)
            .await
            .expect("a new connection survived reject");
        assert!(is_reset_or_eof(&ended), "unexpected end {ended:?}");
    }

    proxy.heal();
    let mut after = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(
        round_trip(&mut after, b"back", PROMPTLY).await.unwrap(),
        b"back"
    );
}

#[tokio::test]
async fn delay_adds_at_least_the_latency_each_way_and_keeps_order() {
    let echo = echo_server().await;
    let proxy = LinkProxy::bind(echo.addr).await.unwrap();
    let latency = Duration::from_millis(150);
    proxy.set_fault(LinkFault::Delay {
        latency,
        jitter: Duration::from_millis(100),
    });
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();

    let sent_at = Instant::now();
    assert_eq!(round_trip(&mut client, b"t", PROMPTLY).await.unwrap(), b"t");
    let rtt = sent_at.elapsed();
    assert!(rtt >= 2 * latency, "round trip {rtt:?} < 2 x {latency:?}");

    // Many small separate writes, each its own chunk with its own jitter: they must come back in
    // the order they were sent.
    let (mut read, mut write) = client.split();
    let count = 60u32;
    let expected: String = (0..count).map(|i| format!("{i};")).collect();
    let (_, received) = tokio::join!(
        async {
            for i in 0..count {
                write.write_all(format!("{i};").as_bytes()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        },
        async {
            let mut received = vec![0u8; expected.len()];
            timeout(PROMPTLY * 3, read.read_exact(&mut received))
                .await
                .unwrap()
                .unwrap();
            String::from_utf8(received).unwrap()
        }
    );
    assert_eq!(received, expected);
}

#[tokio::test]
async fn bandwidth_limit_paces_each_direction() {
    let echo = echo_server().await;
    let proxy = LinkProxy::bind(echo.addr).await.unwrap();
    let rate = 32 * 1024;
    proxy.set_fault(LinkFault::Bandwidth {
        bytes_per_sec: rate,
    });
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    let payload = vec![7u8; 2 * rate as usize];
    let started = Instant::now();
    let (mut read, mut write) = client.split();
    let (_, back) = tokio::join!(write.write_all(&payload), async {
        let mut back = vec![0; payload.len()];
        timeout(PROMPTLY * 3, read.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        back
    });
    assert_eq!(back, payload);
    // Two seconds' worth of data, minus one pacing slice of slack.
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1900),
        "{} bytes at {rate} B/s took only {elapsed:?}",
        payload.len()
    );
}

#[tokio::test]
async fn clearing_a_delay_flushes_queued_bytes_at_once() {
    let echo = echo_server().await;
    let proxy = LinkProxy::bind(echo.addr).await.unwrap();
    proxy.set_fault(LinkFault::Delay {
        latency: Duration::from_secs(60),
        jitter: Duration::ZERO,
    });
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    client.write_all(b"slow").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    proxy.heal();
    let mut back = [0u8; 4];
    timeout(PROMPTLY, client.read_exact(&mut back))
        .await
        .expect("healing did not release delayed bytes")
        .unwrap();
    assert_eq!(&back, b"slow");
}

#[tokio::test]
async fn dropping_the_proxy_closes_its_connections() {
    let echo = echo_server().await;
    let proxy = LinkProxy::bind(echo.addr).await.unwrap();
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    assert!(round_trip(&mut client, b"a", PROMPTLY).await.is_some());
    drop(proxy);
    let ended = read_until_closed(&mut client)
        .await
        .expect("connection outlived its proxy");
    assert!(is_reset_or_eof(&ended));
}

/// A cluster of echo servers behind a full mesh of proxies.
struct Mesh {
    network: Network,
    _echoes: Vec<Echo>,
}

async fn mesh(nodes: usize) -> Mesh {
    let mut echoes = Vec::new();
    for _ in 0..nodes {
        echoes.push(echo_server().await);
    }
    let network = Network::start(echoes.iter().map(|e| e.addr).collect())
        .await
        .unwrap();
    Mesh {
        network,
        _echoes: echoes,
    }
}

/// Tries every directed link at once by sending a byte through its proxy; returns the links over
/// which the byte did *not* come back. A link expected to pass gets a long time to do so (a loaded
/// machine can be slow); a link expected to be cut is watched for `SILENCE`, during which a
/// blackholed link must pass nothing at all.
async fn observed_cuts(
    network: &Network,
    expected: &BTreeSet<(usize, usize)>,
) -> BTreeSet<(usize, usize)> {
    let probes = network.links().map(|(from, to, proxy)| {
        let addr = proxy.addr();
        let patience = if expected.contains(&(from, to)) {
            SILENCE
        } else {
            PROMPTLY
        };
        async move {
            let passes = match TcpStream::connect(addr).await {
                Ok(mut stream) => round_trip(&mut stream, b"?", patience).await.is_some(),
                Err(_) => false,
            };
            ((from, to), passes)
        }
    });
    futures_join_all(probes)
        .await
        .into_iter()
        .filter(|(_, passes)| !passes)
        .map(|(link, _)| link)
        .collect()
}

/// `join_all` without the futures crate: spawn each probe and collect in order.
async fn futures_join_all<F, T>(futures: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

fn all_pairs(nodes: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..nodes).flat_map(move |a| (0..nodes).filter(move |&b| b != a).map(move |b| (a, b)))
}

/// Applies `plan` to the mesh, checks that exactly `expected` links are cut (by sending through
/// every proxy), then heals and checks every link passes again.
async fn check_topology(
    mesh: &Mesh,
    plan: FaultPlan,
    leader: Option<usize>,
    expected: BTreeSet<(usize, usize)>,
) -> NemesisEvent {
    let mut supervisor = Supervisor::new();
    let active = apply(&plan, &mut supervisor, &mesh.network, leader)
        .await
        .unwrap();
    let observed = observed_cuts(&mesh.network, &expected).await;
    assert_eq!(observed, expected, "plan {plan:?}: observed cuts differ");
    let reported: BTreeSet<(usize, usize)> = mesh.network.cut_links().into_iter().collect();
    assert_eq!(reported, expected, "plan {plan:?}: reported cuts differ");
    assert_eq!(
        active.cut_links.iter().copied().collect::<BTreeSet<_>>(),
        expected
    );
    let stop = heal(&active, &mut supervisor, &mesh.network).await.unwrap();
    assert!(
        observed_cuts(&mesh.network, &BTreeSet::new())
            .await
            .is_empty(),
        "heal left cuts"
    );
    assert!(mesh.network.cut_links().is_empty());
    assert_eq!(active.start_event().f, "start-partition");
    assert_eq!(stop.f, "stop-partition");
    assert_eq!(stop.value, active.start_event().value);
    active.start_event()
}

fn between(left: &[usize], right: &[usize]) -> BTreeSet<(usize, usize)> {
    let mut cut = BTreeSet::new();
    for &a in left {
        for &b in right {
            cut.insert((a, b));
            cut.insert((b, a));
        }
    }
    cut
}

#[tokio::test]
async fn partition_topologies_cut_exactly_the_links_they_should() {
    let mesh = mesh(5).await;
    assert!(observed_cuts(&mesh.network, &BTreeSet::new())
        .await
        .is_empty());

    let event = check_topology(
        &mesh,
        FaultPlan::PartitionHalves {
            left: vec![1, 3],
            right: vec![0, 2, 4],
        },
        None,
        between(&[1, 3], &[0, 2, 4]),
    )
    .await;
    assert_eq!(event.value, "partition halves [n2 n4] | [n1 n3 n5]");

    check_topology(
        &mesh,
        FaultPlan::IsolateOne { node: 2 },
        None,
        between(&[2], &[0, 1, 3, 4]),
    )
    .await;

    let event = check_topology(
        &mesh,
        FaultPlan::IsolateLeader { fallback: 0 },
        Some(4),
        between(&[4], &[0, 1, 2, 3]),
    )
    .await;
    assert_eq!(event.value, "isolate leader n5");

    check_topology(
        &mesh,
        FaultPlan::Bridge {
            left: vec![0, 4],
            bridge: 2,
            right: vec![1, 3],
        },
        None,
        between(&[0, 4], &[1, 3]),
    )
    .await;

    // Majorities ring 0-1-2-3-4: each node sees its two ring neighbours and no one else.
    let ring_neighbours = |a: usize, b: usize| (a + 1) % 5 == b || (b + 1) % 5 == a;
    let expected: BTreeSet<(usize, usize)> = all_pairs(5)
        .filter(|&(a, b)| !ring_neighbours(a, b))
        .collect();
    check_topology(
        &mesh,
        FaultPlan::MajoritiesRing {
            ring: vec![0, 1, 2, 3, 4],
        },
        None,
        expected.clone(),
    )
    .await;
    let views: BTreeSet<Vec<usize>> = (0..5)
        .map(|a| {
            (0..5)
                .filter(|&b| a == b || !expected.contains(&(a, b)))
                .collect()
        })
        .collect();
    assert_eq!(views.len(), 5, "two nodes see the same majority");
}

#[tokio::test]
async fn three_node_majorities_ring_cuts_one_way_links() {
    let mesh = mesh(3).await;
    // Ring 2-0-1: each node can reach only the next one.
    let expected: BTreeSet<(usize, usize)> = [(0, 2), (1, 0), (2, 1)].into_iter().collect();
    check_topology(
        &mesh,
        FaultPlan::MajoritiesRing {
            ring: vec![2, 0, 1],
        },
        None,
        expected,
    )
    .await;
}

#[tokio::test]
async fn slow_links_delay_only_the_chosen_node_and_heal_restores_them() {
    let mesh = mesh(3).await;
    let mut supervisor = Supervisor::new();
    let plan = FaultPlan::SlowLinks {
        nodes: Some(vec![0]),
        latency_ms: 300,
        jitter_ms: 0,
    };
    let active = apply(&plan, &mut supervisor, &mesh.network, None)
        .await
        .unwrap();
    assert_eq!(active.start_event().f, "start-link");
    let delayed: BTreeSet<(usize, usize)> = mesh
        .network
        .faulty_links()
        .into_iter()
        .map(|(link, _)| link)
        .collect();
    let expected: BTreeSet<(usize, usize)> = [(0, 1), (0, 2), (1, 0), (2, 0)].into_iter().collect();
    assert_eq!(delayed, expected);
    assert!(
        mesh.network.cut_links().is_empty(),
        "slow links are not cut"
    );

    let mut slow = TcpStream::connect(mesh.network.proxy_addr(1, 0).unwrap())
        .await
        .unwrap();
    let started = Instant::now();
    assert!(round_trip(&mut slow, b"s", PROMPTLY).await.is_some());
    assert!(started.elapsed() >= Duration::from_millis(600));

    heal(&active, &mut supervisor, &mesh.network).await.unwrap();
    assert!(mesh.network.faulty_links().is_empty());
}

#[test]
fn cuts_between_groups_match_the_probe_expectations() {
    // Guards the helper the topology test relies on.
    let cuts = Cuts::between(4, &[0], &[1, 2]);
    let mine: BTreeSet<(usize, usize)> = cuts.links().collect();
    assert_eq!(mine, between(&[0], &[1, 2]));
}

#[tokio::test]
async fn run_schedule_applies_and_heals_every_fault_in_order() {
    let mesh = mesh(3).await;
    let spec = ScheduleSpec {
        seed: 4,
        faults: parse_fault_list("partition").unwrap(),
        nodes: 3,
        interval_ms: 150,
        quiet_ms: None,
        options: FaultOptions::default(),
    };
    let schedule = Schedule::generate(spec, Duration::from_millis(1000)).unwrap();
    assert_eq!(schedule.faults.len(), 3);
    let supervisor = tokio::sync::Mutex::new(Supervisor::new());
    let primary = || async { Some(1) };
    let targets = Targets {
        supervisor: &supervisor,
        network: &mesh.network,
        primary: &primary,
        disk: None,
        membership: None,
    };
    let mut events = Vec::new();
    let mut cuts_seen = Vec::new();
    let mut observer = |notice: &Notice| {
        if let Some(event) = notice.history_event() {
            cuts_seen.push(mesh.network.cut_links().len());
            events.push(event.clone());
        }
    };
    let report = run_schedule(
        &schedule,
        Instant::now(),
        &targets,
        &mut observer,
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(report.faults.len(), 3);
    assert!(report.errors.is_empty() && !report.interrupted);
    let fs: Vec<&str> = events.iter().map(|e| e.f.as_str()).collect();
    assert_eq!(fs, ["start-partition", "stop-partition"].repeat(3));
    for (i, pair) in events.chunks(2).enumerate() {
        assert_eq!(pair[0].value, pair[1].value);
        assert!(cuts_seen[2 * i] > 0, "fault {i} cut nothing");
        assert_eq!(cuts_seen[2 * i + 1], 0, "fault {i} was not healed");
    }
}

#[tokio::test]
async fn run_schedule_heals_the_current_fault_on_shutdown() {
    let mesh = mesh(3).await;
    let spec = ScheduleSpec {
        seed: 1,
        faults: vec![riptide_nemesis::FaultKind::IsolateOne],
        nodes: 3,
        interval_ms: 100,
        quiet_ms: None,
        options: FaultOptions::default(),
    };
    let schedule = Schedule::generate(spec, Duration::from_secs(3600)).unwrap();
    let supervisor = tokio::sync::Mutex::new(Supervisor::new());
    let primary = || async { None };
    let targets = Targets {
        supervisor: &supervisor,
        network: &mesh.network,
        primary: &primary,
        disk: None,
        membership: None,
    };
    let mut events = Vec::new();
    let mut observer = |notice: &Notice| events.extend(notice.history_event().cloned());
    let report = run_schedule(
        &schedule,
        Instant::now(),
        &targets,
        &mut observer,
        tokio::time::sleep(Duration::from_millis(150)),
    )
    .await
    .unwrap();
    assert!(report.interrupted);
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[1].f, "stop-partition");
    assert!(mesh.network.cut_links().is_empty());
}

#[tokio::test]
async fn a_one_way_blackhole_lets_requests_through_but_holds_the_answers() {
    let echo = echo_server().await;
    let proxy = LinkProxy::bind(echo.addr).await.unwrap();
    proxy.set_faults(LinkFault::Heal, LinkFault::Blackhole);
    assert!(proxy.is_cut());
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    assert!(round_trip(&mut client, b"one-way", SILENCE).await.is_none());
    // The request crossed (the echo server answered), the answer did not.
    let deadline = Instant::now() + PROMPTLY;
    while proxy.stats().bytes_forward < 7 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(proxy.stats().bytes_forward, 7);
    assert_eq!(proxy.stats().bytes_backward, 0);
    proxy.heal();
    assert!(proxy.is_healthy());
    let mut back = [0u8; 7];
    timeout(PROMPTLY, client.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&back, b"one-way");
}
