#!/usr/bin/env python3
"""Key-value fairness for `make bench`: a tenant's small key-value writes
(one request at a time, `PUT /kv/kv/default/small{n}` on the
`testing-capabilities` component), quiet and beside a second tenant whose
four clients write 1,000 KiB values as fast as the host takes them.
Quiet and loaded windows alternate, four of each, and the p99 is taken over
each kind's pooled samples. The host is pinned to CPU 0; the clients share
CPU 1, and the bulk writers run in processes of their own.

Usage: bench/kv_fairness.py BERTH CAPABILITIES_WASM WORKDIR [HOST FLAGS...]
Prints one line of key=value figures. Host flags go to `berth serve`, e.g.
`--kv-write-rate 8MiB --kv-write-burst 16MiB` for the former pace.
"""
import http.client, json, multiprocessing, os, subprocess, sys, time, urllib.request

berth, wasm_path, work = sys.argv[1:4]
host_flags = sys.argv[4:]
TOKEN = "berth_op_bench"
ADMIN = "http://127.0.0.1:18098"
PORT = 18097
WINDOW = 4000  # control writes per window
os.sched_setaffinity(0, {1})


def admin(method, path, body, content_type="application/json"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(ADMIN + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {TOKEN}")
    req.add_header("Content-Type", content_type)
    with urllib.request.urlopen(req, timeout=120) as r:
        r.read()


def bulk_writer(w, seconds, counter):
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
    big = b"x" * (1000 * 1024)
    end = time.time() + seconds
    i = 0
    while time.time() < end and i < 100000:
        conn.request("PUT", f"/kv/kv/default/big{w}-{i % 4}", body=big,
                     headers={"host": "bulk.localhost"})
        r = conn.getresponse()
        r.read()
        if r.status < 300:
            with counter.get_lock():
                counter.value += 1
        i += 1


def window():
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
    took = []
    for i in range(WINDOW):
        t = time.perf_counter()
        conn.request("PUT", f"/kv/kv/default/small{i % 16}", body=b"a small value",
                     headers={"host": "control.localhost"})
        r = conn.getresponse()
        r.read()
        if r.status >= 300:
            sys.exit(f"control write: {r.status}")
        took.append(time.perf_counter() - t)
    return took


def p(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * q))] * 1000


host = subprocess.Popen(
    ["taskset", "-c", "0", berth, "serve", "--listen", f"127.0.0.1:{PORT}",
     "--admin-listen", "127.0.0.1:18098", "--data-dir", os.path.join(work, "kvfair-data"),
     *host_flags],
    env={**os.environ, "BERTH_OPERATOR_TOKEN": TOKEN, "BERTH_LOG": "warn"},
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    for _ in range(600):
        try:
            urllib.request.urlopen(ADMIN + "/healthz", timeout=1)
            break
        except OSError:
            time.sleep(0.05)
    wasm = open(wasm_path, "rb").read()
    for tenant in ("control", "bulk"):
        admin("POST", "/v1/tenants", {"name": tenant})
        admin("PUT", f"/v1/tenants/{tenant}/services/kv/versions/v1", wasm, "application/wasm")
        admin("PUT", f"/v1/tenants/{tenant}/services/kv", {"route": "/kv", "version": "v1"})
    window()  # warm up: instances, the tenant's file
    quiet, loaded, written, loaded_seconds = [], [], multiprocessing.Value("i", 0), 0.0
    for _ in range(4):
        quiet += window()
        writers = [multiprocessing.Process(target=bulk_writer, args=(w, 3600, written))
                   for w in range(4)]
        for wr in writers:
            wr.start()
        time.sleep(0.5)
        t = time.perf_counter()
        loaded += window()
        loaded_seconds += time.perf_counter() - t
        for wr in writers:
            wr.terminate()
            wr.join()
    q99, l99 = p(quiet, 0.99), p(loaded, 0.99)
    print(f"quiet_p50_ms={p(quiet, 0.5):.3f} quiet_p99_ms={q99:.3f} "
          f"loaded_p50_ms={p(loaded, 0.5):.3f} loaded_p99_ms={l99:.3f} "
          f"p99_ratio={l99 / q99:.2f} bulk_writes={written.value} "
          f"bulk_mib_per_s={written.value * 1000 / 1024 / max(loaded_seconds + 4 * 0.5, 0.1):.1f}")
finally:
    host.terminate()
    host.wait()
