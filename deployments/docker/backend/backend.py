"""A tiny HTTP backend for the compose stack (runs in python:3.13-alpine; stdlib only).

Answers every path with JSON {"backend", "method", "path"} and the header X-Backend, so
`curl localhost:8081/api/x` shows which backend (and how often the canary) served it.
GET /health answers 200 {"status": "ok"} for gogate's HTTP health checks and the compose
healthcheck. Environment: BACKEND_NAME (default "backend"), PORT (default 8000).
"""
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = os.environ.get("BACKEND_NAME", "backend")
PORT = int(os.environ.get("PORT", "8000"))
HOST = os.environ.get("HOST", "0.0.0.0")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so gogate's upstream pool reuses connections

    def answer(self, with_body):
        if self.path == "/health":
            doc = {"status": "ok"}
        else:
            doc = {"backend": NAME, "method": self.command, "path": self.path}
        body = json.dumps(doc).encode()
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)  # drain a request body before answering
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Backend", NAME)
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def do_GET(self):
        self.answer(True)

    def do_POST(self):
        self.answer(True)

    def do_PUT(self):
        self.answer(True)

    def do_DELETE(self):
        self.answer(True)

    def do_HEAD(self):
        self.answer(False)

    def log_message(self, format, *args):
        pass  # gogate's access log already has one line per request


if __name__ == "__main__":
    server = ThreadingHTTPServer((HOST, PORT), Handler)
    server.daemon_threads = True
    print(f"{NAME} listening on {HOST}:{PORT}", flush=True)
    server.serve_forever()
