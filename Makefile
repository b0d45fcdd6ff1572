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

.PHONY: all setup components python-components build run test lint unit e2e bench clean

all: build components

# The toolchain file names the target too; this covers machines whose rustup
# does not install targets from it.
setup:
	rustup target add $(WASM_TARGET)

components: setup python-components
	cd components && $(CARGO) build --release --target $(WASM_TARGET) --target-dir target

# A guest from another toolchain, to prove Berth runs what it did not build.
python-components: $(COMPONENTIZE_PY)
	mkdir -p $(PYTHON_OUT)
	cd components/python/hello && $(COMPONENTIZE_PY) -q -d $(CURDIR)/wit \
		-w wasi:http/proxy@0.2.12 componentize app -o $(CURDIR)/$(PYTHON_OUT)/python_hello.wasm

$(COMPONENTIZE_PY):
	python3 -m venv $(TOOLS)/py
	$(TOOLS)/py/bin/pip install --quiet componentize-py==$(COMPONENTIZE_PY_VERSION)

build:
	$(CARGO) build --release -p berth

run: build components
	./target/release/berth serve --config berth.toml

lint:
	$(CARGO) fmt --all -- --check
	cd components && $(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The end-to-end tests start the real `berth` binary, so it is built first,
# for the whole workspace so that both commands share one set of features and
# nothing is compiled twice. Tests run one at a time: several assert deadlines
# to within 100 ms, which a 2-core machine busy with other hosts cannot promise.
test: components lint
	$(CARGO) build --workspace
	$(CARGO) test --workspace -- --test-threads=1

$(WASMTIME):
	$(CARGO) install --locked --root $(TOOLS) wasmtime-cli@$(WASMTIME_VERSION)

bench: components $(WASMTIME)
	./bench/run.sh

clean:
	$(CARGO) clean
	cd components && $(CARGO) clean
