#!/usr/bin/env python3
"""Instance reuse and WASI 0.3 for `make bench`: `hello` and a guest that
does real work (json-api parsing a ~4 KiB JSON order and answering its
computed total), each built for WASI 0.2 and for 0.3 from the same source
(berth-sdk's `p3` feature), each served by `wasmtime serve`
(a fresh instance per request, and reusing instances) and by `berth up` in
the same two modes. Every server is pinned to CPU 0 and wrk to CPU 1, all on
loopback, RUST_BACKTRACE unset.

Usage: bench/worlds.py BERTH WASMTIME COMPONENT_DIR WORKDIR DURATION CONNECTIONS
Prints a Markdown section.
"""
import json, os, re, subprocess, sys, time, urllib.request

berth, wasmtime, components, work, duration, connections = sys.argv[1:7]
duration, connections = int(duration), int(connections)
env = {k: v for k, v in os.environ.items() if k != "RUST_BACKTRACE"}
P2 = f"{components}/hello.wasm"
# The same sources built for WASI 0.3 (berth-sdk's `p3` feature).
P3_DIR = os.path.normpath(f"{components}/../../p3/wasm32-wasip2/release")
P3 = f"{P3_DIR}/hello.wasm"
JSON = f"{components}/json_api.wasm"
JSON_P3 = f"{P3_DIR}/json_api.wasm"

ORDER = json.dumps({"items": [
    {"sku": f"SKU-{i:05d}-widget", "quantity": 1 + i % 7, "unit_price_cents": 199 + 37 * i}
    for i in range(64)
]})
LUA = os.path.join(work, "post_order.lua")
with open(LUA, "w") as f:
    f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
    f.write(f"wrk.body = {json.dumps(ORDER)}\n")


def wait_for(url):
    for _ in range(600):
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.05)
    raise SystemExit(f"server at {url} did not come up")


def ms(v):
    n, unit = re.match(r"([\d.]+)(\w+)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1, "s": 1000}[unit]


def measure(cmd, port, path="/", post=False):
    """(rps, p50 ms, p99 ms) of wrk against the server `cmd` starts."""
    server = subprocess.Popen(["taskset", "-c", "0"] + cmd, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(f"http://127.0.0.1:{port}{'/health' if post else path}")
        url = f"http://127.0.0.1:{port}{path}"
        script = ["-s", LUA] if post else []
        subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", "-d2s"]
                       + script + [url], check=True, capture_output=True)
        out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}",
                              f"-d{duration}s", "--latency"] + script + [url],
                             check=True, capture_output=True, text=True).stdout
    finally:
        server.terminate()
        server.wait()
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"{cmd}: {errors.group(1)} error responses")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    return rps, p50, p99


port = [18100]


def wasmtime_serve(component, *flags):
    port[0] += 1
    return [wasmtime, "serve", "-Scli", "--addr", f"127.0.0.1:{port[0]}", *flags, component], port[0]


def berth_up(component, *flags):
    port[0] += 1
    data = os.path.join(work, f"worlds-{port[0]}")
    return [berth, "up", component, "--listen", f"127.0.0.1:{port[0]}",
            "--data-dir", data, *flags], port[0]


FRESH_W = ["--max-instance-reuse-count", "1", "--max-instance-concurrent-reuse-count", "1"]
REUSE_W = ["--max-instance-reuse-count", "128"]
REUSE_B = ["--max-instance-reuse", "128"]
# wasmtime serve's 0.3 default: 128 requests per instance, 16 at once.
SHARED_B = ["--max-instance-reuse", "128", "--max-instance-concurrency", "16"]

rows = []  # (component, contestant, rps, p50, p99)
for label, component, path, post in [
    ("hello, WASI 0.2", P2, "/", False),
    ("hello, WASI 0.3", P3, "/", False),
    ("json-api POST /quotes (0.2)", JSON, "/quotes", True),
    ("json-api POST /quotes (0.3)", JSON_P3, "/quotes", True),
]:
    contestants = [
        ("`wasmtime serve`, fresh instance per request", wasmtime_serve(component, *FRESH_W)),
        ("`wasmtime serve`, its defaults", wasmtime_serve(component)),
        ("`wasmtime serve --max-instance-reuse-count 128`", wasmtime_serve(component, *REUSE_W)),
        ("Berth (`berth up`), fresh instance per request", berth_up(component)),
        ("Berth (`berth up --max-instance-reuse 128`)", berth_up(component, *REUSE_B)),
    ]
    if "0.3" in label:
        contestants.append(("Berth (`berth up --max-instance-reuse 128 --max-instance-concurrency 16`)",
                            berth_up(component, *SHARED_B)))
    for name, (cmd, p) in contestants:
        print(f"  {label}: {name}...", file=sys.stderr)
        rps, p50, p99 = measure(cmd, p, path, post)
        rows.append((label, name, rps, p50, p99))

print("| component | server | requests/s | p50 | p99 |")
print("|---|---|---:|---:|---:|")
for label, name, rps, p50, p99 in rows:
    print(f"| {label} | {name} | {rps:.0f} | {p50:.3f} ms | {p99:.3f} ms |")
print()
for label in dict.fromkeys(r[0] for r in rows):
    mine = [r for r in rows if r[0] == label]
    w_fresh = mine[0]
    w_best = max(mine[:3], key=lambda r: r[2])
    b_fresh = mine[3]
    b_reuse = max(mine[4:], key=lambda r: r[2])
    print(f"- {label}: Berth fresh / `wasmtime serve` fresh **{b_fresh[2] / w_fresh[2]:.2f}×** "
          f"(target 2×; p99 {b_fresh[4]:.3f} vs {w_fresh[4]:.3f} ms); Berth's best reusing mode ({b_reuse[1]}) / "
          f"`wasmtime serve`'s best mode ({w_best[1]}) **{b_reuse[2] / w_best[2]:.2f}×** "
          f"(target 1.5×; p99 {b_reuse[4]:.3f} vs {w_best[4]:.3f} ms)")
