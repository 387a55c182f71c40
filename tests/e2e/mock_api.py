#!/usr/bin/env python3
"""A mock of mgrok's admin API and inspector API, for working on the pages.

A DEVELOPMENT AID ONLY: it lets one work on src/web/assets/ (the dashboard
and the inspector) without a running server or agent.  It follows
docs/api.md loosely and is NOT a substitute for the real server in tests:
no e2e test may use it (pytest does not collect it: its name does not start
with test_).

    python3 tests/e2e/mock_api.py --set dashboard --port 8081
    python3 tests/e2e/mock_api.py --set inspect --port 4040 [--token T]

then open http://127.0.0.1:PORT/.  It serves the asset set from the source
tree with the real listener's Content-Security-Policy, the JSON API with
made-up data, and the event stream (SSE).  Control endpoints change the state
and emit the matching events:

    POST /_mock/tunnel_up    {"name": "api"}          (both sets)
    POST /_mock/tunnel_down  {"name": "api"}
    POST /_mock/request      {"tunnel": "web", "method": "GET", "uri": "/x"}  (inspect)
    POST /_mock/connection   {"tunnel": "db"}          (inspect)
    GET  /_mock/log          the API calls the pages made: [[method, path, body], ...]

Standard library only; binds to 127.0.0.1.
"""

import argparse
import base64
import json
import os
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'")
CTYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}


def now_ms():
    return int(time.time() * 1000)


def b64(b):
    return base64.b64encode(b).decode()


class State:
    def __init__(self, which):
        self.which = which
        self.lock = threading.Condition()
        self.events = []
        self.seq = 0
        self.log = []
        self.started = now_ms() - 3723_000
        self.next_id = 10
        t0 = now_ms()
        self.sessions = [
            {"id": 7, "client_id": "5f0c" * 8, "token": "alice",
             "remote_addr": "127.0.0.1:50412", "version": "mgrok/0.6.0",
             "connected_ms": t0 - 600_000, "state": "forwarding", "tunnels": [3, 4],
             "bytes_in": 1200, "bytes_out": 56000, "streams": 12},
            {"id": 8, "client_id": "a1b2" * 8, "token": "cert:CN=bob",
             "remote_addr": "[::1]:40022", "version": "mgrok/0.6.0",
             "connected_ms": t0 - 60_000, "state": "forwarding", "tunnels": [5],
             "bytes_in": 10, "bytes_out": 20, "streams": 1}]
        self.tunnels = [
            {"id": 3, "name": "web", "type": "http", "public": "http://web.example.com:8080",
             "session": 7, "client_id": "5f0c" * 8, "token": "alice", "state": "up",
             "created_ms": t0 - 590_000, "bytes_in": 1200, "bytes_out": 56000,
             "connections": 4, "connections_active": 1,
             "http": {"requests": 4, "by_class": {"1xx": 0, "2xx": 3, "3xx": 0, "4xx": 1, "5xx": 0},
                      "latency_avg_ms": 1.2}},
            {"id": 4, "name": "db", "type": "tcp", "public": "tcp://tunnel.example.com:5432",
             "session": 7, "client_id": "5f0c" * 8, "token": "alice", "state": "up",
             "created_ms": t0 - 590_000, "bytes_in": 4_500_000, "bytes_out": 12_000_000,
             "connections": 2, "connections_active": 1},
            {"id": 5, "name": "dns", "type": "udp", "public": "udp://tunnel.example.com:5353",
             "session": None, "client_id": "a1b2" * 8, "token": "cert:CN=bob", "state": "grace",
             "created_ms": t0 - 50_000, "bytes_in": 300, "bytes_out": 900,
             "connections": 0, "connections_active": 0,
             "udp": {"flows": 3, "flows_active": 0, "datagrams_in": 6, "datagrams_out": 6, "drops": 0}}]
        self.traffic = {t["id"]: ([0] * 150, [0] * 150) for t in self.tunnels}
        self.last_tick = time.time()
        self.agent_tunnels = [
            {"name": "web", "type": "http", "public_url": "http://web.example.com:8080",
             "local": "127.0.0.1:3000", "status": "online", "bytes_in": 1200,
             "bytes_out": 56000, "connections": 4, "connections_active": 0, "requests": 3},
            {"name": "db", "type": "tcp", "public_url": "tcp://tunnel.example.com:5432",
             "local": "127.0.0.1:5432", "status": "online", "bytes_in": 10, "bytes_out": 20,
             "connections": 1, "connections_active": 1, "requests": 0},
            {"name": "admin", "type": "http", "public_url": "", "local": "127.0.0.1:9999",
             "status": "refused", "error": "name taken by another client", "bytes_in": 0,
             "bytes_out": 0, "connections": 0, "connections_active": 0, "requests": 0}]
        self.requests = []
        self.add_request("web", "POST", "/hook?x=1", body=b'{"hello": "world", "n": [1, 2, 3]}',
                         ctype="application/json", resp=b'{"ok":true}', status=200)
        self.add_request("web", "GET", "/logo.png", resp=bytes(range(256)) * 2, status=200,
                         rctype="image/png")
        self.add_request("web", "GET", "/missing", resp=b"not found\n", status=404,
                         rctype="text/plain")
        self.connections = [
            {"id": "c2", "tunnel": "db", "type": "tcp", "remote_addr": "203.0.113.9:50412",
             "start": t0 - 5000, "duration_ms": 5210.0, "bytes_in": 1200, "bytes_out": 56000,
             "close_reason": "closed", "sni": None, "active": False},
            {"id": "c1", "tunnel": "db", "type": "tcp", "remote_addr": "203.0.113.9:50400",
             "start": t0 - 9000, "duration_ms": 800.0, "bytes_in": 0, "bytes_out": 0,
             "close_reason": "reset", "sni": None, "active": False}]
        self.emit("session_connected", session=7, client_id="5f0c" * 8, token="alice",
                  remote_addr="127.0.0.1:50412", version="mgrok/0.6.0")
        for t in self.tunnels[:2]:
            self.emit("tunnel_up", tunnel=t["id"], name=t["name"], tunnel_type=t["type"],
                      public=t["public"], session=7)

    def add_request(self, tunnel, method, uri, body=b"", ctype=None, resp=b"ok", status=200,
                    rctype="text/plain", replay_of=None):
        self.next_id += 1
        rid = "r%d" % self.next_id
        hs = [["Host", "web.example.com"], ["User-Agent", "curl/8.5.0"],
              ["Authorization", "[redacted]"]]
        if ctype:
            hs.append(["Content-Type", ctype])
        if body:
            hs.append(["Content-Length", str(len(body))])
        e = {"id": rid, "tunnel": tunnel, "start": now_ms(), "duration_ms": random.uniform(0.5, 30),
             "remote_addr": "203.0.113.9:%d" % random.randint(1024, 65535), "replay_of": replay_of,
             "request": {"method": method, "uri": uri, "proto": "HTTP/1.1", "headers": hs,
                         "body": {"size": len(body), "captured": len(body), "truncated": False,
                                  "base64": b64(body)}},
             "response": {"status": status, "reason": {200: "OK", 404: "Not Found"}.get(status, ""),
                          "proto": "HTTP/1.1",
                          "headers": [["Content-Type", rctype], ["Content-Length", str(len(resp))]],
                          "body": {"size": len(resp), "captured": len(resp), "truncated": False,
                                   "base64": b64(resp)}},
             "error": None}
        self.requests.insert(0, e)
        return e

    def emit(self, typ, **fields):
        with self.lock:
            self.seq += 1
            ev = dict(fields)
            ev.update({"seq": self.seq, "time": now_ms(), "type": typ})
            self.events.append(ev)
            del self.events[:-1000]
            self.lock.notify_all()

    def tick(self):
        n = int((time.time() - self.last_tick) / 2)
        if n <= 0:
            return
        self.last_tick += 2 * n
        for t in self.tunnels:
            ins, outs = self.traffic.setdefault(t["id"], ([0] * 150, [0] * 150))
            for _ in range(min(n, 150)):
                base = {3: 40_000, 4: 2_000_000, 5: 300}.get(t["id"], 5000)
                ins.append(int(base * random.random() * 0.3))
                outs.append(int(base * random.random()))
                del ins[0], outs[0]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    server_version = "mgrok-mock"

    def log_message(self, fmt, *args):  # quiet
        pass

    @property
    def st(self):
        return self.server.state

    def send_json(self, code, obj, extra=None):
        b = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(b)

    def body_json(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            return {}

    def authorized(self):
        tok = self.server.token
        return not tok or self.headers.get("Authorization") == "Bearer " + tok

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_DELETE(self):
        self.route("DELETE")

    def route(self, method):
        u = urlsplit(self.path)
        path, q = u.path, parse_qs(u.query)
        body = self.body_json() if method in ("POST", "PUT") else None
        st = self.st
        if path.startswith("/_mock/"):
            return self.control(method, path, body or {})
        if path.startswith("/api/"):
            with st.lock:
                st.log.append([method, self.path, body])
            if not self.authorized():
                return self.send_json(401, {"error": "a Bearer token is required"},
                                      {"WWW-Authenticate": "Bearer"})
            if st.which == "dashboard":
                return self.dashboard(method, path, q, body)
            return self.inspect(method, path, q, body)
        if method != "GET":
            return self.send_json(405, {"error": "method not allowed"})
        return self.asset(path)

    def asset(self, path):
        if path == "/":
            path = "/index.html"
        which = self.st.which
        if path.startswith("/common/"):  # shared by both pages, as web.c serves it
            which, path = "common", path[7:]
        d = os.path.join(ROOT, "src", "web", "assets", which)
        f = os.path.normpath(os.path.join(d, path.lstrip("/")))
        if not f.startswith(d + os.sep) or not os.path.isfile(f):
            return self.send_json(404, {"error": "not found"})
        with open(f, "rb") as fh:
            b = fh.read()
        self.send_response(200)
        self.send_header("Content-Type", CTYPES.get(os.path.splitext(f)[1], "application/octet-stream"))
        self.send_header("Content-Length", str(len(b)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.write(b)

    def sse(self, q):
        st = self.st
        since = self.headers.get("Last-Event-ID") or (q.get("since") or ["0"])[0]
        try:
            last = int(since)
        except ValueError:
            last = 0
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        try:
            while not self.server.stopping:
                with st.lock:
                    evs = [e for e in st.events if e["seq"] > last]
                    if not evs:
                        st.lock.wait(15)
                        evs = [e for e in st.events if e["seq"] > last]
                if not evs:
                    self.wfile.write(b": keepalive\n\n")
                for e in evs:
                    self.wfile.write(("id: %d\nevent: %s\ndata: %s\n\n" % (
                        e["seq"], e["type"], json.dumps(e))).encode())
                    last = e["seq"]
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def dashboard(self, method, path, q, body):
        st = self.st
        if path == "/api/v1/info":
            return self.send_json(200, {
                "version": "0.6.0", "started_ms": st.started,
                "uptime_s": (now_ms() - st.started) // 1000, "addr": ":9000",
                "domain": "tunnel.example.com", "http_addr": ":80", "https_addr": "",
                "sessions": len(st.sessions), "tunnels": len(st.tunnels),
                "reload": {"count": 1, "failures": 0, "ok": True, "time_ms": st.started, "error": ""}})
        if path == "/api/v1/sessions":
            return self.send_json(200, {"sessions": st.sessions})
        if path.startswith("/api/v1/sessions/") and method == "DELETE":
            sid = path.rsplit("/", 1)[1]
            for s in st.sessions:
                if str(s["id"]) == sid:
                    st.sessions.remove(s)
                    for t in st.tunnels:
                        if t["session"] == s["id"]:
                            t["state"], t["session"] = "grace", None
                    st.emit("session_kicked", session=s["id"], reason="kicked by an operator")
                    return self.send_json(200, {"kicked": s["id"]})
            return self.send_json(404, {"error": "no session " + sid})
        if path == "/api/v1/tunnels":
            return self.send_json(200, {"tunnels": st.tunnels})
        if path == "/api/v1/traffic":
            st.tick()
            return self.send_json(200, {"interval_s": 2, "tunnels": [
                {"id": t["id"], "name": t["name"], "in": st.traffic[t["id"]][0],
                 "out": st.traffic[t["id"]][1]} for t in st.tunnels]})
        if path == "/api/v1/events":
            return self.sse(q)
        return self.send_json(404, {"error": "not found"})

    def inspect(self, method, path, q, body):
        st = self.st
        if path == "/api/tunnels":
            return self.send_json(200, {"tunnels": st.agent_tunnels})
        if path == "/api/requests/http" and method == "GET":
            n = int((q.get("limit") or ["50"])[0])
            return self.send_json(200, {"requests": st.requests[:n]})
        if path == "/api/requests/http" and method == "DELETE":
            st.requests = []
            self.send_response(204)
            self.end_headers()
            return None
        if path == "/api/requests/http" and method == "POST":
            orig = next((r for r in st.requests if r["id"] == (body or {}).get("id")), None)
            if orig is None:
                return self.send_json(404, {"error": "no such request"})
            rq = orig["request"]
            b = base64.b64decode(rq["body"]["base64"])
            if "body" in body:
                b = body["body"].encode()
            elif "body_base64" in body:
                b = base64.b64decode(body["body_base64"])
            e = st.add_request(orig["tunnel"], body.get("method") or rq["method"],
                               body.get("uri") or rq["uri"], body=b, replay_of=orig["id"],
                               resp=b'{"replayed":true}', rctype="application/json")
            if "headers" in body:
                e["request"]["headers"] = body["headers"]
            st.emit("request", id=e["id"], tunnel=e["tunnel"], name=e["tunnel"],
                    method=e["request"]["method"], uri=e["request"]["uri"], status=200,
                    duration_ms=e["duration_ms"], remote_addr="127.0.0.1:1", bytes_in=0, bytes_out=0)
            return self.send_json(201, e)
        if path == "/api/requests/http.har":
            return self.send_json(200, {"log": {"version": "1.2", "creator": {"name": "mock"},
                                                "entries": []}})
        if path.startswith("/api/requests/http/"):
            rid = path.rsplit("/", 1)[1]
            for r in st.requests:
                if r["id"] == rid:
                    return self.send_json(200, r)
            return self.send_json(404, {"error": "no such request"})
        if path == "/api/connections":
            return self.send_json(200, {"connections": st.connections})
        if path == "/api/events":
            return self.sse(q)
        return self.send_json(404, {"error": "not found"})

    def control(self, method, path, body):
        st = self.st
        name = body.get("name", "api")
        if path == "/_mock/log":
            with st.lock:
                return self.send_json(200, st.log)
        if path == "/_mock/tunnel_up":
            if st.which == "dashboard":
                tid = max([t["id"] for t in st.tunnels] + [0]) + 1
                st.tunnels.append({"id": tid, "name": name, "type": "http",
                                   "public": "http://%s.example.com" % name, "session": 7,
                                   "client_id": "5f0c" * 8, "token": "alice", "state": "up",
                                   "created_ms": now_ms(), "bytes_in": 0, "bytes_out": 0,
                                   "connections": 0, "connections_active": 0,
                                   "http": {"requests": 0, "by_class": {}, "latency_avg_ms": 0}})
                st.traffic[tid] = ([0] * 150, [0] * 150)
                st.emit("tunnel_up", tunnel=tid, name=name, tunnel_type="http",
                        public="http://%s.example.com" % name, session=7)
            else:
                st.agent_tunnels.append({"name": name, "type": "http",
                                         "public_url": "http://%s.example.com" % name,
                                         "local": "127.0.0.1:3001", "status": "online",
                                         "bytes_in": 0, "bytes_out": 0, "connections": 0,
                                         "connections_active": 0, "requests": 0})
                st.emit("tunnel_up", tunnel=name, name=name, tunnel_type="http",
                        public="http://%s.example.com" % name)
            return self.send_json(200, {"ok": True})
        if path == "/_mock/tunnel_down":
            if st.which == "dashboard":
                for t in list(st.tunnels):
                    if t["name"] == name:
                        st.tunnels.remove(t)
                        st.emit("tunnel_down", tunnel=t["id"], name=name, tunnel_type=t["type"],
                                reason="closed by the client")
            else:
                st.agent_tunnels = [t for t in st.agent_tunnels if t["name"] != name]
                st.emit("tunnel_down", tunnel=name, name=name, tunnel_type="http", reason="closed")
            return self.send_json(200, {"ok": True})
        if path == "/_mock/request":
            e = st.add_request(body.get("tunnel", "web"), body.get("method", "GET"),
                               body.get("uri", "/new"), resp=b"<html>hi</html>",
                               rctype="text/html")
            st.emit("request", id=e["id"], tunnel=e["tunnel"], name=e["tunnel"],
                    method=e["request"]["method"], uri=e["request"]["uri"], status=200,
                    duration_ms=e["duration_ms"], remote_addr=e["remote_addr"],
                    bytes_in=0, bytes_out=15)
            return self.send_json(200, e)
        if path == "/_mock/connection":
            cid = "c%d" % (len(st.connections) + 1)
            c = {"id": cid, "tunnel": body.get("tunnel", "db"), "type": "tcp",
                 "remote_addr": "203.0.113.7:4444", "start": now_ms() - 100, "duration_ms": 100.0,
                 "bytes_in": 10, "bytes_out": 20, "close_reason": "closed", "sni": None,
                 "active": False}
            st.connections.insert(0, c)
            st.emit("connection_closed", id=cid, tunnel=c["tunnel"], name=c["tunnel"], tunnel_type="tcp",
                    remote_addr=c["remote_addr"], duration_ms=100.0, bytes_in=10, bytes_out=20,
                    reason="closed")
            return self.send_json(200, c)
        return self.send_json(404, {"error": "no such control"})


def serve(which, port=0, token=None):
    """Start the mock in a thread; returns the server (server_address, shutdown())."""
    srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    srv.daemon_threads = True
    srv.state = State(which)
    srv.token = token
    srv.stopping = False
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", choices=("dashboard", "inspect"), default="dashboard")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token", default=None, help="require this Bearer token")
    a = ap.parse_args()
    srv = serve(a.set, a.port, a.token)
    print("mock %s on http://127.0.0.1:%d/" % (a.set, srv.server_address[1]), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
