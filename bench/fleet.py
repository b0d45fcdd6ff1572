#!/usr/bin/env python3
"""Fleet benchmarks for `make bench`: three `berth serve` hosts sharing one
PostgreSQL server on loopback.

- Convergence: from sending the activation of a new version to host A until
  hosts B and C both serve it; the median of 10 deploys.
- Throughput: `hello` through one host, then through three hosts, each time
  with the hosts on CPU 0 and the load on CPU 1 (one `wrk` per host, the
  connections split between them). On a 2-core machine the three hosts
  share the one core the single host had, so the ratio shows what
  coordination costs, not what more machines would gain.

Usage: bench/fleet.py BERTH HELLO_WASM WORKDIR DURATION CONNECTIONS
Prints one line of key=value figures.
"""
import json, os, re, statistics, subprocess, sys, time
import urllib.request

from pgserver import free_port, start_postgres

berth, hello_path, work, duration, connections = sys.argv[1:6]
duration, connections = int(duration), int(connections)
TOKEN = "berth_op_bench"
os.sched_setaffinity(0, {1})
procs = []


class Host:
    def __init__(self, name, store):
        self.data, self.admin = free_port(), free_port()
        self.proc = subprocess.Popen(
            ["taskset", "-c", "0", berth, "serve", "--listen", f"127.0.0.1:{self.data}",
             "--admin-listen", f"127.0.0.1:{self.admin}", "--store", store,
             "--data-dir", os.path.join(work, f"fleet-{name}")],
            env={**os.environ, "BERTH_OPERATOR_TOKEN": TOKEN, "BERTH_LOG": "warn"},
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, f"fleet-{name}.log"), "w"))
        procs.append(self.proc)
        for _ in range(1200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/readyz", timeout=1)
                return
            except OSError:
                time.sleep(0.05)
        sys.exit(f"fleet host {name} did not come up: "
                 + open(os.path.join(work, f"fleet-{name}.log")).read()[-2000:])

    def call(self, method, path, body=None, content_type="application/json"):
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.admin}{path}", data=data,
                                     method=method)
        req.add_header("Authorization", f"Bearer {TOKEN}")
        if data is not None:
            req.add_header("Content-Type", content_type)
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read() or b"null")

    def optimised(self):
        """Whether Cranelift's build has been compiled here (the quick Winch
        build serves a new version until then)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/metrics", timeout=10) as r:
            text = r.read().decode()
        return re.search(r'^berth_compiles_total\{result="ok"\} [1-9]', text, re.M) is not None

    def version(self):
        req = urllib.request.Request(f"http://127.0.0.1:{self.data}/",
                                     headers={"Host": "bench.localhost"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.headers.get("x-berth-version")
        except urllib.error.HTTPError as e:
            return e.headers.get("x-berth-version")


def wrk(hosts):
    """Requests per second through `hosts`, one wrk per host on CPU 1."""
    share = max(1, connections // len(hosts))
    runs = [subprocess.Popen(
        ["taskset", "-c", "1", "wrk", "-t1", f"-c{share}", f"-d{duration}s",
         "-H", "Host: bench.localhost", f"http://127.0.0.1:{h.data}/"],
        stdout=subprocess.PIPE, text=True) for h in hosts]
    total = 0.0
    for run in runs:
        out = run.communicate()[0]
        if "Non-2xx" in out:
            sys.exit(f"errors under load:\n{out}")
        total += float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return total


stop_postgres = None
try:
    store, stop_postgres = start_postgres(fsync=False)
    a, b, c = Host("a", store), Host("b", store), Host("c", store)
    a.call("POST", "/v1/tenants", {"name": "bench"})
    hello = open(hello_path, "rb").read()
    a.call("PUT", "/v1/tenants/bench/services/web/versions/v0", hello, "application/wasm")
    a.call("PUT", "/v1/tenants/bench/services/web", {"route": "/", "version": "v0"})
    for host in (b, c):
        while host.version() != "v0":
            time.sleep(0.01)

    samples = []
    for i in range(1, 11):
        label = f"v{i}"
        # The same bytes under a new label: what is measured is the change
        # reaching the other hosts, not compiling.
        a.call("PUT", f"/v1/tenants/bench/services/web/versions/{label}", hello,
               "application/wasm")
        t0 = time.perf_counter()
        a.call("PUT", "/v1/tenants/bench/services/web", {"version": label})
        pending = {b, c}
        while pending:
            pending = {h for h in pending if h.version() != label}
            if time.perf_counter() - t0 > 30:
                sys.exit(f"{label} did not reach every host")
        samples.append((time.perf_counter() - t0) * 1000)

    # Throughput of Cranelift's code, as a fleet serves once it settles:
    # wait for each host's background optimising build.
    deadline = time.perf_counter() + 120
    while not all(h.optimised() for h in (a, b, c)):
        if time.perf_counter() > deadline:
            sys.exit("the optimised builds never landed")
        time.sleep(0.1)
    time.sleep(0.5)
    # Warm every host, then measure three, then one.
    wrk([a, b, c])
    three = wrk([a, b, c])
    for host in (b, c):
        host.proc.terminate()
        host.proc.wait()
    wrk([a])
    one = wrk([a])
    print(f"converge_ms={statistics.median(samples):.0f} converge_max_ms={max(samples):.0f} "
          f"one_rps={one:.0f} three_rps={three:.0f} fleet_ratio={three / one:.2f}")
finally:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
    if stop_postgres:
        try:
            stop_postgres()
        except subprocess.CalledProcessError:
            pass
