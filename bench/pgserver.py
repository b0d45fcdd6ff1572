"""What the benchmarks share: a free loopback port, and a throwaway
PostgreSQL server of Debian's on one."""
import collections, glob, os, re, shutil, socket, subprocess, sys, tempfile


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_postgres(fsync=True, log_statements=False):
    """Starts a server in a directory of its own under /tmp (its user must
    reach it). Returns its URL and a function that stops it; with
    `log_statements`, that function first prints the statements that took
    the most time in all, from the server's log."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    if not bins:
        sys.exit("PostgreSQL is not installed: `make test` or `apt-get install postgresql`")
    bin_dir, root = bins[-1], tempfile.mkdtemp(prefix="berth-bench-pg-")
    prefix = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    run = lambda *args: subprocess.run(prefix + list(args), check=True, cwd=root,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    data, log = os.path.join(root, "data"), os.path.join(root, "log")
    run(f"{bin_dir}/initdb", "-D", data, "-U", "postgres", "--auth=trust")
    options = f"-h 127.0.0.1 -p {port} -k {root}"
    if not fsync:
        options += " -c fsync=off"
    if log_statements:
        options += " -c log_min_duration_statement=0"
    run(f"{bin_dir}/pg_ctl", "-D", data, "-l", log, "-w", "-o", options, "start")

    def stop():
        run(f"{bin_dir}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
        if log_statements:
            print_slowest(log)
        shutil.rmtree(root, ignore_errors=True)
    return f"postgres://postgres@127.0.0.1:{port}/postgres", stop


def print_slowest(log, top=12):
    """Each statement's total and count, the costliest first, on stderr."""
    total, count = collections.Counter(), collections.Counter()
    pattern = re.compile(r"duration: ([0-9.]+) ms  (?:statement|execute [^:]*): (.{0,70})")
    with open(log, errors="replace") as lines:
        for line in lines:
            m = pattern.search(line)
            if m:
                total[m.group(2)] += float(m.group(1))
                count[m.group(2)] += 1
    for statement, ms in total.most_common(top):
        print(f"{ms:10.0f} ms {count[statement]:7d}x  {statement}", file=sys.stderr)
