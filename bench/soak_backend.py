#!/usr/bin/env python3
"""Small HTTP/1.1 backend for bench/soak.sh (loopback only).

    soak_backend.py --name b1 [--port 0] [--port-file FILE]

Keep-alive HTTP/1.1 (`Connection: close` honoured), one thread per connection. GET, HEAD,
POST, PUT and DELETE on any path answer 200 with a small JSON body and a Content-Length;
request bodies (Content-Length or chunked) are read completely first. The `X-Soak-Backend`
response header names the backend. `/health` answers 200 `ok` (for gogate's HTTP probes).
Port 0 binds an ephemeral port; the bound port is written to --port-file (atomically) once
the socket listens, so the harness can wait for it. SIGTERM stops the process at once.
"""

import argparse
import http.server
import json
import os
import signal
import socketserver
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"   # keep-alive by default
    server_version = "soak-backend"
    sys_version = ""
    disable_nagle_algorithm = True  # header and body are two writes: no Nagle delay
    timeout = 120                   # idle keep-alive connections end after this

    def log_message(self, fmt, *args):  # no per-request log lines
        pass

    def _read_body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            n = 0
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    break
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                n += len(self.rfile.read(size))
                self.rfile.readline(8)
            return n
        length = int(self.headers.get("Content-Length") or 0)
        n = 0
        while n < length:
            chunk = self.rfile.read(min(65536, length - n))
            if not chunk:
                break
            n += len(chunk)
        return n

    def _answer(self, with_body=True):
        got = self._read_body()
        if self.path == "/health":
            body = b"ok\n"
            ctype = "text/plain"
        else:
            body = json.dumps({"backend": self.server.name, "method": self.command,
                               "path": self.path, "body_bytes": got}).encode() + b"\n"
            ctype = "application/json"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Soak-Backend", self.server.name)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def do_GET(self):
        self._answer()

    def do_POST(self):
        self._answer()

    def do_PUT(self):
        self._answer()

    def do_DELETE(self):
        self._answer()

    def do_HEAD(self):
        self._answer(with_body=False)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True      # the flapping backend re-binds its port at once
    request_queue_size = 512


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    a = ap.parse_args()
    if a.host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("soak_backend.py: loopback only")
    srv = Server((a.host, a.port), Handler)
    srv.name = a.name
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % srv.server_address[1])
        os.replace(tmp, a.port_file)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    try:
        srv.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
