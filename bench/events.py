#!/usr/bin/env python3
"""Events benchmarks for `make bench`: events delivered per second end to
end (publish to the subscriber's 2xx), and the latency from publish to
acknowledgement, on one host with SQLite and on one host with Postgres.

The subscriber is `hello` (it answers 200 to anything), so what is measured
is the event path: the admin API's publish (stored in one transaction),
the delivery loop's claim, the CloudEvents request through the service-call
path, and the acknowledgement (one more transaction). The host runs on CPU
0, the publishers on CPU 1.

- Throughput: EVENTS events from 8 publisher threads; the clock runs from
  the first publish until the topic's backlog is empty.
- Latency: 200 events one at a time; each from its publish until the
  topic reports it delivered (backlog 0), polled every millisecond, so a
  figure includes up to a poll of slack.

Usage: bench/events.py BERTH HELLO_WASM WORKDIR
With BENCH_PG_STATEMENTS=1, Postgres logs every statement's duration and the
costliest statements in all are printed on stderr at the end.
Prints one line of key=value figures.
"""
import json, os, statistics, subprocess, sys, threading, time
import urllib.request

from pgserver import free_port, start_postgres

berth, hello_path, work = sys.argv[1:4]
EVENTS = int(os.environ.get("BENCH_EVENTS", "5000"))
TOKEN = "berth_op_bench"
os.sched_setaffinity(0, {1})
procs = []


class Host:
    def __init__(self, name, extra):
        self.admin = free_port()
        log = os.path.join(work, f"events-{name}.log")
        self.proc = subprocess.Popen(
            ["taskset", "-c", "0", berth, "serve", "--listen", f"127.0.0.1:{free_port()}",
             "--admin-listen", f"127.0.0.1:{self.admin}",
             "--data-dir", os.path.join(work, f"events-{name}")] + extra,
            env={**os.environ, "BERTH_OPERATOR_TOKEN": TOKEN, "BERTH_LOG": "warn"},
            stdout=subprocess.DEVNULL, stderr=open(log, "w"))
        procs.append(self.proc)
        for _ in range(1200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/readyz", timeout=1)
                return
            except OSError:
                time.sleep(0.05)
        sys.exit(f"host {name} did not come up: " + open(log).read()[-2000:])

    def call(self, method, path, body=None, headers=None):
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.admin}{path}", data=data,
                                     method=method)
        req.add_header("Authorization", f"Bearer {TOKEN}")
        if not isinstance(body, (bytes, type(None))):
            req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read() or b"null")

    def publish(self):
        return self.call("POST", "/v1/tenants/bench/topics/work/events", b'{"n": 1}',
                         {"ce-type": "work", "content-type": "application/json"})

    def backlog(self):
        return self.call("GET", "/v1/tenants/bench/topics/work")["backlog"]


def measure(host):
    host.call("POST", "/v1/tenants", {"name": "bench"})
    host.call("PUT", "/v1/tenants/bench",
              {"limits": {"publish_rate": 1000000, "event_backlog": 10000000}})
    hello = open(hello_path, "rb").read()
    host.call("PUT", "/v1/tenants/bench/services/sink/versions/1", hello,
              {"content-type": "application/wasm"})
    host.call("PUT", "/v1/tenants/bench/services/sink", {
        "route": "/sink", "version": "1",
        "subscriptions": [{"topic": "work", "path": "/on/work"}]})
    for _ in range(50):  # warm: pools, caches, connections
        host.publish()
    while host.backlog() > 0:
        time.sleep(0.01)

    t0 = time.perf_counter()
    per_thread = EVENTS // 8

    def publisher():
        for _ in range(per_thread):
            host.publish()
    threads = [threading.Thread(target=publisher) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    published = time.perf_counter() - t0
    deadline = time.perf_counter() + 300
    while host.backlog() > 0:
        if time.perf_counter() > deadline:
            sys.exit("the backlog never emptied")
        time.sleep(0.005)
    delivered = time.perf_counter() - t0
    total = per_thread * 8

    latencies = []
    for _ in range(200):
        t = time.perf_counter()
        host.publish()
        while host.backlog() > 0:
            time.sleep(0.001)
        latencies.append((time.perf_counter() - t) * 1000)
    latencies.sort()
    return (total / published, total / delivered, statistics.median(latencies),
            latencies[int(len(latencies) * 0.99) - 1])


stop_postgres = None
try:
    sqlite = Host("sqlite", [])
    s_pub, s_rate, s_p50, s_p99 = measure(sqlite)
    sqlite.proc.terminate()
    sqlite.proc.wait()
    store, stop_postgres = start_postgres(log_statements=os.environ.get("BENCH_PG_STATEMENTS") == "1")
    pg = Host("postgres", ["--store", store])
    p_pub, p_rate, p_p50, p_p99 = measure(pg)
    print(f"events={EVENTS} sqlite_publish_per_s={s_pub:.0f} sqlite_delivered_per_s={s_rate:.0f} "
          f"sqlite_p50_ms={s_p50:.1f} sqlite_p99_ms={s_p99:.1f} "
          f"pg_publish_per_s={p_pub:.0f} pg_delivered_per_s={p_rate:.0f} "
          f"pg_p50_ms={p_p50:.1f} pg_p99_ms={p_p99:.1f}")
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
