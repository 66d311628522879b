#!/usr/bin/env python3
"""Failover time of a local 3-node Riptide (or etcd) cluster: kill -9 of the leader under write
load, time until writes succeed again, over N trials.

    scripts/failover.py [--trials 10] [--writers 8] [--signal kill|term] [--binary PATH]
                        [--system riptide|etcd] [--json FILE] [-- EXTRA NODE FLAGS]

Starts its own nodes on free 127.0.0.1 ports in a temporary directory (Riptide: the release
binary by default, build it with `cargo build --release -p riptide-server`; etcd: `etcd` from
PATH with `--enable-v2`), kills only the processes it started, and prints every trial plus the
median and the worst case.

The client is the same for both systems and knows nothing about which node lives or leads:
- `--writers` closed-loop writers (the load) and one prober that starts a new write every
  `--probe-ms` whatever is still in flight (so a request hanging on a dead leader until its
  timeout does not hide the moment writes work again). Every write is a PUT of a 16-byte value to
  one of 1,000 keys, sent to a node picked at random among all three (dead or alive), following
  307 redirects (Riptide's followers redirect; etcd's followers forward to the leader).
- A trial's **gap** is the time from the last write answered successfully before the kill to the
  first successful answer of a write sent after the kill: how long clients saw no write succeed.
  `kill->ok` (printed too) runs from the kill itself instead.
- Between trials the killed node is restarted and the cluster must agree on a leader again, then
  one second of steady load passes and the leader is asked again right before the next kill
  (a change of leader in that second, e.g. a rejoining node deposing it, is counted).

`--signal term` sends SIGTERM instead (a Riptide or etcd leader then hands leadership over before
it exits): the cost of one step of a rolling restart.
"""

import argparse
import concurrent.futures
import ctypes
import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VALUE = "0123456789abcdef"  # 16 bytes, as in scripts/wrk-put.lua


def free_ports(n):
    """n distinct free ports (all sockets held open until every port is chosen)."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def die_with_parent():
    """Runs in the child before exec: SIGKILL it when this script dies, even by kill -9."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def http_json(port, path, timeout=1.0):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        conn.close()
        if response.status != 200:
            return None
        return json.loads(body)
    except (OSError, ValueError, http.client.HTTPException):
        return None


class Cluster:
    """Processes of one 3-node cluster; subclasses say how to start a node and ask who leads."""

    def __init__(self, binary, size, extra_args, workdir):
        self.binary = binary
        self.size = size
        self.extra_args = extra_args
        self.workdir = workdir
        ports = free_ports(2 * size)
        self.client_ports = {i: ports[i - 1] for i in range(1, size + 1)}
        self.peer_ports = {i: ports[size + i - 1] for i in range(1, size + 1)}
        self.procs = {}
        # Writers read `procs` while the main thread (or a killer thread) changes it.
        self.lock = threading.Lock()

    def node_args(self, i):
        raise NotImplementedError

    def leader_if_settled(self):
        """The leader's id when every live node agrees on it and it says it leads, else None."""
        raise NotImplementedError

    def write_request(self, key):
        """(method, path, body, headers) of one 16-byte write to key."""
        raise NotImplementedError

    def start(self, i):
        log = open(os.path.join(self.workdir, f"n{i}.log"), "ab")
        proc = subprocess.Popen(self.node_args(i) + self.extra_args, stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
        log.close()
        with self.lock:
            self.procs[i] = proc

    def kill(self, i, graceful=False):
        with self.lock:
            proc = self.procs.get(i)
        if proc is not None:
            if graceful:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
            else:
                proc.kill()
            proc.wait()
            with self.lock:
                self.procs.pop(i, None)

    def kill_all(self):
        with self.lock:
            ids = list(self.procs)
        for i in ids:
            self.kill(i)

    def live(self):
        with self.lock:
            procs = list(self.procs.items())
        return [i for i, p in procs if p.poll() is None]

    def wait_for_leader(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, proc in list(self.procs.items()):
                if proc.poll() is not None:
                    raise RuntimeError(f"node {i} exited (code {proc.returncode}); "
                                       f"see {self.workdir}/n{i}.log")
            leader = self.leader_if_settled()
            if leader is not None:
                return leader
            time.sleep(0.02)
        raise RuntimeError("no leader everyone agrees on")


class RiptideCluster(Cluster):
    def node_args(self, i):
        args = [self.binary, "--id", str(i), "--data-dir", os.path.join(self.workdir, f"n{i}"),
                "--listen-client", f"127.0.0.1:{self.client_ports[i]}",
                "--listen-peer", f"127.0.0.1:{self.peer_ports[i]}", "--log-level", "warn"]
        for j in range(1, self.size + 1):
            if j != i:
                args += ["--peer", f"{j}=127.0.0.1:{self.peer_ports[j]}",
                         "--peer-client-url", f"{j}=http://127.0.0.1:{self.client_ports[j]}"]
        return args

    def leader_if_settled(self):
        views = [http_json(self.client_ports[i], "/status") for i in self.live()]
        if not views or None in views:
            return None
        leaders = {v.get("leader") for v in views}
        if len(leaders) != 1 or None in leaders:
            return None
        leader = leaders.pop()
        if leader not in self.live():
            return None
        if (http_json(self.client_ports[leader], "/status") or {}).get("role") != "leader":
            return None
        return leader

    def write_request(self, key):
        return "PUT", f"/kv/{key}", VALUE, {}


class EtcdCluster(Cluster):
    def __init__(self, binary, size, extra_args, workdir):
        super().__init__(binary, size, extra_args, workdir)
        self.token = f"riptide-failover-{os.getpid()}-{random.randrange(10**9)}"

    def node_args(self, i):
        initial = ",".join(f"n{j}=http://127.0.0.1:{self.peer_ports[j]}"
                           for j in range(1, self.size + 1))
        client = f"http://127.0.0.1:{self.client_ports[i]}"
        peer = f"http://127.0.0.1:{self.peer_ports[i]}"
        # etcd's defaults (heartbeat 100 ms, election 1000 ms, pre-vote off in 3.4, fsync on),
        # plus the v2 API the benchmark speaks. The initial-cluster flags are ignored on a restart
        # from an existing data dir.
        return [self.binary, "--name", f"n{i}", "--data-dir", os.path.join(self.workdir, f"n{i}"),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", initial, "--initial-cluster-token", self.token,
                "--initial-cluster-state", "new", "--enable-v2", "--log-level", "warn",
                "--logger", "zap"]

    def leader_if_settled(self):
        live = self.live()
        views = {i: http_json(self.client_ports[i], "/v2/stats/self") for i in live}
        if not views or None in views.values():
            return None
        leaders = {(v.get("leaderInfo") or {}).get("leader") for v in views.values()}
        if len(leaders) != 1 or None in leaders or "" in leaders:
            return None
        leader_id = leaders.pop()
        for i, v in views.items():
            if v.get("id") == leader_id and v.get("state") == "StateLeader":
                return i
        return None

    def write_request(self, key):
        return ("PUT", f"/v2/keys/{key}", f"value={VALUE}",
                {"Content-Type": "application/x-www-form-urlencoded"})


def write(cluster, port, key, timeout):
    """One write, following up to 3 redirects; True on 200/201."""
    method, path, body, headers = cluster.write_request(key)
    for _ in range(4):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status in (301, 302, 307, 308):
                location = response.getheader("location", "")
                hostport, _, rest = location.partition("//")[2].partition("/")
                port = int(hostport.rsplit(":", 1)[1])
                path = "/" + rest
                continue
            return response.status in (200, 201)
        except (OSError, ValueError, http.client.HTTPException):
            return False
        finally:
            conn.close()
    return False


class Load:
    """Closed-loop writers plus an open-loop prober; remembers every successful write's send and
    answer times (the list is emptied at the start of each trial, so memory stays bounded)."""

    def __init__(self, cluster, writers, probe_ms, timeout):
        self.cluster = cluster
        self.timeout = timeout
        self.probe_s = probe_ms / 1000
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.successes = []  # (sent, answered), in answer order
        self.failures = 0
        self.nodes = sorted(cluster.client_ports)
        # Probes may hang until their timeout while no leader answers: enough workers that the
        # prober keeps its pace for a whole timeout.
        self.pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(16, int(2 * timeout / self.probe_s) + 8))
        self.threads = [threading.Thread(target=self.run, args=(w,), daemon=True)
                        for w in range(writers)]
        self.threads.append(threading.Thread(target=self.probe, daemon=True))
        for t in self.threads:
            t.start()

    def attempt(self, rng):
        node = rng.choice(self.nodes)
        sent = time.monotonic()
        ok = write(self.cluster, self.cluster.client_ports[node], f"k{rng.randrange(1000)}",
                   self.timeout)
        with self.lock:
            if ok:
                self.successes.append((sent, time.monotonic()))
            else:
                self.failures += 1
        return ok

    def run(self, writer):
        rng = random.Random(writer)
        while not self.stop.is_set():
            if not self.attempt(rng):
                time.sleep(0.005)

    def probe(self):
        rng = random.Random(-1)
        next_at = time.monotonic()
        while not self.stop.is_set():
            self.pool.submit(self.attempt, random.Random(rng.random()))
            next_at += self.probe_s
            time.sleep(max(0.0, next_at - time.monotonic()))

    def reset(self):
        with self.lock:
            self.successes = []

    def measure(self, killed_at, timeout=60):
        """(gap, kill_to_ok) in seconds for a kill at killed_at (see the module doc)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                before = [answered for _, answered in self.successes if answered <= killed_at]
                after = [answered for sent, answered in self.successes if sent >= killed_at]
            if after:
                if not before:
                    raise RuntimeError("no write succeeded before the kill")
                first = min(after)
                return first - max(before), first - killed_at
            time.sleep(0.005)
        raise RuntimeError("writes did not succeed again")

    def close(self):
        self.stop.set()
        for t in self.threads:
            t.join()
        self.pool.shutdown(wait=True, cancel_futures=True)


def summary(values):
    return {"median_ms": round(statistics.median(values), 1), "worst_ms": round(max(values), 1),
            "best_ms": round(min(values), 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--writers", type=int, default=8, help="closed-loop writers (the load)")
    parser.add_argument("--probe-ms", type=float, default=10,
                        help="the prober starts a write this often")
    parser.add_argument("--request-timeout", type=float, default=1.0,
                        help="client timeout of one write, seconds")
    parser.add_argument("--signal", choices=["kill", "term"], default="kill")
    parser.add_argument("--system", choices=["riptide", "etcd"], default="riptide")
    parser.add_argument("--binary", help="node binary (default: target/release/riptide-server, "
                                         "or etcd from PATH)")
    parser.add_argument("--json", help="also write the trials and summary to this file")
    parser.add_argument("extra", nargs="*", help="extra flags for every node (after --)")
    args = parser.parse_args()

    # A SIGTERM (e.g. from a benchmark script's cleanup) unwinds like Ctrl-C: nodes are killed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    if args.system == "riptide":
        binary = args.binary or os.path.join(REPO, "target/release/riptide-server")
        kind = RiptideCluster
    else:
        binary = args.binary or shutil.which("etcd") or "etcd"
        kind = EtcdCluster
    workdir = tempfile.mkdtemp(prefix=f"{args.system}-failover-")
    cluster = kind(binary, 3, args.extra, workdir)
    load = None
    trials = []
    changes_while_settling = 0
    try:
        for i in range(1, 4):
            cluster.start(i)
        cluster.wait_for_leader()
        load = Load(cluster, args.writers, args.probe_ms, args.request_timeout)
        for trial in range(1, args.trials + 1):
            settled = cluster.wait_for_leader()
            load.reset()
            time.sleep(1.0)  # steady load on a settled leader
            # Asked again right before the kill: a restarted node may have deposed the leader
            # meanwhile (without pre-vote), and killing a follower would measure nothing.
            leader = cluster.wait_for_leader()
            if leader != settled:
                changes_while_settling += 1
            if args.signal == "kill":
                # Sent from this thread and timed after the signal is sent: a write sent before
                # that may still be answered by the old leader and must not count as "after".
                with cluster.lock:
                    cluster.procs[leader].kill()
                killed_at = time.monotonic()
                killer = threading.Thread(target=cluster.kill, args=(leader,))  # reaps it
            else:
                # With SIGTERM the process stays up during the handover and writes may succeed
                # on the new leader before it exits: the kill runs on its own thread.
                killed_at = time.monotonic()
                killer = threading.Thread(target=cluster.kill, args=(leader, True))
            killer.start()
            gap, kill_to_ok = load.measure(killed_at)
            killer.join()
            trials.append({"leader": leader, "gap_ms": round(gap * 1000, 1),
                           "kill_to_ok_ms": round(kill_to_ok * 1000, 1)})
            print(f"trial {trial}: SIG{args.signal.upper()} to {args.system} leader {leader}, "
                  f"no write succeeded for {gap * 1000:.0f} ms "
                  f"(kill->ok {kill_to_ok * 1000:.0f} ms)", flush=True)
            cluster.start(leader)
        gaps = summary([t["gap_ms"] for t in trials])
        print(f"{args.system} failover over {len(trials)} trials: median {gaps['median_ms']:.0f} ms, "
              f"worst {gaps['worst_ms']:.0f} ms, best {gaps['best_ms']:.0f} ms", flush=True)
        if changes_while_settling:
            print(f"leadership changed {changes_while_settling} time(s) in the second of steady "
                  "load after a restarted node rejoined", flush=True)
        if args.json:
            result = {"system": args.system, "signal": args.signal, "writers": args.writers,
                      "probe_ms": args.probe_ms, "request_timeout_s": args.request_timeout,
                      "node_flags": args.extra, "trials": trials, **gaps,
                      "leader_changes_while_settling": changes_while_settling,
                      "kill_to_ok": summary([t["kill_to_ok_ms"] for t in trials])}
            with open(args.json, "w") as f:
                json.dump(result, f, indent=2)
    finally:
        if load is not None:
            load.close()
        cluster.kill_all()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
