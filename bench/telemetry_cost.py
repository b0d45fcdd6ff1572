#!/usr/bin/env python3
"""What metrics and span export cost per request, in instructions.

Throughput on a shared 2-core machine drifts by more than the effect, so
this counts instead: `berth serve` runs under valgrind's callgrind, which
counts every instruction the process executes, whatever else the machine is
doing. Each configuration is run twice, with a small and a large number of
sequential requests; the difference, divided by the difference in requests,
is the cost of one request, with start-up and shutdown cancelled out.

- on: Prometheus metrics (the default) and every request's span exported
  over OTLP to a sink in this process;
- off: `--no-metrics` and no OTLP endpoint.

Both log at info, as a host does by default.

Usage: bench/telemetry_cost.py BERTH HELLO_WASM WORKDIR
Prints one line of key=value figures.
"""
import http.server, os, re, socket, subprocess, sys, threading, time
import urllib.request

from otlp_sink import Sink

berth, hello, work = sys.argv[1:4]
hello = os.path.abspath(hello)
FEW, MANY = 200, 1200

sink = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
threading.Thread(target=sink.serve_forever, daemon=True).start()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CONFIG = os.path.join(work, "cost.toml")
with open(CONFIG, "w") as f:
    f.write(f'[[service]]\nname = "hello"\ncomponent = "{hello}"\nroute = "/"\n')
DATA = os.path.join(work, "cost-data")


def serve(mode, port, wrapper):
    extra = (["--otlp-endpoint", f"http://127.0.0.1:{sink.server_address[1]}"]
             if mode == "on" else ["--no-metrics"])
    return subprocess.Popen(
        wrapper + [berth, "serve", "--config", CONFIG, "--listen", f"127.0.0.1:{port}",
                   "--admin-listen", "127.0.0.1:0", "--data-dir", DATA] + extra,
        env={**os.environ, "BERTH_LOG": "info", "BERTH_OPERATOR_TOKEN": "cost"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def instructions(mode, requests):
    port = free_port()
    out = os.path.join(work, f"callgrind.{mode}.{requests}")
    host = serve(mode, port, ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"])
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 600
    while True:
        try:
            urllib.request.urlopen(url, timeout=30).read()
            break
        except OSError:
            if time.time() > deadline or host.poll() is not None:
                sys.exit(f"berth under valgrind did not start: {host.stderr.read()[-2000:]}")
            time.sleep(0.5)
    for _ in range(requests - 1):
        with urllib.request.urlopen(url, timeout=30) as r:
            if r.status != 200:
                sys.exit(f"status {r.status}")
    # Let the last spans go out in a batch, as they would under load.
    time.sleep(1.5)
    host.terminate()
    stderr = host.communicate(timeout=300)[1]
    match = re.search(r"Collected : (\d+)", stderr)
    if not match:
        sys.exit(f"no instruction count from callgrind:\n{stderr[-2000:]}")
    return int(match.group(1))


# Compile once under valgrind, so that every counted run loads from the
# compile cache. It must be under valgrind: there the host cannot reserve the
# pooling allocator's address space, which makes another engine and another
# cache key than a native run's. (Warming natively left the first counted run
# compiling, Cranelift's billions of instructions and all, which once made
# the "few requests" run cost more than the "many" one.)
COMPILED = os.path.join(DATA, "compiled")


def cached():
    return set(os.listdir(COMPILED)) if os.path.isdir(COMPILED) else set()


before = cached()
warm_port = free_port()
warm = serve("off", warm_port, ["valgrind", "--tool=none"])
deadline = time.time() + 900
while not (cached() - before):
    if time.time() > deadline or warm.poll() is not None:
        sys.exit(f"berth under valgrind never cached its compile: {warm.stderr.read()[-2000:]}")
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{warm_port}/", timeout=30).read()
    except OSError:
        pass
    time.sleep(1)
warm.terminate()
warm.communicate(timeout=300)

per_request = {}
for mode in ("off", "on"):
    few, many = instructions(mode, FEW), instructions(mode, MANY)
    per_request[mode] = (many - few) / (MANY - FEW)
ratio = per_request["on"] / per_request["off"]
print(f"off_instr={per_request['off']:.0f} on_instr={per_request['on']:.0f} "
      f"instr_ratio={ratio:.3f} instr_cost_pct={(ratio - 1) * 100:.1f}")
