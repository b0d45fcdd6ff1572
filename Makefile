# Berth: build, run, test, benchmark.
#
#   make run         build everything and serve the example services
#   make test        everything CI checks: lint, unit, doc and end-to-end tests
#   make bench       throughput against `wasmtime serve` and native hyper

CARGO        ?= cargo
WASM_TARGET  := wasm32-wasip2
COMPONENTS   := components/target/$(WASM_TARGET)/release
TOOLS        := $(CURDIR)/.tools
WASMTIME_VERSION := 48.0.8
WASMTIME     := $(TOOLS)/bin/wasmtime
COMPONENTIZE_PY_VERSION := 0.25.1
COMPONENTIZE_PY := $(TOOLS)/py/bin/componentize-py
PYTHON_OUT   := components/target/python

.PHONY: postgres nats node all setup browser components python-components build run test fmt-check module-cycles lint unit e2e bench clean

all: build components

# The toolchain file names the target too; this covers machines whose rustup
# does not install targets from it.
setup:
	rustup target add $(WASM_TARGET)

# The example services once more for WASI 0.3, from the same source
# (berth-sdk's `p3` feature), into target/p3.
P3_EXAMPLES = -p hello -p json-api -p shop-cart -p shop-catalog -p shop-gateway -p shop-orders

components: setup python-components
	cd components && $(CARGO) build --release --target $(WASM_TARGET) --target-dir target
	cd components && $(CARGO) build --release --target $(WASM_TARGET) --target-dir target/p3 \
		$(P3_EXAMPLES) --no-default-features --features p3

# A guest from another toolchain, to prove Berth runs what it did not build.
python-components: $(COMPONENTIZE_PY)
	mkdir -p $(PYTHON_OUT)
	cd components/python/hello && $(COMPONENTIZE_PY) -q -d $(CURDIR)/wit \
		-w wasi:http/proxy@0.2.12 componentize app -o $(CURDIR)/$(PYTHON_OUT)/python_hello.wasm
	cd components/python/kv && $(COMPONENTIZE_PY) -q -d $(CURDIR)/wit \
		-w berth:service/service componentize app -o $(CURDIR)/$(PYTHON_OUT)/python_kv.wasm

$(COMPONENTIZE_PY):
	python3 -m venv $(TOOLS)/py
	$(TOOLS)/py/bin/pip install --quiet componentize-py==$(COMPONENTIZE_PY_VERSION)

build:
	$(CARGO) build --release -p berth

run: build components
	./target/release/berth serve --config berth.toml

fmt-check:
	$(CARGO) fmt --all -- --check
	cd components && $(CARGO) fmt --all -- --check

# Dependencies run one way, between crates (each depends only on crates
# below it) and between each crate's modules: a new upward edge or import
# cycle fails.
module-cycles:
	python3 tools/crate_layers.py
	python3 tools/module_cycles.py .

lint: fmt-check module-cycles
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# `make test` lints while it builds: clippy-driver compiles the workspace's
# own crates (as `cargo clippy` does, through RUSTC_WORKSPACE_WRAPPER), so a
# clippy warning fails the build and the dependencies are compiled once, not
# once to check and again to build. The end-to-end tests start the real
# `berth` binary, so everything is built before any test runs. Tests run one
# at a time: several assert deadlines to within 100 ms, which a 2-core machine
# busy with other hosts cannot promise.
# A one-off build gains nothing from incremental state but its disk space.
LINTING := RUSTC_WORKSPACE_WRAPPER=clippy-driver \
	CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__ \
	CARGO_INCREMENTAL=0

# The dashboard test drives a real headless browser: Debian's chromium.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends chromium; }

# The fleet tests start their own PostgreSQL servers: Debian's postgresql.
postgres:
	@ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || { \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends postgresql; }

# The NATS bridge test starts its own server: Debian's nats-server.
nats:
	@command -v nats-server >/dev/null 2>&1 || test -x /usr/sbin/nats-server || { \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends nats-server; }

# The JavaScript template's test builds with componentize-js: Node.js and
# npm (the test's `npm install` fetches componentize-js from npm).
node:
	@command -v npm >/dev/null 2>&1 || { \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends nodejs npm; }

test: components browser postgres nats node fmt-check module-cycles
	$(LINTING) $(CARGO) build --workspace --all-targets
	$(LINTING) $(CARGO) test --workspace -- --test-threads=1

$(WASMTIME):
	$(CARGO) install --locked --root $(TOOLS) wasmtime-cli@$(WASMTIME_VERSION)

bench: components postgres $(WASMTIME)
	./bench/run.sh

clean:
	$(CARGO) clean
	cd components && $(CARGO) clean
