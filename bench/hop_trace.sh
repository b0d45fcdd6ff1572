#!/bin/sh
# Where one service-call hop's time goes: a timeline of one `/call/b` (through
# berth:service/call), of `/call-http/b` (the same over wasi:http) and of
# `/whoami` alone, each mark's median offset in microseconds from the start
# of the request. Marks: admission, store built, instantiated, every
# guest-to-host call (`h>`) and return (`h<`), the call reaching the host
# (`call.start`, or `send_request` over wasi:http), the callee's instance,
# the guest returning, the store dropped, the response head.
#
# The marks are trace-level `tracing` events of runtime/src/hop_trace.rs, built
# only with the `hop-trace` cargo feature (which also turns on wasmtime's call
# hook), so no shipped build carries them. They cost time of their own, so
# the offsets run a little slower than `cargo bench --bench capabilities`:
# read them for where the time goes, not for the total.
#
# Usage: bench/hop_trace.sh [ITERATIONS]   (after `make components`)
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WASM=$ROOT/components/target/wasm32-wasip2/release/testing_capabilities.wasm
[ -f "$WASM" ] || { echo "no $WASM: run make components first" >&2; exit 1; }
cd "$ROOT"
taskset -c 0 cargo bench -q -p berth-runtime --features hop-trace --bench capabilities -- \
	"$WASM" "${1:-3000}" trace
