"""The server's admin listener (--admin-addr): /metrics against known
traffic, the JSON API, the exit summary agreeing with both, auth (the
loopback rule, Bearer tokens, client certificates), kicking a session,
reload through the API, the event stream (SSE), health, and the
cardinality cap with 5,000 tunnels. docs/api.md is the contract."""

import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest

from helpers import HOST, connect, make_pki, pick_free_port, recv_until_eof, wait_for
from smux import PyClient, T_REGISTER_ERR, T_REGISTER_OK, register
from test_http import DOMAIN, _http_client, _http_server, http_service

ADMIN_RE = re.compile(r"admin listener on (https?)://([0-9.]+):(\d+)")
SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def admin_port(proc, timeout=10):
    m = wait_for(lambda: ADMIN_RE.search(proc.stderr()) or (not proc.alive() and "dead"),
                 timeout)
    assert m and m != "dead", "no 'admin listener on' line\n%s" % proc.log()
    return int(m.group(3))


def api(port, path, method="GET", token=None, body=None, host=None, headers=None,
        timeout=10):
    """(status, parsed JSON or text, headers) of one request to the admin API."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    h = {"Host": host or "%s:%d" % (HOST, port)}
    if token:
        h["Authorization"] = "Bearer " + token
    if body is not None:
        body = json.dumps(body)
        h["Content-Type"] = "application/json"
    h.update(headers or {})
    try:
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        data = r.read().decode("utf-8", "replace")
        ctype = r.getheader("Content-Type", "")
        if "json" in ctype:
            data = json.loads(data)
        return r.status, data, dict(r.getheaders())
    finally:
        conn.close()


def parse_metrics(text):
    """{(name, frozenset(labels.items())): float}"""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        assert m, "not a sample line: %r" % line
        labels = dict(LABEL_RE.findall(m.group(2) or ""))
        out[(m.group(1), frozenset(labels.items()))] = float(m.group(3))
    return out


def metric(samples, name, **labels):
    """The one sample of name whose labels include these; None if none."""
    hits = [v for (n, ls), v in samples.items()
            if n == name and all((k, str(v2)) in ls for k, v2 in labels.items())]
    assert len(hits) <= 1, "%s %r matches %d samples" % (name, labels, len(hits))
    return hits[0] if hits else None


def scrape(port, token=None):
    st, text, hdr = api(port, "/metrics", token=token)
    assert st == 200, (st, text)
    assert hdr.get("Content-Type", "").startswith("text/plain; version=0.0.4"), hdr
    return text


def raw_request(port, host, path="/", body=b""):
    """One HTTP/1.1 request on its own connection, Connection: close; returns
    (bytes sent, bytes received, status)."""
    req = ("%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n"
           % ("POST" if body else "GET", path, host)).encode()
    if body:
        req += b"Content-Length: %d\r\n" % len(body)
    req += b"\r\n" + body
    s = connect(port)
    try:
        s.sendall(req)
        resp, how = recv_until_eof(s, timeout=10)
        assert how == "eof", how
    finally:
        s.close()
    status = int(resp.split(b" ", 2)[1])
    return len(req), len(resp), status


def _server(mg, extra=(), https=False):
    srv = _http_server(mg, https=https, extra=["--admin-addr", "%s:0" % HOST] + list(extra))
    srv.admin = admin_port(srv.proc)
    return srv


# ---------------------------------------------------------------- counters


def test_counters_agree_with_traffic_api_and_summary(mg):
    """N requests and M bytes through an HTTP tunnel appear exactly in
    /metrics, in the JSON API and in the server's exit summary."""
    srv = _server(mg)
    svc = http_service(mg, "svc")
    c, host = _http_client(mg, srv, svc.port, subdomain="count",
                           extra=["--inspect-addr", "off"])
    n, sent, got = 25, 0, 0
    for i in range(n):
        body = b"x" * (i * 37)
        s, r, status = raw_request(srv.http_port, host, "/r%d" % i, body)
        assert status == 200
        sent += s
        got += r
    # a request for a host nobody serves counts in the totals, not the tunnel
    s404, r404, st404 = raw_request(srv.http_port, "nobody." + DOMAIN)
    assert st404 == 404

    def settled():
        m = parse_metrics(scrape(srv.admin))
        v = metric(m, "mgrok_tunnel_bytes_total", public=host, direction="out")
        return m if v == got else None
    m = wait_for(settled, 5)
    assert m, "tunnel bytes out never reached %d\n%s" % (got, scrape(srv.admin))
    assert metric(m, "mgrok_tunnel_bytes_total", public=host, direction="in") == sent
    assert metric(m, "mgrok_tunnel_http_requests_total", public=host, code="2xx") == n
    assert metric(m, "mgrok_http_requests_total", method="POST", code="2xx") == n - 1
    assert metric(m, "mgrok_http_requests_total", method="GET", code="2xx") == 1
    assert metric(m, "mgrok_http_requests_total", method="GET", code="4xx") == 1
    assert metric(m, "mgrok_bytes_total", direction="in") == sent + s404
    assert metric(m, "mgrok_bytes_total", direction="out") == got + r404
    assert metric(m, "mgrok_tunnel_connections_total", public=host) == n
    assert metric(m, "mgrok_tunnel_connections_active", public=host) == 0
    assert metric(m, "mgrok_http_request_duration_seconds_count") == n
    assert metric(m, "mgrok_tunnels", type="http") == 1
    assert metric(m, "mgrok_sessions", state="forwarding") == 1
    info = [k for k in m if k[0] == "mgrok_client_info"]
    assert len(info) == 1 and ("version", "mgrok/0.1.0") in info[0][1], info

    st, tl, _ = api(srv.admin, "/api/v1/tunnels")
    assert st == 200 and len(tl["tunnels"]) == 1, tl
    t = tl["tunnels"][0]
    assert (t["type"], t["state"], t["bytes_in"], t["bytes_out"]) == ("http", "up", sent, got), t
    assert t["http"]["requests"] == n and t["http"]["by_class"]["2xx"] == n, t
    assert t["connections"] == n and t["public"].startswith("http://" + host), t
    st, one, _ = api(srv.admin, "/api/v1/tunnels/%d" % t["id"])
    assert st == 200 and one["id"] == t["id"] and one["bytes_in"] == sent, one
    assert api(srv.admin, "/api/v1/tunnels/99999")[0] == 404
    st, sl, _ = api(srv.admin, "/api/v1/sessions")
    assert st == 200 and len(sl["sessions"]) == 1, sl
    sess = sl["sessions"][0]
    # the session's figure is the sum of its tunnels': one truth
    assert (sess["bytes_in"], sess["bytes_out"]) == (sent, got), sess
    assert sess["tunnels"] == [t["id"]] and sess["state"] == "forwarding", sess
    assert sess["version"].startswith("mgrok/") and len(sess["client_id"]) == 32, sess
    st, info, _ = api(srv.admin, "/api/v1/info")
    assert st == 200 and info["tunnels"] == 1 and info["sessions"] == 1, info
    assert info["version"] == "0.1.0" and info["uptime_s"] >= 0, info

    srv.proc.signal(signal.SIGTERM)
    assert srv.proc.wait(10) is not None, mg.logs()
    err = srv.proc.stderr()
    summ = re.search(r"summary: .* (\d+) bytes in, (\d+) bytes out", err)
    assert summ, err[-3000:]
    assert (int(summ.group(1)), int(summ.group(2))) == (sent + s404, got + r404), summ.group(0)
    assert re.search(r"summary: http %d requests" % (n + 1), err), err[-3000:]
    # the tunnel's own line as it ended
    assert re.search(r"http %s: %d requests, %d 2xx.*%d bytes in, %d out"
                     % (re.escape(host), n, n, sent, got), err), err[-3000:]


def test_tcp_bytes_count_while_the_connection_is_open(mg):
    """TCP tunnels count per tunnel, and the JSON API shows open connections."""
    srv = _server(mg)
    svc = mg.echo_service()
    c = mg.tcp_client(svc.port, srv.proc, extra=["--inspect-addr", "off"])
    _, _, port, _ = mg.wait_forward(c)[0]
    s = connect(port)
    payload = os.urandom(100000)
    s.sendall(payload)
    got = b""
    while len(got) < len(payload):
        got += s.recv(65536)
    st, tl, _ = api(srv.admin, "/api/v1/tunnels")
    t = tl["tunnels"][0]
    assert t["type"] == "tcp" and t["connections_active"] == 1, t
    s.close()

    def done():
        t = api(srv.admin, "/api/v1/tunnels")[1]["tunnels"][0]
        return t if t["connections_active"] == 0 else None
    t = wait_for(done, 5)
    assert t and t["bytes_in"] == 100000 and t["bytes_out"] == 100000, t
    m = parse_metrics(scrape(srv.admin))
    assert metric(m, "mgrok_tunnel_bytes_total", public="tcp/%d" % port, direction="in") == 100000
    assert metric(m, "mgrok_streams_opened_total") == 1


# ---------------------------------------------------------------- auth


def test_admin_off_loopback_needs_auth(mg):
    p = mg.server(extra=["--admin-addr", "0.0.0.0:0"], wait=False)
    assert p.wait(10) == 1, mg.logs()
    err = p.stderr()
    assert "not on loopback" in err and "--admin-token" in err, err


def test_admin_token(mg):
    token = "adm-" + os.urandom(6).hex()
    srv = _server(mg, extra=["--admin-token", token])
    for path in ("/metrics", "/api/v1/info", "/api/v1/sessions", "/"):
        st, body, hdr = api(srv.admin, path)
        assert st == 401, (path, st, body)
        assert "Bearer" in hdr.get("WWW-Authenticate", ""), hdr
        assert api(srv.admin, path, token=token + "x")[0] == 401
    st, info, _ = api(srv.admin, "/api/v1/info", token=token)
    assert st == 200 and info["version"], info
    assert "mgrok_sessions_total" in scrape(srv.admin, token=token)
    # curl, as an operator would
    r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                        "-H", "Authorization: Bearer " + token,
                        "http://%s:%d/healthz" % (HOST, srv.admin)],
                       capture_output=True, text=True, timeout=20)
    assert r.stdout == "200", r


def test_admin_client_certificates(mg):
    pki = make_pki(mg, "pki-admin", "127.0.0.1,localhost")
    srv = _server(mg, extra=["--admin-addr", "%s:0" % HOST, "--admin-cert", pki.server_pem,
                             "--admin-key", pki.server_key, "--admin-client-ca", pki.ca_pem])
    url = "https://127.0.0.1:%d/api/v1/info" % srv.admin
    ok = subprocess.run(["curl", "-sS", "--cacert", pki.ca_pem, "--cert", pki.client_pem,
                         "--key", pki.client_key, url], capture_output=True, text=True,
                        timeout=20)
    assert ok.returncode == 0 and json.loads(ok.stdout)["version"], ok
    no = subprocess.run(["curl", "-sS", "--cacert", pki.ca_pem, url],
                        capture_output=True, text=True, timeout=20)
    assert no.returncode != 0, no


def test_admin_rebinding_and_cross_origin_guards(mg):
    srv = _server(mg)
    st, body, _ = api(srv.admin, "/api/v1/info", host="evil.example")
    assert st == 403, (st, body)
    st, body, _ = api(srv.admin, "/api/v1/reload", method="POST", body={},
                      headers={"Origin": "http://evil.example"})
    assert st == 403, (st, body)


# ---------------------------------------------------------------- actions and events


class Sse:
    """Reads a text/event-stream in a thread: self.events is a list of
    (event, data dict)."""

    def __init__(self, port, path="/api/v1/events"):
        self.sock = connect(port)
        self.sock.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                           "Accept: text/event-stream\r\n\r\n" % (path, port)).encode())
        self.events = []
        self.head = b""
        self._buf = b""
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        raw = b""
        self.sock.settimeout(60)
        try:
            while b"\r\n\r\n" not in raw:
                d = self.sock.recv(65536)
                if not d:
                    return
                raw += d
            self.head, rest = raw.split(b"\r\n\r\n", 1)
            body = rest
            # chunked: strip chunk sizes by parsing
            while True:
                while b"\r\n" not in body:
                    d = self.sock.recv(65536)
                    if not d:
                        return
                    body += d
                size_line, body = body.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    return
                while len(body) < size + 2:
                    d = self.sock.recv(65536)
                    if not d:
                        return
                    body += d
                self._feed(body[:size])
                body = body[size + 2:]
        except OSError:
            return

    def _feed(self, data):
        self._buf += data
        while b"\n\n" in self._buf:
            block, self._buf = self._buf.split(b"\n\n", 1)
            ev, dat = None, None
            for line in block.decode().split("\n"):
                if line.startswith("event: "):
                    ev = line[7:]
                elif line.startswith("data: "):
                    dat = json.loads(line[6:])
            if ev:
                self.events.append((ev, dat))

    def wait(self, pred, timeout=10):
        return wait_for(lambda: next((e for e in list(self.events) if pred(e)), None),
                        timeout)

    def close(self):
        self.sock.close()


def test_events_kick_and_health(mg):
    srv = _server(mg, extra=["--lease-grace", "0"])
    assert api(srv.admin, "/healthz")[0] == 200
    st, body, _ = api(srv.admin, "/readyz")
    assert st == 200 and "ready" in body, body
    sse = Sse(srv.admin)
    try:
        assert wait_for(lambda: sse.head, 5), "no SSE response head"
        assert b"text/event-stream" in sse.head, sse.head
        svc = http_service(mg, "ev")
        c, host = _http_client(mg, srv, svc.port, subdomain="ev",
                               extra=["--inspect-addr", "off", "--no-reconnect"])
        up = sse.wait(lambda e: e[0] == "tunnel_up")
        assert up and up[1]["name"] and up[1]["tunnel_type"] == "http", sse.events
        conn = sse.wait(lambda e: e[0] == "session_connected")
        assert conn and len(conn[1]["client_id"]) == 32, sse.events
        raw_request(srv.http_port, host, "/hello")
        rq = sse.wait(lambda e: e[0] == "request")
        assert rq and rq[1]["uri"] == "/hello" and rq[1]["status"] == 200, sse.events
        # bytes that are not UTF-8 in a URI reach the feed as U+FFFD, with
        # every other field still there
        s = connect(srv.http_port)
        s.sendall(b"GET /bad\xff\xfe HTTP/1.1\r\nHost: " + host.encode() +
                  b"\r\nConnection: close\r\n\r\n")
        recv_until_eof(s)
        s.close()
        bad = sse.wait(lambda e: e[0] == "request" and e[1].get("uri", "").startswith("/bad"))
        assert bad and bad[1]["uri"] == "/bad\ufffd\ufffd", sse.events
        assert bad[1]["method"] == "GET" and bad[1]["name"] == up[1]["name"], bad
        sid = api(srv.admin, "/api/v1/sessions")[1]["sessions"][0]["id"]
        assert api(srv.admin, "/api/v1/sessions/%d?reason=maintenance" % sid,
                   method="DELETE")[0] == 200
        assert api(srv.admin, "/api/v1/sessions/%d" % sid, method="DELETE")[0] == 404
        k = sse.wait(lambda e: e[0] == "session_kicked")
        assert k and k[1]["session"] == sid and "maintenance" in k[1]["reason"], sse.events
        # the client is told why
        assert wait_for(lambda: "kicked by an operator: maintenance" in c.stderr(), 5), c.log()
        down = sse.wait(lambda e: e[0] == "tunnel_down")
        assert down and down[1]["name"] == up[1]["name"], sse.events
        assert down[1]["tunnel_type"] == "http" and down[1]["reason"], down
    finally:
        sse.close()
    # a late subscriber gets the kept events after ?since=
    late = Sse(srv.admin, "/api/v1/events?since=0")
    try:
        assert late.wait(lambda e: e[0] == "session_kicked"), late.events
    finally:
        late.close()


def test_reload_through_the_api(mg, tmp_path):
    cfg = tmp_path / "server.yml"
    http_port = pick_free_port()
    cfg.write_text("tokens: [%s]\ndomain: %s\nhttp_addr: \"%s:%d\"\n"
                   "admin_addr: \"%s:0\"\n" % (mg.token, DOMAIN, HOST, http_port, HOST))
    p = mg.server(extra=["--config", str(cfg)])
    port = admin_port(p)
    cfg.write_text(cfg.read_text() + "max_proxies: 7\n")
    st, body, _ = api(port, "/api/v1/reload", method="POST", body={})
    assert st == 200 and body == {"ok": True}, body
    cfg.write_text(cfg.read_text() + "max_proxies: [nonsense\n")
    st, body, _ = api(port, "/api/v1/reload", method="POST", body={})
    assert st == 422 and body["ok"] is False and "does not load" in body["error"], body
    m = parse_metrics(scrape(port))
    assert metric(m, "mgrok_reloads_total", result="refused") >= 1
    assert metric(m, "mgrok_reloads_total", result="applied") >= 1
    st, info, _ = api(port, "/api/v1/info")
    assert info["reload"]["ok"] is False and info["reload"]["error"], info
    assert p.alive()


# ---------------------------------------------------------------- bounds


def test_series_stay_under_the_cap_with_5000_tunnels(mg):
    cap = 200
    srv = _server(mg, extra=["--metrics-max-series", str(cap), "--max-proxies", "6000"])
    pc = PyClient(srv.port, version=2)
    try:
        pc.start()
        _, reply = pc.login_hmac(mg.token.encode(), os.urandom(16),
                                   os.urandom(16))
        assert reply and reply[0] == 0x12, reply
        n = 5000
        for i in range(n):
            pc.send_ctrl(register(3, 0, 80, b"t%d" % i))  # HTTP
        ok = wait_for(lambda: sum(1 for m in list(pc.ctrl) if m[0] == T_REGISTER_OK) >= n
                      or any(m[0] == T_REGISTER_ERR for m in list(pc.ctrl)), 60)
        errs = [m for m in pc.ctrl if m[0] == T_REGISTER_ERR]
        assert ok and not errs, errs[:3]
        text = scrape(srv.admin)
        m = parse_metrics(text)
        per_family = {}
        for (name, ls) in m:
            per_family.setdefault(name, 0)
            per_family[name] += 1
        # each family with per-tunnel labels: at most the cap plus "other"
        for fam in ("mgrok_tunnel_connections_total", "mgrok_tunnel_connections_active"):
            assert per_family[fam] <= cap + 1, (fam, per_family[fam])
            assert metric(m, fam, tunnel="other", public="other") is not None
        assert per_family["mgrok_tunnel_bytes_total"] <= cap + 2
        assert per_family["mgrok_tunnel_http_requests_total"] <= cap + 6
        assert metric(m, "mgrok_metrics_series_folded_total") > 0
        assert metric(m, "mgrok_tunnels", type="http") == n
        assert len(text) < 400000, len(text)
    finally:
        pc.close()


def test_udp_tunnel_figures(mg):
    """A UDP tunnel's datagrams, bytes and flows: per tunnel in the JSON API
    and /metrics, added up into the server's totals."""
    from helpers import udp_exchange
    srv = _server(mg)
    svc = mg.udp_service("tag")
    c = mg.udp_client(svc.port, srv.proc, extra=["--inspect-addr", "off"])
    fw = mg.wait_forward(c)
    port = fw[0][2]
    sock = mg.udp_sock()
    n, got = 20, 0
    for i in range(n):
        if udp_exchange(sock, port, b"d%03d" % i, timeout=2.0):
            got += 1
    assert got == n, got

    def tunnel():
        t = api(srv.admin, "/api/v1/tunnels")[1]["tunnels"][0]
        return t if t["udp"]["datagrams_out"] == n else None
    t = wait_for(tunnel, 5)
    assert t, api(srv.admin, "/api/v1/tunnels")
    assert t["type"] == "udp" and t["udp"]["datagrams_in"] == n, t
    assert t["udp"]["flows"] == 1 and t["udp"]["flows_active"] == 1, t
    assert t["bytes_in"] == 4 * n, t
    m = parse_metrics(scrape(srv.admin))
    pub = "udp/%d" % port
    assert metric(m, "mgrok_tunnel_udp_datagrams_total", public=pub, direction="in") == n
    assert metric(m, "mgrok_tunnel_udp_datagrams_total", public=pub, direction="out") == n
    assert metric(m, "mgrok_udp_datagrams_total", direction="in") == n
    assert metric(m, "mgrok_udp_flows_active") == 1
    assert metric(m, "mgrok_tunnel_bytes_total", public=pub, direction="in") == 4 * n
