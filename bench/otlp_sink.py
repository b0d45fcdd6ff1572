"""A stand-in OTLP/HTTP collector for the benchmarks: it takes every export
and answers 200, keeping only a count of the bytes received.

    python3 bench/otlp_sink.py PORT [BYTES-FILE]

writes the running byte count to BYTES-FILE after each export; the
benchmark scripts in this directory also import `Sink` from it."""

import http.server
import sys


class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    received = 0
    count_file = None

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        Sink.received += len(body)
        if Sink.count_file:
            with open(Sink.count_file, "w") as out:
                out.write(str(Sink.received))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    Sink.count_file = sys.argv[2] if len(sys.argv) > 2 else None
    http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
