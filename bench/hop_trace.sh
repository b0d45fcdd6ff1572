#!/bin/sh
# Where one service-call hop's time goes: a timeline of one `/call/b` (through
# berth:service/call), of `/call-http/b` (the same over wasi:http) and of
# `/whoami` alone, each event's median offset in microseconds from the start
# of the request. Events: admission, store built, instantiated, every
# guest-to-host call (`h>`) and return (`h<`), the call reaching the host
# (`call.start`, or `send_request` over wasi:http), the callee's instance,
# the guest returning, the store dropped, the response head.
#
# The marks cost time of their own, so the offsets run a little slower than
# `cargo bench --bench capabilities`; read them for where the time goes, not
# for the total. They live in bench/hop_trace.patch, applied in a throw-away
# worktree so that no build of Berth carries them.
#
# Usage: bench/hop_trace.sh [ITERATIONS]   (after `make components`)
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WASM=$ROOT/components/target/wasm32-wasip2/release/testing_capabilities.wasm
[ -f "$WASM" ] || { echo "no $WASM: run make components first" >&2; exit 1; }
TREE=$ROOT/target/hop-trace-tree
# A worktree left by an interrupted run is cleared first.
git -C "$ROOT" worktree remove --force "$TREE" 2>/dev/null || rm -rf "$TREE"
git -C "$ROOT" worktree prune
git -C "$ROOT" worktree add --detach "$TREE" HEAD >/dev/null
trap 'git -C "$ROOT" worktree remove --force "$TREE"' EXIT
git -C "$TREE" apply "$ROOT/bench/hop_trace.patch"
# The worktree shares the project's target directory, so only Berth itself
# is rebuilt.
BIN=$(cd "$TREE" && CARGO_TARGET_DIR="$ROOT/target" cargo bench --no-run -p berth \
	--bench capabilities 2>&1 | sed -n 's/.*Executable .*(\(.*\))$/\1/p')
[ -n "$BIN" ] || { echo "the traced bench did not build" >&2; exit 1; }
case $BIN in /*) ;; *) BIN=$TREE/$BIN ;; esac
taskset -c 0 "$BIN" "$WASM" "${1:-3000}" trace
