"""HTTP, HTTPS and TLS (SNI passthrough) tunnels: routing by Host per
request on keep-alive connections, 32 MiB chunked upload / download,
websocket passthrough, basic auth, error pages (404, 502, 431, 408, 400),
requests waiting through a lease grace, HTTPS termination with a wildcard
certificate, SNI passthrough to a local TLS origin, X-Forwarded-* headers,
--host-header rewrite, and subdomain conflicts / reserved names."""

import base64
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from helpers import (HOST, connect, header, make_pki, pattern_chunks, pick_free_port,
                     read_http_response, recv_until_eof, wait_for)

DOMAIN = "tun.test"
BIG = 32 << 20
HTTP_URL_RE = re.compile(r"Forwarding (https?)://([^\s:/]+):(\d+)")
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# ---------------------------------------------------------------- local HTTP services

class HttpService:
    """A keep-alive HTTP/1.1 origin on 127.0.0.1:0 (ThreadingHTTPServer).

    GET /download?n=N   N deterministic bytes (helpers.pattern_chunks seed 7)
    PUT|POST any        the body (chunked or Content-Length) is hashed; the
                        answer is JSON {sha256, len, chunked}
    anything else       "<name> <METHOD> <path>\\n"
    Every request is recorded in self.requests as a dict (method, path,
    headers as a list of pairs, conn = client port)."""

    def __init__(self, name):
        self.name = name
        self.requests = []
        self.errors = []
        self.lock = threading.Lock()
        svc = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 30

            def log_message(self, *a):
                pass

            def _record(self):
                with svc.lock:
                    svc.requests.append({"method": self.command, "path": self.path,
                                         "headers": list(self.headers.items()),
                                         "conn": self.client_address[1]})

            def _send(self, code, body, ctype="text/plain"):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Service", svc.name)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self._record()
                if self.path.startswith("/status/"):  # a bodiless 204 / 304
                    self.send_response(int(self.path[8:11]))
                    self.send_header("X-Service", svc.name)
                    self.end_headers()
                    return
                if self.path.startswith("/download?n="):
                    n = int(self.path.split("=", 1)[1])
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(n))
                    self.end_headers()
                    for c in pattern_chunks(n, seed=7):
                        self.wfile.write(c)
                    return
                self._send(200, ("%s %s %s\n" % (svc.name, self.command, self.path)).encode())

            def _body(self):
                h = hashlib.sha256()
                total = 0
                te = (self.headers.get("Transfer-Encoding") or "").lower()
                if "chunked" in te:
                    while True:
                        line = self.rfile.readline(1024)
                        size = int(line.split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                                pass
                            break
                        left = size
                        while left:
                            d = self.rfile.read(min(left, 1 << 20))
                            if not d:
                                raise EOFError("EOF inside a chunk")
                            h.update(d)
                            left -= len(d)
                            total += len(d)
                        self.rfile.readline(16)
                else:
                    left = int(self.headers.get("Content-Length") or 0)
                    while left:
                        d = self.rfile.read(min(left, 1 << 20))
                        if not d:
                            raise EOFError("EOF inside the body")
                        h.update(d)
                        left -= len(d)
                        total += len(d)
                return h.hexdigest(), total, "chunked" in te

            def do_PUT(self):
                self._record()
                digest, n, chunked = self._body()
                self._send(200, json.dumps({"sha256": digest, "len": n,
                                            "chunked": chunked}).encode(),
                           "application/json")

            do_POST = do_PUT

            def do_HEAD(self):
                self._record()
                body = ("%s GET %s\n" % (svc.name, self.path)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Service", svc.name)
                self.end_headers()

            def do_DELETE(self):
                self._record()
                self._send(200, ("%s %s %s\n" % (svc.name, self.command, self.path)).encode())

        self.httpd = ThreadingHTTPServer((HOST, 0), H)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._t = threading.Thread(target=self.httpd.serve_forever,
                                   kwargs={"poll_interval": 0.1}, daemon=True)
        self._t.start()

    def last(self):
        with self.lock:
            return self.requests[-1] if self.requests else None

    def paths(self):
        with self.lock:
            return [r["path"] for r in self.requests]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self._t.join(timeout=2)


def http_service(mg, name):
    s = HttpService(name)
    mg.services.append(s)
    return s


# ---------------------------------------------------------------- mgrok helpers

class HttpServer:
    """The mgrok server process with its HTTP(S) ports and PKI."""

    def __init__(self, proc, http_port, https_port, pki):
        self.proc = proc
        self.port = proc.port
        self.http_port = http_port
        self.https_port = https_port
        self.pki = pki


def _run(argv, timeout=60, **kw):
    return subprocess.run(argv, stdin=kw.pop("stdin", subprocess.DEVNULL),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout, **kw)


def _http_server(mg, https=True, extra=()):
    http_port = pick_free_port()
    https_port = pick_free_port() if https else None
    argv = ["--domain", DOMAIN, "--http-addr", "%s:%d" % (HOST, http_port)]
    pki = None
    if https:
        pki = make_pki(mg, "pki-server", "*.%s,%s" % (DOMAIN, DOMAIN))
        argv += ["--https-addr", "%s:%d" % (HOST, https_port),
                 "--https-cert", pki.server_pem, "--https-key", pki.server_key]
    p = mg.server(extra=argv + list(extra))
    want = ["http listening on port %d" % http_port]
    if https:
        want.append("https listening on port %d" % https_port)
    ok = wait_for(lambda: all(w in p.stderr() for w in want) or not p.alive(), 10)
    assert ok and p.alive(), "server did not log %r\n%s" % (want, mg.logs())
    return HttpServer(p, http_port, https_port, pki)


def _urls(client):
    return [(m.group(1), m.group(2), int(m.group(3)))
            for m in HTTP_URL_RE.finditer(client.stdout())]


def _http_client(mg, srv, local_port, subdomain=None, hostname=None, extra=(),
                 state_dir=None, kind="http", wait=True):
    """`mgrok http` (or tls); waits for its Forwarding line(s) and returns
    (client, host) with the host the server assigned."""
    opts = []
    if subdomain:
        opts += ["--subdomain", subdomain]
    if hostname:
        opts += ["--hostname", hostname]
    c = mg.proxy_client(kind, local_port, srv, state_dir=state_dir,
                        extra=opts + list(extra))
    if not wait:
        return c, None
    n = 2 if (kind == "http" and srv.https_port) else 1
    if kind == "tls":
        got = wait_for(lambda: ("Forwarding " in c.stdout()) or not c.alive(), 10)
        assert got and c.alive(), "mgrok tls printed no Forwarding line\n%s" % mg.logs()
        return c, hostname
    urls = wait_for(lambda: (len(_urls(c)) >= n and _urls(c)) or (not c.alive() and "dead"), 10)
    assert urls and urls != "dead", (
        "mgrok http did not print %d 'Forwarding http(s)://HOST:PORT' lines (%s)\n%s"
        % (n, "it exited" if urls == "dead" else "10 s", mg.logs()))
    assert urls[0][0] == "http" and urls[0][2] == srv.http_port, urls
    if srv.https_port:
        assert ("https", urls[0][1], srv.https_port) in urls, urls
    host = urls[0][1]
    if subdomain:
        assert host == "%s.%s" % (subdomain, DOMAIN), urls
    if hostname:
        assert host == hostname, urls
    return c, host


def _get(port, host, path="/", headers=None, timeout=10, method="GET", body=None):
    """One request on a fresh connection: (status, headers, body)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        h = {"Host": host}
        h.update(headers or {})
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        return r.status, r.getheaders(), r.read()
    finally:
        conn.close()


def _raw(port, data, timeout=10):
    """Send raw bytes on a new connection and read one response."""
    s = connect(port, timeout=timeout)
    try:
        s.sendall(data)
        return read_http_response(s, timeout=timeout)
    finally:
        s.close()


def _curl(args, timeout=60, stdin=None):
    curl = shutil.which("curl")
    if not curl:
        pytest.skip("curl is not installed")
    return _run([curl, "-sS", "--max-time", str(timeout - 5)] + list(args),
                timeout=timeout, stdin=stdin or subprocess.DEVNULL)


def _assert_page(mg, status, headers, body, code, contains=()):
    what = "%d page" % code
    assert status == code, "expected %d, got %d %r\n%s" % (code, status, body[:300], mg.logs())
    ct = header(headers, "Content-Type", "")
    assert ct.startswith("text/html"), "%s: Content-Type %r" % (what, ct)
    text = body.decode("utf-8", "replace")
    assert "<html" in text.lower() and "</html>" in text.lower(), "%s: %r" % (what, text)
    assert str(code) in text, "%s does not name its status: %r" % (what, text)
    for c in contains:
        assert c in text, "%s does not contain %r: %r" % (what, c, text)
    cl = header(headers, "Content-Length")
    if cl is not None:
        assert int(cl) == len(body), (what, cl, len(body))


def _hdr(req, name):
    """All values of header name in a recorded request."""
    return [v for k, v in req["headers"] if k.lower() == name.lower()]


# ---------------------------------------------------------------- 1. routing by Host

def test_routing_by_host_curl_and_keepalive(mg):
    srv = _http_server(mg, https=False)
    a = http_service(mg, "alpha")
    b = http_service(mg, "beta")
    ca, ha = _http_client(mg, srv, a.port, subdomain="alpha")
    cb, hb = _http_client(mg, srv, b.port, hostname="beta.custom.example")

    # curl: the Host header with and without a port (routing ignores the port)
    r = _curl(["--resolve", "%s:%d:127.0.0.1" % (ha, srv.http_port),
               "http://%s:%d/one" % (ha, srv.http_port)])
    assert r.returncode == 0 and r.stdout == b"alpha GET /one\n", (r, mg.logs())
    r = _curl(["-H", "Host: %s" % hb, "http://127.0.0.1:%d/two" % srv.http_port])
    assert r.returncode == 0 and r.stdout == b"beta GET /two\n", (r, mg.logs())
    # the Host is matched case-insensitively
    st, _, body = _get(srv.http_port, ha.upper(), "/upper")
    assert (st, body) == (200, b"alpha GET /upper\n"), (st, body, mg.logs())

    # one keep-alive connection, requests alternating between the two hosts
    conn = http.client.HTTPConnection(HOST, srv.http_port, timeout=10)
    try:
        first_sock = None
        for i in range(10):
            host, name = (ha, "alpha") if i % 2 == 0 else (hb, "beta")
            if i % 3 == 2:  # sometimes with the port in Host
                host = "%s:%d" % (host, srv.http_port)
            method = "DELETE" if i == 7 else "GET"
            conn.request(method, "/k%d" % i, headers={"Host": host})
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == 200, (i, resp.status, body, mg.logs())
            want = ("%s %s /k%d\n" % (name, method, i)).encode()
            assert body == want, (
                "request %d for %s answered by the wrong service: %r\n%s"
                % (i, host, body, mg.logs()))
            assert header(resp.getheaders(), "X-Service") == name
            if first_sock is None:
                first_sock = conn.sock
            assert conn.sock is not None and conn.sock is first_sock, (
                "the public keep-alive connection was closed after request %d "
                "(headers %r)" % (i, resp.getheaders()))
    finally:
        conn.close()
    assert [p for p in a.paths() if p.startswith("/k")] == ["/k0", "/k2", "/k4", "/k6", "/k8"]
    assert [p for p in b.paths() if p.startswith("/k")] == ["/k1", "/k3", "/k5", "/k7", "/k9"]
    # pipelined: four requests for both hosts in one write, answered in order
    s = connect(srv.http_port, timeout=10)
    try:
        s.sendall(b"".join(("GET /p%d HTTP/1.1\r\nHost: %s\r\n\r\n"
                            % (i, (ha, hb)[i % 2])).encode() for i in range(4)))
        f = s.makefile("rb")
        for i in range(4):
            head = _read_head(f).decode("latin-1")
            m = re.search(r"(?im)^content-length:\s*(\d+)", head)
            body = f.read(int(m.group(1))) if m else None
            assert head.startswith("HTTP/1.1 200 ") and body == (
                "%s GET /p%d\n" % (("alpha", "beta")[i % 2], i)).encode(), (
                i, head, body, mg.logs())
    finally:
        s.close()
    # the origin sees the public Host unchanged
    assert _hdr(a.requests[0], "Host") == ["%s:%d" % (ha, srv.http_port)], a.requests[0]

    # logs: one line per request at the client and at the server
    assert wait_for(lambda: "GET /k8 200 OK" in ca.stderr(), 5), mg.logs()
    assert wait_for(lambda: "DELETE /k7 200 OK" in cb.stderr(), 5), mg.logs()
    wait_for(lambda: " GET /k1 200 OK" in srv.proc.stderr(), 5)
    slog = srv.proc.stderr()
    assert re.search(r"http 127\.0\.0\.1:\d+ %s GET /k0 200 OK [\d.]+ms" % re.escape(ha),
                     slog), slog[-3000:]
    assert re.search(r"http 127\.0\.0\.1:\d+ %s GET /k1 200 OK" % re.escape(hb), slog), slog[-3000:]

    # the client's exit summary counts its requests
    ca.signal(signal.SIGINT)
    assert ca.wait(10) is not None, "client did not exit on SIGINT\n%s" % mg.logs()
    n = len(a.requests)
    assert re.search(r"%d requests \(%d 2xx, 0 3xx, 0 4xx, 0 5xx\)" % (n, n), ca.stderr()), (
        "client summary lacks '%d requests (%d 2xx, ...)'\n%s" % (n, n, ca.stderr()))


def test_keepalive_bodiless_responses(mg):
    """HEAD, 204 and 304 answers have no body whatever their headers say;
    the next request on the same connection must be answered."""
    srv = _http_server(mg, https=False)
    svc = http_service(mg, "nb")
    _, host = _http_client(mg, srv, svc.port, subdomain="nb")
    bad = []
    for method, path, code in (("HEAD", "/head", 200), ("GET", "/status/204", 204),
                               ("GET", "/status/304", 304)):
        conn = http.client.HTTPConnection(HOST, srv.http_port, timeout=4)
        try:
            conn.request(method, path, headers={"Host": host})
            r = conn.getresponse()
            body = r.read()
            if (r.status, body) != (code, b""):
                bad.append("%s %s: %d %r" % (method, path, r.status, body))
                continue
            conn.request("GET", "/after" + path, headers={"Host": host})
            r = conn.getresponse()
            body = r.read()
            if (r.status, body) != (200, b"nb GET /after%s\n" % path.encode()):
                bad.append("%s %s, then GET: %d %r" % (method, path, r.status, body))
        except (socket.timeout, OSError, http.client.HTTPException) as e:
            bad.append("%s %s (%d), then GET on the same connection: %r"
                       % (method, path, code, e))
        finally:
            conn.close()
    assert not bad, "\n".join(bad) + "\n" + mg.logs()
    # request lines are written within 50 ms (gathered, off the request path)
    lines = ("HEAD /head 200 OK", "GET /status/204 204", "GET /status/304 304")
    wait_for(lambda: all(line in srv.proc.stderr() for line in lines), 5)
    slog = srv.proc.stderr()
    for line in lines:
        assert line in slog, "server did not log %r" % line


def test_random_subdomain(mg):
    srv = _http_server(mg, https=False)
    a = http_service(mg, "rnd")
    _, host = _http_client(mg, srv, a.port)
    sub, _, dom = host.partition(".")
    assert dom == DOMAIN and re.fullmatch(r"[a-z0-9]{5}", sub), host
    st, _, body = _get(srv.http_port, host, "/r")
    assert (st, body) == (200, b"rnd GET /r\n"), (st, body, mg.logs())


# ---------------------------------------------------------------- 2. 32 MiB each way

def test_chunked_upload_and_download_32mib(mg, tmp_path):
    srv = _http_server(mg, https=False)
    svc = http_service(mg, "bulk")
    cl, host = _http_client(mg, srv, svc.port, subdomain="bulk")

    src = tmp_path / "upload.bin"
    h = hashlib.sha256()
    with open(src, "wb") as f:
        for c in pattern_chunks(BIG, seed=11):
            f.write(c)
            h.update(c)
    want_up = h.hexdigest()
    with open(src, "rb") as f:
        r = _curl(["-v", "-T", "-", "-H", "Host: %s" % host,
                   "http://127.0.0.1:%d/upload" % srv.http_port], timeout=60, stdin=f)
    assert r.returncode == 0, (r, mg.logs())
    got = json.loads(r.stdout)
    # curl asks for 100 Continue; the interim answer must come through
    assert b"< HTTP/1.1 100 Continue" in r.stderr, r.stderr.decode(errors="replace")[-2000:]
    assert got["chunked"], "curl -T - did not arrive chunked at the origin: %r" % svc.last()
    assert (got["len"], got["sha256"]) == (BIG, want_up), (got, mg.logs())

    want_down = hashlib.sha256()
    for c in pattern_chunks(BIG, seed=7):
        want_down.update(c)
    conn = http.client.HTTPConnection(HOST, srv.http_port, timeout=30)
    try:
        conn.request("GET", "/download?n=%d" % BIG, headers={"Host": host})
        resp = conn.getresponse()
        assert resp.status == 200, (resp.status, mg.logs())
        assert int(resp.getheader("Content-Length")) == BIG
        d = hashlib.sha256()
        n = 0
        while True:
            c = resp.read(1 << 20)
            if not c:
                break
            d.update(c)
            n += len(c)
        assert (n, d.hexdigest()) == (BIG, want_down.hexdigest()), (n, mg.logs())
        # and the connection is still usable for a chunked upload from http.client
        def gen():
            yield from pattern_chunks(3 << 20, seed=12)
        conn.request("POST", "/post", body=gen(), encode_chunked=True,
                     headers={"Host": host, "Transfer-Encoding": "chunked"})
        resp = conn.getresponse()
        got = json.loads(resp.read())
        want = hashlib.sha256(b"".join(pattern_chunks(3 << 20, seed=12))).hexdigest()
        assert (got["len"], got["sha256"], got["chunked"]) == (3 << 20, want, True), got
    finally:
        conn.close()
    # logs: the final status, not the interim 100 Continue
    assert wait_for(lambda: re.search(r"http 127\.0\.0\.1:\d+ %s PUT /upload 200 OK"
                                      % re.escape(host), srv.proc.stderr()), 5), mg.logs()
    assert wait_for(lambda: "POST /post 200 OK" in cl.stderr(), 5), cl.stderr()
    wait_for(lambda: "PUT /upload 200 OK" in cl.stderr(), 5)
    assert "PUT /upload 200 OK" in cl.stderr(), (
        "the client logged the upload with its interim response:\n%s" % cl.stderr())


def test_download_paused_reader(mg):
    """The public reader stops for a second (small receive buffer), so that
    every buffer on the way fills up, then reads on: the rest must come."""
    srv = _http_server(mg, https=False)
    svc = http_service(mg, "slowrd")
    _, host = _http_client(mg, srv, svc.port, subdomain="slowrd")
    total = 8 << 20
    want = hashlib.sha256(b"".join(pattern_chunks(total, seed=7))).hexdigest()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    mg.track(s)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.settimeout(5)
    s.connect((HOST, srv.http_port))
    s.sendall(("GET /download?n=%d HTTP/1.1\r\nHost: %s\r\n\r\n" % (total, host)).encode())
    time.sleep(1.0)
    f = s.makefile("rb")
    head = _read_head(f).decode("latin-1")
    assert head.startswith("HTTP/1.1 200"), head
    d = hashlib.sha256()
    n = 0
    deadline = time.monotonic() + 15
    try:
        while n < total and time.monotonic() < deadline:
            c = f.read1(1 << 20)
            if not c:
                break
            d.update(c)
            n += len(c)
    except socket.timeout:
        pass
    assert n == total, ("download stalled after %d of %d body bytes once the reader "
                        "resumed\n%s" % (n, total, mg.logs()))
    assert d.hexdigest() == want


# ---------------------------------------------------------------- 3. websocket

def _read_head(f, limit=65536):
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = f.readline(limit)
        if not line:
            raise EOFError("EOF in a head: %r" % head)
        head += line
        if len(head) > limit:
            raise ValueError("head too long")
    return head


def _ws_frame(opcode, payload, mask):
    b0 = 0x80 | opcode
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        hdr = struct.pack("!BB", b0, m | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, m | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, m | 127, n)
    if mask:
        key = os.urandom(4)
        payload = bytes(x ^ key[i % 4] for i, x in enumerate(payload))
        hdr += key
    return hdr + payload


def _ws_read(f):
    """(fin, opcode, masked, payload) of one frame read from file f."""
    def need(n):
        d = f.read(n)
        if len(d) != n:
            raise EOFError("EOF in a websocket frame")
        return d
    b0, b1 = need(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", need(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", need(8))[0]
    key = need(4) if b1 & 0x80 else None
    p = need(n)
    if key:
        p = bytes(x ^ key[i % 4] for i, x in enumerate(p))
    return bool(b0 & 0x80), b0 & 0x0F, key is not None, p


def _ws_accept(key):
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def test_websocket_echo(mg):
    srv = _http_server(mg, https=False)
    heads = []
    unmasked = []

    def ws_echo(c, idx):
        f = c.makefile("rb")
        head = _read_head(f).decode("latin-1")
        heads.append(head)
        key = re.search(r"(?im)^sec-websocket-key:\s*(\S+)", head).group(1)
        c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n"
                   % _ws_accept(key)).encode())
        while True:
            fin, op, masked, p = _ws_read(f)
            if not masked:
                unmasked.append(op)
            c.sendall(_ws_frame(op, p, mask=False))
            if op == 8:
                return

    svc = mg.service(ws_echo)
    _, host = _http_client(mg, srv, svc.port, subdomain="ws")
    s = connect(srv.http_port, timeout=10)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall(("GET /chat HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n" % (host, key)).encode())
        f = s.makefile("rb")
        head = _read_head(f).decode("latin-1")
        assert head.startswith("HTTP/1.1 101"), (head, mg.logs())
        acc = re.search(r"(?im)^sec-websocket-accept:\s*(\S+)", head)
        assert acc and acc.group(1) == _ws_accept(key), head
        assert re.search(r"(?im)^upgrade:\s*websocket", head), head
        msgs = [b"hello", "h\u00e9llo w\u00f6rld".encode(), b"x" * 125, b"y" * 126,
                os.urandom(300).hex().encode(), b"z" * 70000, b""]
        for m in msgs:
            s.sendall(_ws_frame(1, m, mask=True))
            fin, op, masked, p = _ws_read(f)
            assert (fin, op, masked, p) == (True, 1, False, m), (
                "echo of a %d-byte text frame: got fin=%s op=%d masked=%s %d bytes"
                % (len(m), fin, op, masked, len(p)))
        # a 4 MiB frame, sent by a thread while this side does not read for
        # a second (every buffer on the way fills), then read back
        big = os.urandom(1 << 20) * 4
        frame = _ws_frame(2, big, mask=True)
        sender = threading.Thread(target=lambda: s.sendall(frame), daemon=True)
        sender.start()
        time.sleep(1.0)
        try:
            fin, op, masked, p = _ws_read(f)
        except (socket.timeout, EOFError) as e:
            raise AssertionError("4 MiB websocket echo: %r\n%s" % (e, mg.logs()))
        sender.join(10)
        assert (op, len(p), p == big) == (2, len(big), True), (op, len(p))
        # several frames in one write, then a ping and a close
        s.sendall(b"".join(_ws_frame(1, b"burst%d" % i, mask=True) for i in range(20)))
        for i in range(20):
            assert _ws_read(f)[3] == b"burst%d" % i
        s.sendall(_ws_frame(9, b"pp", mask=True))
        assert _ws_read(f)[1:] == (9, False, b"pp")
        s.sendall(_ws_frame(8, struct.pack("!H", 1000), mask=True))
        assert _ws_read(f)[1:] == (8, False, struct.pack("!H", 1000))
        assert not unmasked, "the origin received unmasked frames %r" % unmasked
        how = recv_until_eof(s, timeout=5)[1]
        assert how in ("eof", "reset"), "public connection not closed after the origin closed"
    finally:
        s.close()
    assert len(heads) == 1
    assert re.search(r"(?im)^upgrade:\s*websocket", heads[0]), heads[0]
    assert re.search(r"(?im)^connection:\s*upgrade", heads[0]), heads[0]
    assert re.search(r"(?im)^sec-websocket-key:\s*%s" % re.escape(key), heads[0]), heads[0]


# ---------------------------------------------------------------- 4. basic auth

def test_basic_auth(mg):
    srv = _http_server(mg, https=False)
    svc = http_service(mg, "secret")
    _, host = _http_client(mg, srv, svc.port, subdomain="auth",
                           extra=["--basic-auth", "user:s3cr:et"])

    def cred(s):
        return "Basic " + base64.b64encode(s.encode()).decode()

    bad = [None, cred("user:wrong"), cred("other:s3cr:et"), cred("user:s3cr"),
           "Bearer abc", "Basic !!!notbase64", cred("user:s3cr:et") + "x"]
    for auth in bad:
        st, hs, body = _get(srv.http_port, host, "/p",
                            headers={"Authorization": auth} if auth else None)
        assert st == 401, "Authorization %r: expected 401, got %d\n%s" % (auth, st, mg.logs())
        assert header(hs, "WWW-Authenticate") == 'Basic realm="mgrok"', hs
        _assert_page(mg, st, hs, body, 401)
    assert svc.requests == [], "the origin saw unauthenticated requests: %r" % svc.requests

    st, hs, body = _get(srv.http_port, host, "/ok",
                        headers={"Authorization": cred("user:s3cr:et")})
    assert (st, body) == (200, b"secret GET /ok\n"), (st, body, mg.logs())
    assert len(svc.requests) == 1
    assert _hdr(svc.requests[0], "Authorization") == [], (
        "the origin saw the tunnel's Authorization header: %r" % svc.requests[0]["headers"])
    # curl -u and keep-alive with credentials on every request
    r = _curl(["-u", "user:s3cr:et", "-H", "Host: %s" % host,
               "http://127.0.0.1:%d/c1" % srv.http_port,
               "http://127.0.0.1:%d/c2" % srv.http_port])
    assert r.returncode == 0 and r.stdout == b"secret GET /c1\nsecret GET /c2\n", (r, mg.logs())
    assert all(not _hdr(q, "Authorization") for q in svc.requests), svc.requests


# ---------------------------------------------------------------- 5. error pages

def test_404_unknown_host(mg):
    srv = _http_server(mg, https=False)
    svc = http_service(mg, "known")
    _http_client(mg, srv, svc.port, subdomain="known")
    for host in ("nobody.%s" % DOMAIN, "elsewhere.example", "known.%s.evil" % DOMAIN):
        st, hs, body = _get(srv.http_port, host, "/x")
        _assert_page(mg, st, hs, body, 404, contains=(host,))
    # a request without Host at all is not routed either
    st, _, hs, body = _raw(srv.http_port, b"GET / HTTP/1.0\r\n\r\n")
    assert st in (400, 404), (st, body)
    assert svc.requests == [], svc.requests


def test_502_local_service_down(mg):
    srv = _http_server(mg, https=False)
    closed = pick_free_port()
    c, host = _http_client(mg, srv, closed, subdomain="down")
    st, hs, body = _get(srv.http_port, host, "/x", timeout=30)
    _assert_page(mg, st, hs, body, 502)
    assert c.alive(), "the client exited after a failed local connection\n%s" % mg.logs()


def test_431_head_too_large(mg):
    srv = _http_server(mg, https=False)
    svc = http_service(mg, "big")
    _, host = _http_client(mg, srv, svc.port, subdomain="big")
    req = ("GET / HTTP/1.1\r\nHost: %s\r\nX-Big: %s\r\n\r\n"
           % (host, "a" * (20 << 10))).encode()
    st, _, hs, body = _raw(srv.http_port, req)
    _assert_page(mg, st, hs, body, 431)
    # a 15 KiB head still passes
    st, hs, body = _get(srv.http_port, host, "/fits", headers={"X-Big": "b" * (15 << 10)})
    assert (st, body) == (200, b"big GET /fits\n"), (st, body, mg.logs())
    assert svc.paths() == ["/fits"], svc.paths()


@pytest.mark.slow
def test_408_head_timeout(mg):
    srv = _http_server(mg, https=False)
    svc = http_service(mg, "slow")
    _, host = _http_client(mg, srv, svc.port, subdomain="slow")
    s = connect(srv.http_port, timeout=10)
    try:
        s.sendall(("GET / HTTP/1.1\r\nHost: %s\r\nX-Partial: 1\r\n" % host).encode())
        # a slow head is not cut short: nothing comes back for a while ...
        early, how0 = recv_until_eof(s, timeout=3)
        assert (early, how0) == (b"", "timeout"), (
            "the server answered an unfinished head at once: %s %r\n%s"
            % (how0, early[:200], mg.logs()))
        # ... and the head timeout (10 s) then answers 408 and closes
        data, how = recv_until_eof(s, timeout=30)
    finally:
        s.close()
    assert how in ("eof", "reset") and data, (
        "no 408 and close within 33 s (%s after %d bytes)\n%s" % (how, len(data), mg.logs()))
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), data[:300]
    hs = [tuple(x.strip() for x in l.split(":", 1)) for l in
          head.decode("latin-1").split("\r\n")[1:]]
    _assert_page(mg, 408, hs, body, 408)
    assert svc.requests == []


def test_400_malformed(mg):
    srv = _http_server(mg, https=False)
    svc = http_service(mg, "m")
    _, host = _http_client(mg, srv, svc.port, subdomain="m")
    for bad in (b"THIS IS NOT HTTP AT ALL\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost: %s\r\nNo colon here\r\n\r\n" % host.encode(),
                b"GET / HTTP/1.1\r\nHost: %s\r\nContent-Length: zz\r\n\r\n" % host.encode()):
        s = connect(srv.http_port, timeout=10)
        try:
            s.sendall(bad)
            st, _, hs, body = read_http_response(s, timeout=10)
            _assert_page(mg, st, hs, body, 400)
            assert recv_until_eof(s, timeout=5)[1] in ("eof", "reset"), (
                "connection left open after 400 for %r" % bad)
        finally:
            s.close()
    assert svc.requests == [], svc.requests


def test_request_waits_through_lease_grace(mg):
    srv = _http_server(mg, https=False, extra=["--lease-grace", "10"])
    svc = http_service(mg, "grace")
    sd = mg.state_dir("grace")
    c1, host = _http_client(mg, srv, svc.port, subdomain="grace", state_dir=sd)
    assert _get(srv.http_port, host, "/before")[0] == 200
    c1.kill9()
    assert wait_for(lambda: "lease of http" in srv.proc.stderr(), 5), (
        "server did not log the lease after kill -9\n%s" % mg.logs())

    res = {}

    def req():
        try:
            res["r"] = _get(srv.http_port, host, "/during", timeout=30)
        except Exception as e:
            res["r"] = e

    t = threading.Thread(target=req, daemon=True)
    t.start()
    time.sleep(1.5)
    assert "r" not in res, "request answered while the client was away: %r" % (res,)
    _http_client(mg, srv, svc.port, subdomain="grace", state_dir=sd)
    t.join(30)
    assert not t.is_alive(), "the waiting request was not answered\n%s" % mg.logs()
    r = res["r"]
    assert not isinstance(r, Exception), (r, mg.logs())
    # served by the returned client (a lapsed lease would have answered 502)
    assert (r[0], r[2]) == (200, b"grace GET /during\n"), (r, mg.logs())
    assert svc.paths()[-1:] == ["/during"], svc.paths()


def test_502_after_lease_grace(mg):
    srv = _http_server(mg, https=False, extra=["--lease-grace", "2"])
    svc = http_service(mg, "gone")
    c1, host = _http_client(mg, srv, svc.port, subdomain="gone")
    c1.kill9()
    assert wait_for(lambda: "lease of http" in srv.proc.stderr(), 5), mg.logs()
    # the request waits through the grace, then gets 502 (not a hang)
    st, hs, body = _get(srv.http_port, host, "/late", timeout=30)
    _assert_page(mg, st, hs, body, 502)
    assert "expired" in srv.proc.stderr(), mg.logs()
    # after the grace the name is free: 404
    assert wait_for(lambda: _get(srv.http_port, host, "/later")[0] == 404, 10), mg.logs()


# ---------------------------------------------------------------- 6. HTTPS termination

def test_https_termination_wildcard(mg):
    srv = _http_server(mg, https=True)
    svc = http_service(mg, "sec")
    _, host = _http_client(mg, srv, svc.port, subdomain="sub")
    url = "https://%s:%d/tls" % (host, srv.https_port)
    r = _curl(["--cacert", srv.pki.ca_pem,
               "--resolve", "%s:%d:127.0.0.1" % (host, srv.https_port), url])
    assert r.returncode == 0, (r.stderr, mg.logs())
    assert r.stdout == b"sec GET /tls\n", (r.stdout, mg.logs())
    req = svc.last()
    assert _hdr(req, "X-Forwarded-Proto") == ["https"], req["headers"]
    # keep-alive over TLS: two URLs on one connection
    r = _curl(["--cacert", srv.pki.ca_pem, "-w", "%{num_connects}\n",
               "--resolve", "%s:%d:127.0.0.1" % (host, srv.https_port), url + "1", url + "2"])
    assert r.stdout == b"sec GET /tls1\n1\nsec GET /tls2\n0\n", (r, mg.logs())
    # the plain listener says http
    assert _get(srv.http_port, host, "/plain")[0] == 200
    assert _hdr(svc.last(), "X-Forwarded-Proto") == ["http"], svc.last()["headers"]
    # an unknown name under the wildcard: TLS is fine, then 404
    r = _curl(["--cacert", srv.pki.ca_pem, "-o", "/dev/null", "-w", "%{http_code}",
               "--resolve", "nobody.%s:%d:127.0.0.1" % (DOMAIN, srv.https_port),
               "https://nobody.%s:%d/" % (DOMAIN, srv.https_port)])
    assert r.returncode == 0 and r.stdout == b"404", r


# ---------------------------------------------------------------- 7. SNI passthrough

def _der(pem_path):
    with open(pem_path) as f:
        pem = f.read()
    first = pem[:pem.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")]
    return ssl.PEM_cert_to_DER_cert(first)


def test_sni_passthrough_to_origin(mg):
    openssl = shutil.which("openssl")
    if not openssl:
        pytest.skip("the openssl command is not installed")
    srv = _http_server(mg, https=True)
    origin = make_pki(mg, "pki-origin", "secure.test")
    oport = pick_free_port()
    so = mg.spawn("s_server", [openssl, "s_server", "-accept", "%s:%d" % (HOST, oport),
                               "-cert", origin.server_pem, "-key", origin.server_key,
                               "-www", "-quiet"])

    def up():
        try:
            socket.create_connection((HOST, oport), timeout=1).close()
            return True
        except OSError:
            return not so.alive() and "dead"
    assert wait_for(up, 10) is True, "openssl s_server did not start\n%s" % mg.logs()
    _http_client(mg, srv, oport, hostname="secure.test", kind="tls")
    # an HTTP tunnel too, to compare with the terminated certificate
    svc = http_service(mg, "term")
    _, host = _http_client(mg, srv, svc.port, subdomain="term")

    ctx = ssl.create_default_context(cafile=origin.ca_pem)
    raw = connect(srv.https_port, timeout=10)
    try:
        t = ctx.wrap_socket(raw, server_hostname="secure.test")
    except ssl.SSLError as e:
        raw.close()
        raise AssertionError("TLS to secure.test via the https port failed (%r); the server "
                             "probably terminated it\n%s" % (e, mg.logs()))
    try:
        der = t.getpeercert(binary_form=True)
        assert der == _der(origin.server_pem), "peer certificate is not the origin's"
        assert der != _der(srv.pki.server_pem)
        assert ("DNS", "secure.test") in t.getpeercert()["subjectAltName"]
        t.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data, how = recv_until_eof(t, timeout=10)
        assert data.startswith(b"HTTP/1.0 200 ok"), (data[:200], how)
        assert b"s_server" in data, data[:500]
    finally:
        t.close()

    # other names on the same port are terminated with the wildcard certificate
    ctx2 = ssl.create_default_context(cafile=srv.pki.ca_pem)
    t = ctx2.wrap_socket(connect(srv.https_port, timeout=10), server_hostname=host)
    try:
        assert t.getpeercert(binary_form=True) == _der(srv.pki.server_pem)
        t.sendall(("GET /t HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % host).encode())
        st, _, _, body = read_http_response(t, timeout=10)
        assert (st, body) == (200, b"term GET /t\n"), (st, body)
    finally:
        t.close()
    # the origin's CA does not trust what the server presents for other names
    raw = mg.track(connect(srv.https_port, timeout=10))
    with pytest.raises(ssl.SSLCertVerificationError):
        ctx.wrap_socket(raw, server_hostname="other.test").close()


# ---------------------------------------------------------------- 8. X-Forwarded-*

def test_x_forwarded_headers(mg):
    srv = _http_server(mg, https=False)
    svc = http_service(mg, "xff")
    _, host = _http_client(mg, srv, svc.port, subdomain="xff")

    assert _get(srv.http_port, host, "/1")[0] == 200
    q = svc.last()
    assert _hdr(q, "X-Forwarded-For") == ["127.0.0.1"], q["headers"]
    assert _hdr(q, "X-Forwarded-Host") == [host], q["headers"]
    assert _hdr(q, "X-Forwarded-Proto") == ["http"], q["headers"]

    # a visitor's own X-Forwarded-For is not passed on: only a trusted
    # proxy's is (--trusted-proxies, test_trusted_proxies.py)
    assert _get(srv.http_port, host, "/2", headers={"X-Forwarded-For": "10.1.2.3"})[0] == 200
    assert _hdr(svc.last(), "X-Forwarded-For") == ["127.0.0.1"], svc.last()["headers"]
    st, _, _, _ = _raw(srv.http_port, (
        "GET /3 HTTP/1.1\r\nHost: %s\r\nX-Forwarded-For: 10.0.0.1\r\n"
        "X-Forwarded-For: 10.0.0.2\r\nConnection: close\r\n\r\n" % host).encode())
    assert st == 200
    assert _hdr(svc.last(), "X-Forwarded-For") == ["127.0.0.1"], svc.last()["headers"]

    # spoofed X-Forwarded-Host / -Proto are replaced, not passed on
    assert _get(srv.http_port, host, "/4", headers={
        "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"})[0] == 200
    q = svc.last()
    assert _hdr(q, "X-Forwarded-Host") == [host], q["headers"]
    assert _hdr(q, "X-Forwarded-Proto") == ["http"], q["headers"]

    # with a port in Host (curl --resolve)
    r = _curl(["--resolve", "%s:%d:127.0.0.1" % (host, srv.http_port),
               "-H", "Authorization: Bearer app-token",
               "http://%s:%d/5" % (host, srv.http_port)])
    assert r.returncode == 0, r
    q = svc.last()
    assert _hdr(q, "X-Forwarded-Host")[0] in (host, "%s:%d" % (host, srv.http_port)), q["headers"]
    # without --basic-auth, the application's own Authorization passes through
    assert _hdr(q, "Authorization") == ["Bearer app-token"], q["headers"]


# ---------------------------------------------------------------- 9. Host rewrite

def test_host_header_rewrite(mg):
    srv = _http_server(mg, https=False)
    svc = http_service(mg, "rw")
    _, host = _http_client(mg, srv, svc.port, subdomain="rw",
                           extra=["--host-header", "rewrite"])
    conn = http.client.HTTPConnection(HOST, srv.http_port, timeout=10)
    try:
        for i in range(3):
            conn.request("GET", "/h%d" % i, headers={"Host": host})
            r = conn.getresponse()
            assert (r.status, r.read()) == (200, b"rw GET /h%d\n" % i), mg.logs()
    finally:
        conn.close()
    for q in svc.requests:
        assert _hdr(q, "Host") == ["localhost:%d" % svc.port], q["headers"]
        assert _hdr(q, "X-Forwarded-Host") == [host], q["headers"]


# ---------------------------------------------------------------- 10. conflicts

def test_subdomain_taken_and_reserved(mg):
    srv = _http_server(mg, https=False)
    svc = http_service(mg, "first")
    c1, host = _http_client(mg, srv, svc.port, subdomain="taken")

    c2, _ = _http_client(mg, srv, svc.port, subdomain="taken", wait=False)
    rc = c2.wait(15)
    assert rc is not None and rc != 0, "second client for 'taken' rc %r\n%s" % (rc, mg.logs())
    assert "mgrok: cannot register" in c2.stderr(), c2.stderr()
    assert "code 4" in c2.stderr(), c2.stderr()
    assert _urls(c2) == [], c2.stdout()
    # the holder is unaffected
    assert c1.alive()
    assert _get(srv.http_port, host, "/still")[2] == b"first GET /still\n"

    # a custom hostname already held is refused too
    c3, h3 = _http_client(mg, srv, svc.port, hostname="mine.example")
    c4, _ = _http_client(mg, srv, svc.port, hostname="mine.example", wait=False)
    rc = c4.wait(15)
    assert rc is not None and rc != 0, (rc, mg.logs())
    assert "mgrok: cannot register" in c4.stderr(), c4.stderr()

    for sub in ("www", "api", "admin", "dashboard", "app", "WWW"):
        c, _ = _http_client(mg, srv, svc.port, subdomain=sub, wait=False)
        rc = c.wait(15)
        assert rc is not None and rc != 0, "reserved subdomain %r: rc %r\n%s" % (
            sub, rc, mg.logs())
        assert "mgrok: cannot register" in c.stderr(), (sub, c.stderr())
        assert _urls(c) == [], (sub, c.stdout())


# ---------------------------------------------------------------- busy polling
def _proc_state(pid):
    """The scheduler state letter of a process: S when it sleeps in
    epoll_wait, R while it runs (or waits for a CPU: a spinning loop)."""
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def _sleeps_for(pids, span, timeout):
    """True once every process in pids was seen asleep in every sample over
    span seconds (samples 50 ms apart), within timeout seconds."""
    deadline = time.monotonic() + timeout
    since = time.monotonic()
    while time.monotonic() < deadline:
        if any(_proc_state(p) != "S" for p in pids):
            since = time.monotonic()
        elif time.monotonic() - since >= span:
            return True
        time.sleep(0.05)
    return False


def test_busy_poll(mg):
    """--busy-poll on both ends (100 ms windows): both say so, requests are
    served as without it, and once the traffic stops both processes go back
    to sleeping (CPU time flat; their keepalive and sweep timers do not
    restart polling, and a heartbeat at most costs one 100 ms window).
    Asleep is seen in the process state, not in CPU time: a spinning
    process is never in S, however little CPU a loaded machine gives it."""
    srv = _http_server(mg, https=False, extra=["--busy-poll", "100000"])
    a = http_service(mg, "alpha")
    ca, ha = _http_client(mg, srv, a.port, subdomain="bp", extra=["--busy-poll", "100000"])
    for p in (srv.proc, ca):
        assert "busy polling for 100000 us after each I/O" in p.stderr(), mg.logs()
    conn = http.client.HTTPConnection(HOST, srv.http_port, timeout=10)
    try:
        for i in range(50):
            conn.request("GET", "/bp%d" % i, headers={"Host": ha})
            r = conn.getresponse()
            assert (r.status, r.read()) == (200, b"alpha GET /bp%d\n" % i), mg.logs()
    finally:
        conn.close()
    # after the last request both go to sleep: 1 s asleep without a break
    # (a busy-poll window that never ends keeps a process in R)
    pids = (srv.proc.pid, ca.pid)
    assert _sleeps_for(pids, 1.0, 15), (
        "a busy-polling process did not go back to sleep within 15 s of the last "
        "request: states %r\n%s" % ([_proc_state(p) for p in pids], mg.logs()))
    assert srv.proc.alive() and ca.alive()


def test_busy_poll_bad_value(mg):
    for argv in (["server", "--busy-poll", "fast"], ["http", "80", "--busy-poll", "-1"],
                 ["tcp", "80", "--busy-poll", "1000001"]):
        r = _run([mg.bin] + argv, timeout=10)
        assert r.returncode == 2, (argv, r)
        assert b"--busy-poll: expected a number from 0 to 1000000" in r.stderr, (argv, r.stderr)
