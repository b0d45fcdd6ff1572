#!/usr/bin/env bash
# Where `berth serve` spends its CPU with metrics on and every span exported
# over OTLP, under the same load as `make bench`'s telemetry rounds: the
# server on CPU 0, wrk and a span sink on CPU 1. Not part of `make bench`.
#
#   RUSTFLAGS="-C force-frame-pointers=yes" CARGO_TARGET_DIR=/tmp/fp-target \
#     cargo build --release -p berth --bin berth
#   bench/telemetry_profile.sh /tmp/fp-target/release/berth
#   perf report -i /tmp/berth-telemetry.perf --children --sort symbol -g none
#
# Frame pointers let `perf` unwind through the host and wasmtime's JIT code.
set -euo pipefail
cd "$(dirname "$0")/.."
BERTH=${1:?usage: bench/telemetry_profile.sh BERTH-BINARY [PERF-OUTPUT]}
OUT=${2:-/tmp/berth-telemetry.perf}
HELLO=$PWD/components/target/wasm32-wasip2/release/hello.wasm
[ -f "$HELLO" ] || { echo "missing $HELLO: run 'make components'"; exit 1; }
command -v perf >/dev/null || { echo "needs perf (Debian's linux-perf)"; exit 1; }
unset RUST_BACKTRACE
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
cat >"$WORK/bench.toml" <<TOML
[[service]]
name = "hello"
component = "$HELLO"
route = "/"
TOML
python3 bench/otlp_sink.py 18090 &
PIDS+=("$!")
taskset -cp 1 "$!" >/dev/null
BERTH_LOG=info taskset -c 0 "$BERTH" serve --config "$WORK/bench.toml" \
  --listen 127.0.0.1:18085 --admin-listen 127.0.0.1:0 --data-dir "$WORK/data" \
  --otlp-endpoint http://127.0.0.1:18090 >"$WORK/berth.log" 2>&1 &
SERVER=$!
PIDS+=("$SERVER")
for _ in $(seq 1 200); do curl -sf -o /dev/null http://127.0.0.1:18085/ && break; sleep 0.05; done
taskset -c 1 wrk -t1 -c32 -d2s http://127.0.0.1:18085/ >/dev/null
perf record -F 2000 -g -p "$SERVER" -o "$OUT" -- sleep 8 >/dev/null 2>&1 &
RECORD=$!
taskset -c 1 wrk -t1 -c32 -d8s http://127.0.0.1:18085/ | grep Requests/sec
wait "$RECORD"
echo "profile in $OUT"
