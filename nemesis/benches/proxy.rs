//! Measures what a healthy [`LinkProxy`] costs on loopback: bulk throughput and the latency it adds
//! to a small request-response round trip, each compared with a direct connection.
//!
//! A plain `main` (no bench framework): `cargo bench -p riptide-nemesis --bench proxy`.
//! Optional arguments: `--megabytes N` (bulk transfer size in total, default 1024) and `--round-trips N`
//! (default 20000).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use riptide_nemesis::LinkProxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A server that swallows everything (throughput) and answers each 64-byte message with 64 bytes
/// (latency); the mode is chosen by the first byte of a connection.
async fn server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = socket.set_nodelay(true);
            tokio::spawn(async move {
                let mut mode = [0u8; 1];
                if socket.read_exact(&mut mode).await.is_err() {
                    return;
                }
                if mode[0] == b's' {
                    let mut buf = vec![0u8; 256 * 1024];
                    while let Ok(n) = socket.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                    let _ = socket.write_all(b"done").await;
                } else {
                    let mut msg = [0u8; 64];
                    while socket.read_exact(&mut msg).await.is_ok() {
                        if socket.write_all(&msg).await.is_err() {
                            break;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// Sends `total` bytes and waits for the server's acknowledgement; returns MB/s.
async fn throughput(addr: SocketAddr, total: usize) -> f64 {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(b"s").await.expect("mode");
    let chunk = vec![42u8; 256 * 1024];
    let started = Instant::now();
    let mut sent = 0;
    while sent < total {
        stream.write_all(&chunk).await.expect("write");
        sent += chunk.len();
    }
    stream.shutdown().await.expect("shutdown");
    let mut done = [0u8; 4];
    stream.read_exact(&mut done).await.expect("ack");
    sent as f64 / 1e6 / started.elapsed().as_secs_f64()
}

/// A connection in ping-pong mode, warmed up.
async fn ping_pong_connection(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream.write_all(b"p").await.expect("mode");
    let mut msg = [7u8; 64];
    for _ in 0..200 {
        stream.write_all(&msg).await.expect("write");
        stream.read_exact(&mut msg).await.expect("read");
    }
    stream
}

/// Appends the round-trip times of `count` 64-byte ping-pongs to `times`.
async fn round_trips(stream: &mut TcpStream, count: usize, times: &mut Vec<Duration>) {
    let mut msg = [7u8; 64];
    for _ in 0..count {
        let started = Instant::now();
        stream.write_all(&msg).await.expect("write");
        stream.read_exact(&mut msg).await.expect("read");
        times.push(started.elapsed());
    }
}

/// Direct and proxied measurements are interleaved in this many blocks.
const ROUNDS: usize = 8;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let megabytes = arg("--megabytes", 1024);
    let count = arg("--round-trips", 20_000);
    let target = server().await;
    let proxy = LinkProxy::bind(target).await.expect("proxy");

    println!("riptide-nemesis proxy benchmark (loopback, healthy link)");
    // The machine is shared: alternate direct and proxied runs so both see the same load, and
    // keep the best throughput of each (noise only ever slows a run down).
    let (mut direct, mut proxied) = (0f64, 0f64);
    for _ in 0..ROUNDS {
        direct = direct.max(throughput(target, (megabytes << 20) / ROUNDS).await);
        proxied = proxied.max(throughput(proxy.addr(), (megabytes << 20) / ROUNDS).await);
    }
    println!(
        "throughput, best of {ROUNDS} x {} MiB one way: direct {direct:.0} MB/s, through proxy {proxied:.0} MB/s ({:.0}%)",
        megabytes / ROUNDS,
        100.0 * proxied / direct
    );

    let mut direct_connection = ping_pong_connection(target).await;
    let mut proxied_connection = ping_pong_connection(proxy.addr()).await;
    let (mut direct, mut proxied) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        round_trips(&mut direct_connection, count / ROUNDS, &mut direct).await;
        round_trips(&mut proxied_connection, count / ROUNDS, &mut proxied).await;
    }
    direct.sort_unstable();
    proxied.sort_unstable();
    println!("round trip of 64 bytes, {count} samples (µs):");
    for (label, p) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
        let d = percentile(&direct, p);
        let x = percentile(&proxied, p);
        println!(
            "  {label}: direct {:7.1}  proxy {:7.1}  added {:7.1}",
            micros(d),
            micros(x),
            micros(x) - micros(d)
        );
    }
    let mean = |v: &[Duration]| micros(v.iter().sum::<Duration>()) / v.len() as f64;
    println!(
        "  mean: direct {:7.1}  proxy {:7.1}  added {:7.1}",
        mean(&direct),
        mean(&proxied),
        mean(&proxied) - mean(&direct)
    );
}
