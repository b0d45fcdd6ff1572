#!/usr/bin/env bash
# `make bench`: serve the same `hello` component with Berth and with
# `wasmtime serve`, plus a native hyper server as the ceiling; drive each with
# wrk on loopback, the server pinned to CPU 0 and wrk to CPU 1; then measure
# in-process instantiate-and-handle and a warm second start; compare `berth
# serve` with metrics and span export on and off. Writes docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."

# wasmtime captures backtraces on error paths when this is set.
unset RUST_BACKTRACE
DURATION=${BENCH_DURATION:-10}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
WASMTIME=${WASMTIME:-.tools/bin/wasmtime}
HELLO=components/target/wasm32-wasip2/release/hello.wasm
OUT=docs/benchmarks.md
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq wrk
fi
[ -x "$WASMTIME" ] || { echo "missing $WASMTIME: run 'make bench'"; exit 1; }
[ -f "$HELLO" ] || { echo "missing $HELLO: run 'make components'"; exit 1; }
CPUS=$(nproc)
if [ "$CPUS" -lt 2 ]; then echo "need 2 CPUs to pin server and load apart"; exit 1; fi

cargo build --release -q -p berth --bins && cargo build --release -q -p berth-runtime --example native_hello
# The benchmark binaries too, on both cores: `cargo bench` below runs pinned
# to CPU 0 and would otherwise compile them there.
cargo bench -q -p berth-runtime --no-run 2>/dev/null

wait_for() { # url
  for _ in $(seq 1 600); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 0.05
  done
  echo "server at $1 did not come up"; return 1
}

# run_contestant NAME PORT COMMAND...: prints "rps p50_ms p99_ms"
run_contestant() {
  local name=$1 port=$2; shift 2
  taskset -c 0 "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  local pid=$!
  PIDS+=("$pid")
  wait_for "http://127.0.0.1:$port/"
  # Warm up: pools, caches, connections.
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d2s "http://127.0.0.1:$port/" >/dev/null
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:$port/" >"$WORK/$name.wrk"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  python3 - "$WORK/$name.wrk" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def ms(v):
    n, unit = re.match(r"([\d.]+)(\w+)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
if errors:
    sys.exit(f"{sys.argv[1]}: {errors.group(1)} error responses")
print(f"{rps:.0f} {p50:.3f} {p99:.3f}")
PY
}

echo "native hyper..."
read -r N_RPS N_P50 N_P99 < <(run_contestant native 18081 target/release/examples/native_hello 127.0.0.1:18081)
echo "wasmtime serve..."
# -Scli links all of WASI 0.2, as Berth does: the Rust `hello` imports
# wasi:cli/environment, which the bare proxy world lacks.
read -r W_RPS W_P50 W_P99 < <(run_contestant wasmtime 18082 "$WASMTIME" serve -Scli --addr 127.0.0.1:18082 "$HELLO")
echo "berth..."
read -r B_RPS B_P50 B_P99 < <(run_contestant berth 18083 target/release/berth up "$HELLO" --listen 127.0.0.1:18083 --data-dir "$WORK/berth-data")

# What metrics and tracing cost: the same component under `berth serve`, with
# Prometheus metrics on and every request's span exported over OTLP to a sink
# on CPU 1, and with both off; the log is at info in both.
cat >"$WORK/bench.toml" <<TOML
[[service]]
name = "hello"
component = "$PWD/$HELLO"
route = "/"
TOML
python3 bench/otlp_sink.py 18090 "$WORK/sink.bytes" >"$WORK/sink.log" 2>&1 &
SINK=$!
PIDS+=("$SINK")
taskset -cp 1 "$SINK" >/dev/null
# Nine rounds, each "on" then "off" back to back: the machine's noise drifts
# over minutes, so the ratio within a round is steadier than either figure
# across rounds, and a round that noise spoiled (one of five, in earlier runs)
# does not move the median. Reported: the median of the nine ratios, and each
# side's median round.
serve_hello() { # PORT DATA-DIR EXTRA...
  local port=$1 data=$2; shift 2
  run_contestant "$(basename "$data")" "$port" env BERTH_LOG=info target/release/berth serve \
    --config "$WORK/bench.toml" --listen "127.0.0.1:$port" --admin-listen 127.0.0.1:0 \
    --data-dir "$data" "$@"
}
: >"$WORK/observed.rounds"; : >"$WORK/quiet.rounds"
for round in $(seq 1 9); do
  echo "berth serve, metrics and tracing on, then off (round $round of 9)..."
  DURATION=6 serve_hello 18085 "$WORK/observed$round" --otlp-endpoint http://127.0.0.1:18090 >>"$WORK/observed.rounds"
  DURATION=6 serve_hello 18086 "$WORK/quiet$round" --no-metrics >>"$WORK/quiet.rounds"
done
median_round() { sort -n "$1" | sed -n 5p; }
read -r O_RPS O_P50 O_P99 < <(median_round "$WORK/observed.rounds")
read -r Q_RPS Q_P50 Q_P99 < <(median_round "$WORK/quiet.rounds")
read -r R_OBSERVED COST PAIRS < <(python3 - "$WORK/observed.rounds" "$WORK/quiet.rounds" <<'PY'
import statistics, sys
on = [float(l.split()[0]) for l in open(sys.argv[1])]
off = [float(l.split()[0]) for l in open(sys.argv[2])]
ratios = [a / b for a, b in zip(on, off)]
r = statistics.median(ratios)
print(f"{r:.2f} {(1 - r) * 100:.1f} {','.join(f'{x:.2f}' for x in ratios)}")
PY
)
kill "$SINK" 2>/dev/null || true
SPAN_MIB=$(python3 -c "print(f'{int(open(\"$WORK/sink.bytes\").read()) / 1048576:.1f}')" 2>/dev/null || echo 0)
[ "$SPAN_MIB" != "0" ] && [ "$SPAN_MIB" != "0.0" ] || { echo "the OTLP sink received no spans"; exit 1; }

echo "metrics and tracing, counted in instructions (callgrind; takes minutes)..."
command -v valgrind >/dev/null || { SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo; $SUDO apt-get install -y -qq valgrind; }
CALLGRIND=$(python3 bench/telemetry_cost.py target/release/berth "$HELLO" "$WORK")
cst() { echo "$CALLGRIND" | tr ' ' '\n' | sed -n "s/^$1=//p"; }

echo "second start with a warm compile cache..."
START_MS=$(python3 - "$HELLO" "$WORK/berth-data" <<'PY'
import socket, subprocess, sys, time
hello, data = sys.argv[1], sys.argv[2]
samples = []
for _ in range(5):
    t0 = time.perf_counter()
    p = subprocess.Popen(["taskset", "-c", "0", "target/release/berth", "up", hello,
                          "--listen", "127.0.0.1:18084", "--data-dir", data],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = t0 + 10
    while time.perf_counter() < deadline:
        try:
            s = socket.create_connection(("127.0.0.1", 18084), timeout=1)
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            if s.recv(64).startswith(b"HTTP/1.1 200"):
                break
        except OSError:
            time.sleep(0.002)
    samples.append((time.perf_counter() - t0) * 1000)
    p.terminate(); p.wait()
samples.sort()
print(f"{samples[len(samples)//2]:.0f}")
PY
)

echo "deploys: cold, already compiled, 1,000 services..."
DEPLOY=$(python3 bench/deploy.py target/release/berth "$HELLO" "$WORK")
fig() { echo "$DEPLOY" | tr ' ' '\n' | sed -n "s/^$1=//p"; }

echo "compile fairness: hello beside twenty slow uploads of another tenant..."
FAIR=$(python3 bench/compile_fairness.py target/release/berth "$HELLO" components/target/python/python_hello.wasm "$WORK")
fair() { echo "$FAIR" | tr ' ' '\n' | sed -n "s/^$1=//p"; }

echo "key-value fairness: small writes beside another tenant's 1,000 KiB writes..."
KVFAIR=$(python3 bench/kv_fairness.py target/release/berth components/target/wasm32-wasip2/release/testing_capabilities.wasm "$WORK")
kvf() { echo "$KVFAIR" | tr ' ' '\n' | sed -n "s/^$1=//p"; }

echo "fleet: three hosts sharing Postgres..."
FLEET=$(python3 bench/fleet.py target/release/berth "$HELLO" "$WORK" "$DURATION" "$CONNECTIONS")
flt() { echo "$FLEET" | tr ' ' '\n' | sed -n "s/^$1=//p"; }

echo "events: publish to acknowledgement, SQLite and Postgres..."
EVENTS=$(python3 bench/events.py target/release/berth "$HELLO" "$WORK")
evt() { echo "$EVENTS" | tr ' ' '\n' | sed -n "s/^$1=//p"; }

echo "in-process instantiate-and-handle, and handle in a kept instance..."
INVOKES=$(taskset -c 0 cargo bench -q -p berth-runtime --bench invoke -- "$PWD/$HELLO" 20000 2>/dev/null)
INVOKE=$(echo "$INVOKES" | grep instantiate-and-handle)
KEPT=$(echo "$INVOKES" | grep "kept instance")

echo "WASI 0.2 and 0.3, fresh and reused instances, beside wasmtime serve..."
WORLDS=$(python3 bench/worlds.py target/release/berth "$WASMTIME" components/target/wasm32-wasip2/release "$WORK" "$DURATION" "$CONNECTIONS")

echo "capabilities: service-call hop, key-value round trips..."
PROBE=components/target/wasm32-wasip2/release/testing_capabilities.wasm
CAPS=$(taskset -c 0 cargo bench -q -p berth-runtime --bench capabilities -- "$PWD/$PROBE" 5000 2>/dev/null)
cap() { echo "$CAPS" | grep "$1"; }

echo "service-call hop timeline (the hop-trace feature's marks)..."
# The named steps only: the guest/host crossings (`h>`/`h<`, hundreds per
# request) are in bench/hop_trace.sh's own output.
HOPS=$(./bench/hop_trace.sh 2000 2>/dev/null | grep -Ev ' h[<>] ')

ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
R_WASMTIME=$(ratio "$B_RPS" "$W_RPS")
R_NATIVE=$(ratio "$B_RPS" "$N_RPS")
CPU=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | xargs)

cat >"$OUT" <<MD
# Benchmarks

Measured by \`make bench\` (\`bench/run.sh\`) on $(date -u +%Y-%m-%d), $CPU, $CPUS CPUs.
Each server is pinned to CPU 0 and \`wrk\` to CPU 1 (\`wrk -t1 -c$CONNECTIONS -d${DURATION}s\`,
after a 2 s warm-up), all on loopback, with \`RUST_BACKTRACE\` unset for every contestant.
All three serve the same answer; Berth and \`wasmtime serve -Scli\` (48.0.8) run the same
\`components/hello\` component, a fresh instance per request, both with the pooling allocator.

| server | requests/s | p50 | p99 |
|---|---:|---:|---:|
| native hyper (ceiling) | $N_RPS | ${N_P50} ms | ${N_P99} ms |
| \`wasmtime serve\` 48.0.8 | $W_RPS | ${W_P50} ms | ${W_P99} ms |
| Berth (\`berth up\`) | $B_RPS | ${B_P50} ms | ${B_P99} ms |

- Berth / \`wasmtime serve\`: **${R_WASMTIME}×** throughput
- Berth / native hyper: **${R_NATIVE}×** throughput
- $INVOKE (in process, no network: \`cargo bench -p berth-runtime --bench invoke\`)
- $KEPT (the same, for a service whose policy reuses instances)
- Second start with a warm compile cache, process spawn to first 200 response: **${START_MS} ms** (median of 5)

## WASI 0.3 and instance reuse

Measured by \`bench/worlds.py\`: \`components/hello\` and a guest doing real work
(\`components/json-api\` parsing a 4 KiB JSON order of 64 items and answering its computed total,
\`POST /quotes\` from a wrk script), each built for WASI 0.2 and for WASI 0.3 from the same source
(berth-sdk's \`p3\` feature), each under \`wasmtime serve -Scli\` in its modes and under
\`berth up\` with a fresh instance per request, with \`--max-instance-reuse 128\`, and, for 0.3,
with \`--max-instance-concurrency 16\` too (one instance serving up to 16 requests at once, as
\`wasmtime serve\`'s 0.3 default does; docs/security.md says what that shares); same pinning
and load as above.

$WORLDS

## What metrics and tracing cost

The same \`hello\` under \`berth serve\` (one service from a config file at \`/\`), same pinning and
load, nine rounds of 6 s, each "on" then "off" back to back; the table shows each side's median
round, and the ratio is the median of the nine rounds' ratios. "On" is the
default (Prometheus metrics) plus \`--otlp-endpoint\`, exporting every request's span to a sink
on CPU 1; "off" is \`--no-metrics\` without an OTLP endpoint. Both log at \`info\` (the request
span that tags log lines with tenant, service and request id) and keep the usage stats that
\`berth stats\` and the dashboard read.

| berth serve | requests/s | p50 | p99 |
|---|---:|---:|---:|
| metrics and tracing on, spans exported | $O_RPS | ${O_P50} ms | ${O_P99} ms |
| metrics and tracing off | $Q_RPS | ${Q_P50} ms | ${Q_P99} ms |

- on / off: **${R_OBSERVED}×** throughput (${COST}% lower; the rounds' ratios: ${PAIRS}); the sink
  received ${SPAN_MIB} MiB of spans over the "on" rounds

Counted instead of timed (\`bench/telemetry_cost.py\`): the same two configurations under
valgrind's callgrind, which counts every instruction the process runs whatever else the
machine does; per request is the difference between runs of 200 and 1,200
sequential requests, divided by 1,000. Under valgrind the host cannot reserve the pooling
allocator's address space and allocates instances on demand, so the baseline is that path's.

- instructions per request: $(cst off_instr) off, $(cst on_instr) on: **$(cst instr_ratio)×**
  ($(cst instr_cost_pct)% more)

## Deploys

Measured by \`bench/deploy.py\` against \`berth serve\` (release build, pinned to CPU 0; the
client on CPU 1), over the admin API on loopback. "Upload to first request served" is
\`PUT .../versions/LABEL\` + \`PUT .../services/web\` + polling the data plane until the
new label answers.

| figure | value |
|---|---:|
| deploy of \`hello\` with a new digest (compile included), upload to first request served | $(fig cold_ms) ms (median of 7) |
| re-deploy of an already-compiled digest under a new label | $(fig warm_ms) ms (median of 20) |
| 1,000 services deployed one after another (upload + activate each) | $(fig deploy_1000_s) s |
| idle host RSS before / after the 1,000 services | $(fig rss_before_mib) MiB / $(fig rss_after_mib) MiB |
| idle memory per deployed service | **$(fig per_service_kib) KiB** |

## Compile fairness

Measured by \`bench/compile_fairness.py\`: tenant \`bulk\` uploads twenty distinct copies of
componentize-py's 18 MB \`python_hello\` at once (retrying each 429 after its Retry-After),
and a second later tenant \`small\` deploys \`hello\` (upload, activate, first request
served). Compile slots go to tenants in turn (\`control/fair.rs\`).

| figure | value |
|---|---:|
| one \`python_hello\` deploy alone (its Winch compile) | $(fair one_slow_compile_ms) ms |
| \`hello\` deploy alone | $(fair hello_alone_ms) ms |
| one \`python_hello\` compile under that load (median gap between two bulk uploads finishing) | $(fair slow_compile_loaded_ms) ms |
| \`hello\` deploy beside the twenty uploads | **$(fair hello_beside_20_ms) ms** ($(fair in_loaded_compiles) compiles of that load) |
| 429s the bulk tenant retried | $(fair bulk_429_retries) |

## Key-value fairness

Measured by \`bench/kv_fairness.py\`: tenant \`control\` writes a small value per request, one
request at a time, in four quiet windows and four windows beside tenant \`bulk\`, whose four
clients write 1,000 KiB values as fast as the host takes them (each tenant's writes are paced,
\`--kv-write-rate\` and \`--kv-write-burst\`, and each has its own SQLite file). Host on CPU 0,
clients on CPU 1.

| figure | quiet | beside the bulk writer |
|---|---:|---:|
| control write p50 | $(kvf quiet_p50_ms) ms | $(kvf loaded_p50_ms) ms |
| control write p99 | $(kvf quiet_p99_ms) ms | **$(kvf loaded_p99_ms) ms** ($(kvf p99_ratio)×) |
| bulk tenant's writes | | $(kvf bulk_writes) ($(kvf bulk_mib_per_s) MiB/s) |

## Fleet

Measured by \`bench/fleet.py\`: three \`berth serve --store postgres://...\` hosts sharing one
PostgreSQL server (Debian's, \`fsync=off\`), all on loopback, the hosts pinned to CPU 0 and
the client and \`wrk\` to CPU 1.

| figure | value |
|---|---:|
| convergence: activation sent to host A until hosts B and C both serve the new version | **$(flt converge_ms) ms** median of 10 (slowest $(flt converge_max_ms) ms) |
| \`hello\` through one host | $(flt one_rps) requests/s |
| \`hello\` through three hosts (one \`wrk\` each, the $CONNECTIONS connections split) | $(flt three_rps) requests/s |
| three hosts / one host | $(flt fleet_ratio)× |

On this 2-core machine the three hosts share the one core the single host had, so the
throughput ratio shows what running as a fleet costs (three sync loops, three \`LISTEN\`
connections, three copies of each compiled component, more context switches), not what more
machines would gain: each host's capacity is that of a single host.

## Events

Measured by \`bench/events.py\`: one \`berth serve\` host (CPU 0) with \`hello\` subscribed to a topic
(it answers 200 to any event); $(evt events) events published through the admin API by 8 threads
(CPU 1), counted from the first publish until the topic's backlog is empty; then 200 events one
at a time, each from its publish until the topic reports it acknowledged (polled every
millisecond). Each publish and each acknowledgement is one committed transaction.

| figure | SQLite (data directory) | Postgres (\`fsync\` on) |
|---|---:|---:|
| events published per second | $(evt sqlite_publish_per_s) | $(evt pg_publish_per_s) |
| events delivered per second, publish to 2xx | **$(evt sqlite_delivered_per_s)** | **$(evt pg_delivered_per_s)** |
| publish to acknowledgement p50 | $(evt sqlite_p50_ms) ms | $(evt pg_p50_ms) ms |
| publish to acknowledgement p99 | $(evt sqlite_p99_ms) ms | $(evt pg_p99_ms) ms |

Beside them, the same \`hello\` answers $B_RPS plain requests per second (\`wrk\`, above): an event
costs two durable transactions and a claim on top of a request.

## Capabilities

Measured in process by \`cargo bench -p berth-runtime --bench capabilities\` (pinned to CPU 0) on the
\`components/testing/capabilities\` probe, loaded as two services \`a\` and \`b\`: a hop is the
median of \`a\` calling \`b\`'s \`/whoami\` with berth-sdk's \`call\` (Berth's \`berth:service/call\`)
minus the median of \`a\`'s own \`/whoami\` (the callee's fresh instance included), and the same less
the callee's own request (\`/whoami\` alone once more): what the call itself costs. The same call as
a plain wasi:http request to \`http://b.internal/whoami\`, as a service built without berth-sdk makes
it, is measured beside it. Each request carries the headers the front door sets (request id, route,
path info, \`traceparent\`), and the paths take turns request by request, so each runs after other
work as on a host serving many. The hop measured with each path in a block of its own (the way runs
before 2026-11-28 measured it, where \`/whoami\` repeated alone keeps the caches it warmed) follows.
A key-value round trip is the median of a
request making 100 \`get\`s (or \`set\`s) on SQLite minus one making none, over 100.

- $(cap "service-call hop:")
- $(cap "service-call hop without")
- $(cap "service-call hop over wasi:http:")
- $(cap "over wasi:http without")
- $(cap "measured in a block")
- $(cap "key-value get")
- $(cap "key-value set")

Machines here are noisy: compare ratios from one run, not absolute figures across runs.

## Service-call hop timeline

\`bench/hop_trace.sh 2000\`: each named mark's median offset from the start of the request, in
microseconds (depth 1 is the callee; the script itself also prints every guest/host crossing,
left out here). The marks cost time of their own: read them for where the time goes, not for
the total.

\`\`\`
$HOPS
\`\`\`
MD
cat "$OUT"
