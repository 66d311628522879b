#!/usr/bin/env python3
"""Failover time of a local 3-node Riptide cluster: kill -9 of the leader under write load,
time until a write succeeds again (on the new leader), over N trials.

    scripts/failover.py [--trials 10] [--writers 8] [--signal kill|term] [--binary PATH]
                        [-- EXTRA NODE FLAGS]

Starts its own nodes on free 127.0.0.1 ports in a temporary directory (release binary by
default; build it with `cargo build --release -p riptide-server`), kills only the processes it
started, and prints every trial plus the median and the worst case. Writers are closed-loop
PUTs of 16-byte values over 1,000 keys, sent to any live node with 307 redirects followed.
A trial's time runs from the kill to the first write *sent after the kill* that succeeds.
`--signal term` sends SIGTERM instead (a leader then hands leadership over before it exits):
the cost of one step of a rolling restart.
"""

import argparse
import http.client
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, binary, size, extra_args, workdir):
        self.binary = binary
        self.size = size
        self.extra_args = extra_args
        self.workdir = workdir
        self.client_ports = {i: free_port() for i in range(1, size + 1)}
        self.peer_ports = {i: free_port() for i in range(1, size + 1)}
        self.procs = {}
        # Writers read `procs` while the main thread (or a killer thread) changes it.
        self.lock = threading.Lock()

    def start(self, i):
        args = [self.binary, "--id", str(i), "--data-dir", os.path.join(self.workdir, f"n{i}"),
                "--listen-client", f"127.0.0.1:{self.client_ports[i]}",
                "--listen-peer", f"127.0.0.1:{self.peer_ports[i]}", "--log-level", "warn"]
        for j in range(1, self.size + 1):
            if j != i:
                args += ["--peer", f"{j}=127.0.0.1:{self.peer_ports[j]}",
                         "--peer-client-url", f"{j}=http://127.0.0.1:{self.client_ports[j]}"]
        log = open(os.path.join(self.workdir, f"n{i}.log"), "ab")
        proc = subprocess.Popen(args + self.extra_args, stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL)
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

    def status(self, i):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.client_ports[i], timeout=1)
            conn.request("GET", "/status")
            body = conn.getresponse().read()
            conn.close()
            return json.loads(body)
        except (OSError, ValueError, http.client.HTTPException):
            return None

    def wait_for_leader(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            views = [self.status(i) for i in self.live()]
            leaders = {v.get("leader") for v in views if v}
            if None not in views and len(leaders) == 1 and None not in leaders:
                leader = leaders.pop()
                if (self.status(leader) or {}).get("role") == "leader":
                    return leader
            time.sleep(0.02)
        raise RuntimeError("no leader everyone agrees on")


def put(port, key, value, timeout=1.0):
    """One PUT, following up to 3 redirects; True on 200."""
    path = f"/kv/{key}"
    for _ in range(4):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.request("PUT", path, body=value)
            response = conn.getresponse()
            response.read()
            if response.status == 307:
                location = response.getheader("location", "")
                hostport, _, rest = location.partition("//")[2].partition("/")
                port = int(hostport.rsplit(":", 1)[1])
                path = "/" + rest
                continue
            return response.status == 200
        except (OSError, ValueError, http.client.HTTPException):
            return False
        finally:
            conn.close()
    return False


class Load:
    """Closed-loop writers; remembers when each successful write was sent and answered."""

    def __init__(self, cluster, writers):
        self.cluster = cluster
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.successes = []  # (sent, answered)
        self.threads = [threading.Thread(target=self.run, args=(w,), daemon=True)
                        for w in range(writers)]
        for t in self.threads:
            t.start()

    def run(self, writer):
        rng = random.Random(writer)
        while not self.stop.is_set():
            live = self.cluster.live()
            if not live:
                time.sleep(0.005)
                continue
            node = rng.choice(live)
            sent = time.monotonic()
            ok = put(self.cluster.client_ports[node], f"k{rng.randrange(1000)}",
                     "%016d" % rng.randrange(10**16))
            if ok:
                with self.lock:
                    self.successes.append((sent, time.monotonic()))
            else:
                time.sleep(0.005)

    def first_success_sent_after(self, t, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                done = [answered for sent, answered in self.successes if sent >= t]
            if done:
                return min(done)
            time.sleep(0.005)
        raise RuntimeError("writes did not succeed again")

    def close(self):
        self.stop.set()
        for t in self.threads:
            t.join()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--signal", choices=["kill", "term"], default="kill")
    parser.add_argument("--binary", default=os.path.join(REPO, "target/release/riptide-server"))
    parser.add_argument("extra", nargs="*", help="extra flags for every node (after --)")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="riptide-failover-")
    cluster = Cluster(args.binary, 3, args.extra, workdir)
    load = None
    times = []
    try:
        for i in range(1, 4):
            cluster.start(i)
        cluster.wait_for_leader()
        load = Load(cluster, args.writers)
        for trial in range(1, args.trials + 1):
            leader = cluster.wait_for_leader()
            time.sleep(1.0)  # steady load on a settled leader
            killed_at = time.monotonic()
            # The kill runs on its own thread: with SIGTERM the process stays up during the
            # handover, and writes may succeed on the new leader before it exits.
            killer = threading.Thread(target=cluster.kill, args=(leader, args.signal == "term"))
            killer.start()
            back = load.first_success_sent_after(killed_at)
            killer.join()
            ms = (back - killed_at) * 1000
            times.append(ms)
            print(f"trial {trial}: SIG{args.signal.upper()} to leader {leader}, "
                  f"writes back after {ms:.0f} ms",
                  flush=True)
            cluster.start(leader)
        print(f"failover over {len(times)} trials: median {statistics.median(times):.0f} ms, "
              f"worst {max(times):.0f} ms, best {min(times):.0f} ms")
    finally:
        if load is not None:
            load.close()
        cluster.kill_all()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
