#!/usr/bin/env python3
"""Deploy benchmarks for `make bench`: upload-to-first-request latency (cold
compile and already-compiled digest), and idle memory per service with 1,000
services deployed. The host is pinned to CPU 0, this client to CPU 1.

Usage: bench/deploy.py BERTH HELLO_WASM WORKDIR
Prints one line of key=value figures.
"""
import json, os, statistics, subprocess, sys, time, urllib.request

berth, hello_path, work = sys.argv[1:4]
TOKEN = "berth_op_bench"
ADMIN = "http://127.0.0.1:18086"
DATA = "http://127.0.0.1:18085"
os.sched_setaffinity(0, {1})

host = subprocess.Popen(
    ["taskset", "-c", "0", berth, "serve", "--listen", "127.0.0.1:18085",
     "--admin-listen", "127.0.0.1:18086", "--data-dir", os.path.join(work, "deploy-data")],
    env={**os.environ, "BERTH_OPERATOR_TOKEN": TOKEN, "BERTH_LOG": "warn"},
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def call(method, path, body=None, content_type="application/json"):
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    req = urllib.request.Request(ADMIN + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {TOKEN}")
    if data is not None:
        req.add_header("Content-Type", content_type)
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read() or b"null")


def first_served(path, label):
    """Polls the data plane until `label` answers; returns when it does."""
    for _ in range(10000):
        req = urllib.request.Request(DATA + path, headers={"Host": "bench.localhost"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                if r.headers.get("x-berth-version") == label:
                    return
        except urllib.error.HTTPError:
            pass
    sys.exit(f"{label} never served")


def variant(data, n):
    name = b"berth-bench"
    payload = n.to_bytes(4, "little")
    return data + bytes([0, 1 + len(name) + len(payload), len(name)]) + name + payload


def deploy(service, label, data, route):
    t0 = time.perf_counter()
    call("PUT", f"/v1/tenants/bench/services/{service}/versions/{label}", data, "application/wasm")
    call("PUT", f"/v1/tenants/bench/services/{service}", {"route": route, "version": label})
    first_served(route, label)
    return (time.perf_counter() - t0) * 1000


def rss_kib(pid):
    # The berth process is taskset's child after exec: same pid.
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


try:
    for _ in range(600):
        try:
            urllib.request.urlopen(ADMIN + "/healthz", timeout=1)
            break
        except OSError:
            time.sleep(0.05)
    call("POST", "/v1/tenants", {"name": "bench"})
    # The default tenant quotas (100 services, 1,000 versions) are below
    # what this measures.
    call("PUT", "/v1/tenants/bench", {"limits": {"services": 1100, "versions": 2000}})
    hello = open(hello_path, "rb").read()

    cold = [deploy("web", f"c{i}", variant(hello, i), "/web") for i in range(7)]
    warm = [deploy("web", f"w{i}", hello, "/web") for i in range(1, 21)]

    time.sleep(1)
    before = rss_kib(host.pid)
    t0 = time.perf_counter()
    for i in range(1000):
        call("PUT", f"/v1/tenants/bench/services/s{i}/versions/1", hello, "application/wasm")
        call("PUT", f"/v1/tenants/bench/services/s{i}", {"route": f"/s{i}", "version": "1"})
    deploy_1000_s = time.perf_counter() - t0
    for i in (0, 499, 999):
        first_served(f"/s{i}", "1")
    time.sleep(2)
    after = rss_kib(host.pid)
    print(f"cold_ms={statistics.median(cold):.0f} warm_ms={statistics.median(warm):.1f} "
          f"services=1000 deploy_1000_s={deploy_1000_s:.1f} "
          f"rss_before_mib={before/1024:.1f} rss_after_mib={after/1024:.1f} "
          f"per_service_kib={(after-before)/1000:.1f}")
finally:
    host.terminate()
    host.wait()
