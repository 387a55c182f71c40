"""The agent's inspector (docs/api.md, "The agent"): captured HTTP requests
with headers, bodies and status, redaction on and off, replay (as captured,
modified, refused for a truncated body), HAR export, connection records of
a TCP tunnel with exact byte counts, the same counters in /metrics,
/api/tunnels and the exit summary, the store's bound under 10,000 requests,
`mgrok status`, the default port's fallback, `--inspect-addr off`, and a
busy address given by the user."""

import base64
import json
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from helpers import HOST, pick_free_port, wait_for
from test_http import _get, _http_client, _http_server, http_service

INSPECTOR_RE = re.compile(r"inspector: http://127\.0\.0\.1:(\d+)")


def api(port, path, method="GET", body=None, timeout=10):
    """(status, parsed JSON or text) from the inspector at port."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request("http://%s:%d%s" % (HOST, port, path), data=data,
                                 method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw, code, ctype = r.read(), r.status, r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        raw, code, ctype = e.read(), e.code, e.headers.get("Content-Type", "")
    if "json" in ctype and raw:
        return code, json.loads(raw)
    return code, raw.decode("utf-8", "replace")


def metric(text, name, **labels):
    """The value of one sample of the Prometheus text, or None."""
    want = ",".join('%s="%s"' % kv for kv in labels.items())
    line_re = re.compile(r"^%s(\{([^}]*)\})? (\S+)$" % re.escape(name))
    for line in text.splitlines():
        m = line_re.match(line)
        if not m:
            continue
        got = m.group(2) or ""
        if all(('%s="%s"' % kv) in got.split(",") for kv in labels.items()) or \
                (not labels and not got) or got == want:
            return float(m.group(3))
    return None


def agent(mg, srv, svc, extra=(), kind="http", **kw):
    """An HTTP agent with its inspector on a free port: (client, host, iport)."""
    iport = pick_free_port()
    c, host = _http_client(mg, srv, svc.port, extra=["--inspect-addr", "%s:%d" % (HOST, iport)]
                           + list(extra), kind=kind, **kw)
    wait_for(lambda: api(iport, "/healthz")[0] == 200, 5)
    return c, host, iport


def headers_of(msg):
    return {k.lower(): v for k, v in msg["headers"]}


def test_requests_captured_with_bodies_and_redaction(mg):
    srv = _http_server(mg, https=False)
    svc = http_service(mg, "a")
    c, host, ip = agent(mg, srv, svc, subdomain="cap")
    bodies = [("body-%d-" % i).encode() * (i + 1) for i in range(5)]
    for i, b in enumerate(bodies):
        st, _, out = _get(srv.http_port, host, "/up/%d?q=%d" % (i, i), method="POST", body=b,
                          headers={"Authorization": "Bearer s3cret", "Cookie": "k=v",
                                   "X-Test": str(i)})
        assert st == 200, out
    code, j = api(ip, "/api/requests/http")
    assert code == 200
    reqs = j["requests"]
    assert len(reqs) == 5
    # newest first
    for k, r in enumerate(reqs):
        i = 4 - k
        assert re.match(r"^r\d+$", r["id"])
        assert r["tunnel"]
        assert r["remote_addr"] and r["remote_addr"].startswith("127.0.0.1:")
        assert r["replay_of"] is None and r["error"] is None
        assert r["request"]["method"] == "POST"
        assert r["request"]["uri"] == "/up/%d?q=%d" % (i, i)
        assert r["request"]["proto"] == "HTTP/1.1"
        h = headers_of(r["request"])
        assert h["x-test"] == str(i)
        assert h["host"] == host
        assert h["authorization"] == "[redacted]"
        assert h["cookie"] == "[redacted]"
        body = r["request"]["body"]
        assert base64.b64decode(body["base64"]) == bodies[i]
        assert body["size"] == len(bodies[i]) and not body["truncated"]
        assert r["response"]["status"] == 200 and r["response"]["reason"] == "OK"
        rb = json.loads(base64.b64decode(r["response"]["body"]["base64"]))
        assert rb["len"] == len(bodies[i])
        assert r["duration_ms"] >= 0 and r["start"] > 1.6e12
    # one entry, a limit, a tunnel filter
    code, one = api(ip, "/api/requests/http/" + reqs[2]["id"])
    assert code == 200 and one == reqs[2]
    assert len(api(ip, "/api/requests/http?limit=2")[1]["requests"]) == 2
    assert api(ip, "/api/requests/http?tunnel=nope")[1]["requests"] == []
    assert api(ip, "/api/requests/http/r999999")[0] == 404
    # clear
    assert api(ip, "/api/requests/http", method="DELETE")[0] == 204
    assert api(ip, "/api/requests/http")[1]["requests"] == []


def test_capture_secrets_keeps_values(mg):
    srv = _http_server(mg, https=False)
    svc = http_service(mg, "a")
    c, host, ip = agent(mg, srv, svc, subdomain="sec", extra=["--inspect-capture-secrets"])
    st, _, _ = _get(srv.http_port, host, "/", headers={"Authorization": "Bearer s3cret",
                                                      "Cookie": "k=v"})
    assert st == 200
    r = api(ip, "/api/requests/http")[1]["requests"][0]
    h = headers_of(r["request"])
    assert h["authorization"] == "Bearer s3cret" and h["cookie"] == "k=v"


def test_replay_as_captured_modified_and_truncated(mg):
    srv = _http_server(mg, https=False)
    svc = http_service(mg, "a")
    c, host, ip = agent(mg, srv, svc, subdomain="rep", extra=["--inspect-body-max", "200"])
    st, _, _ = _get(srv.http_port, host, "/hook?x=1", method="POST", body=b"hello replay",
                    headers={"X-Orig": "1"})
    assert st == 200
    rid = api(ip, "/api/requests/http")[1]["requests"][0]["id"]
    n_before = len(svc.requests)
    code, e = api(ip, "/api/requests/http", method="POST", body={"id": rid})
    assert code == 201, e
    assert e["replay_of"] == rid and e["response"]["status"] == 200
    assert len(svc.requests) == n_before + 1
    last = svc.last()
    assert last["method"] == "POST" and last["path"] == "/hook?x=1"
    assert dict((k.lower(), v) for k, v in last["headers"])["x-orig"] == "1"
    assert json.loads(base64.b64decode(e["response"]["body"]["base64"]))["len"] == 12
    # modified: method, path, headers, body
    code, e = api(ip, "/api/requests/http", method="POST",
                  body={"id": rid, "method": "PUT", "uri": "/other",
                        "headers": [["Host", host], ["X-New", "yes"]], "body": "changed!"})
    assert code == 201, e
    last = svc.last()
    hdrs = dict((k.lower(), v) for k, v in last["headers"])
    assert last["method"] == "PUT" and last["path"] == "/other"
    assert hdrs["x-new"] == "yes" and "x-orig" not in hdrs
    assert json.loads(base64.b64decode(e["response"]["body"]["base64"]))["len"] == 8
    # the replays are entries of their own, newest first
    reqs = api(ip, "/api/requests/http")[1]["requests"]
    assert [r["replay_of"] for r in reqs[:2]] == [rid, rid]
    # bad input: 400; unknown id: 404
    assert api(ip, "/api/requests/http", method="POST", body={"id": rid, "uri": "x y"})[0] == 400
    assert api(ip, "/api/requests/http", method="POST",
               body={"id": rid, "headers": [["A", "b\r\nC: d"]]})[0] == 400
    assert api(ip, "/api/requests/http", method="POST", body={"id": "r424242"})[0] == 404
    # a body cut at --inspect-body-max cannot be replayed unmodified
    st, _, _ = _get(srv.http_port, host, "/big", method="POST", body=b"z" * 1000)
    assert st == 200
    big = api(ip, "/api/requests/http")[1]["requests"][0]
    assert big["request"]["body"]["truncated"] and big["request"]["body"]["captured"] == 200
    n = len(svc.requests)
    code, e = api(ip, "/api/requests/http", method="POST", body={"id": big["id"]})
    assert code == 409
    assert e["error"] == ("request %s's body was truncated at 200 bytes: it cannot be "
                          "replayed unmodified" % big["id"])
    assert len(svc.requests) == n
    # with a new body it can
    code, e = api(ip, "/api/requests/http", method="POST", body={"id": big["id"], "body": "ok"})
    assert code == 201 and len(svc.requests) == n + 1


def test_har_export(mg):
    srv = _http_server(mg, https=False)
    svc = http_service(mg, "a")
    c, host, ip = agent(mg, srv, svc, subdomain="har")
    for i in range(3):
        assert _get(srv.http_port, host, "/p%d?a=%d" % (i, i), method="POST",
                    body=b"x" * (i + 1))[0] == 200
    code, har = api(ip, "/api/requests/http.har")
    assert code == 200
    log = har["log"]
    assert log["version"] == "1.2" and log["creator"]["name"] == "mgrok"
    assert len(log["entries"]) == 3
    for k, e in enumerate(log["entries"]):
        i = 2 - k
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", e["startedDateTime"])
        assert e["time"] >= 0 and e["cache"] == {}
        assert set(e["timings"]) >= {"send", "wait", "receive"}
        rq, rs = e["request"], e["response"]
        assert rq["method"] == "POST" and rq["url"] == "http://%s/p%d?a=%d" % (host, i, i)
        assert rq["httpVersion"] == "HTTP/1.1"
        assert {"name": "a", "value": str(i)} in rq["queryString"]
        assert rq["postData"]["text"] == "x" * (i + 1)
        assert rq["bodySize"] == i + 1 and rq["headersSize"] > 0
        assert rs["status"] == 200 and rs["statusText"] == "OK"
        assert json.loads(rs["content"]["text"])["len"] == i + 1
        assert rs["content"]["mimeType"] == "application/json"
        assert "redirectURL" in rs and rs["bodySize"] > 0


def _summary_totals(stderr):
    m = re.search(r"summary: .* (\d+) streams \((\d+) active, (\d+) refused\), "
                  r"(\d+) bytes in, (\d+) bytes out", stderr)
    assert m, stderr
    return [int(x) for x in m.groups()]


def test_tcp_connections_and_exact_counters(mg):
    srv, svc = mg.server(), mg.echo_service()
    ip = pick_free_port()
    c = mg.tcp_client(svc.port, srv, extra=["--inspect-addr", "%s:%d" % (HOST, ip)])
    fw = mg.wait_forward(c)
    port = fw[0][2]
    sizes = [1000, 70000, 3]
    for n in sizes:
        s = socket.create_connection((HOST, port), timeout=10)
        data = bytes((i * 7) & 0xFF for i in range(n))
        s.sendall(data)
        got = b""
        while len(got) < n:
            d = s.recv(65536)
            assert d
            got += d
        assert got == data
        s.shutdown(socket.SHUT_WR)
        assert s.recv(10) == b""
        s.close()
    total = sum(sizes)

    def closed():
        cs = api(ip, "/api/connections")[1]["connections"]
        return cs if len(cs) == 3 and not any(x["active"] for x in cs) else None
    conns = wait_for(closed, 10)
    assert conns, api(ip, "/api/connections")
    for x, n in zip(conns, reversed(sizes)):
        assert x["type"] == "tcp" and re.match(r"^c\d+$", x["id"])
        assert x["bytes_in"] == n and x["bytes_out"] == n
        assert x["close_reason"] == "closed" and x["sni"] is None
        assert x["remote_addr"].startswith("127.0.0.1:")
        assert x["duration_ms"] >= 0 and x["start"] > 1.6e12
    # the same counters in /metrics, /api/tunnels and the exit summary
    t = api(ip, "/api/tunnels")[1]["tunnels"]
    assert len(t) == 1 and t[0]["type"] == "tcp" and t[0]["status"] == "online"
    assert t[0]["bytes_in"] == total and t[0]["bytes_out"] == total
    assert t[0]["connections"] == 3 and t[0]["connections_active"] == 0
    text = api(ip, "/metrics")[1]
    name = t[0]["name"]
    assert metric(text, "mgrok_tunnel_bytes_total", tunnel=name, direction="in") == total
    assert metric(text, "mgrok_tunnel_bytes_total", tunnel=name, direction="out") == total
    assert metric(text, "mgrok_tunnel_connections_total", tunnel=name) == 3
    assert metric(text, "mgrok_session_up") == 1
    c.stop()
    streams, active, refused, bin_, bout = _summary_totals(c.stderr())
    assert (streams, active, refused, bin_, bout) == (3, 0, 0, total, total)


def test_http_counters_agree(mg):
    srv = _http_server(mg, https=False)
    svc = http_service(mg, "a")
    c, host, ip = agent(mg, srv, svc, subdomain="cnt")
    n = 7
    for i in range(n):
        assert _get(srv.http_port, host, "/c%d" % i)[0] == 200
    t = api(ip, "/api/tunnels")[1]["tunnels"][0]
    assert t["requests"] == n and t["connections"] == n
    text = api(ip, "/metrics")[1]
    name = t["name"]
    assert metric(text, "mgrok_tunnel_http_requests_total", tunnel=name, method="GET", code="2xx") == n
    assert metric(text, "mgrok_http_request_duration_seconds_count", tunnel=name) == n
    bin_ = metric(text, "mgrok_tunnel_bytes_total", tunnel=name, direction="in")
    bout = metric(text, "mgrok_tunnel_bytes_total", tunnel=name, direction="out")
    assert bin_ == t["bytes_in"] > 0 and bout == t["bytes_out"] > 0
    # the exact bytes the service received are counted (no inspector bytes)
    c.stop()
    err = c.stderr()
    assert "%d requests (%d 2xx" % (n, n) in err, err
    assert "%d bytes in, %d bytes out" % (bin_, bout) in err, err


class FastHttp:
    """A keep-alive HTTP/1.1 origin that answers each request in one write
    (Python's http.server writes head and body apart, and Nagle then waits
    for a delayed ACK: 40 ms a request)."""

    def __init__(self):
        self.ls = socket.socket()
        self.ls.bind((HOST, 0))
        self.ls.listen(16)
        self.port = self.ls.getsockname()[1]
        self.count = 0
        self._t = threading.Thread(target=self._accept, daemon=True)
        self._t.start()

    def _accept(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
                n = int(m.group(1)) if m else 0
                while len(buf) < n:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                buf = buf[n:]
                self.count += 1
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                          b"Content-Length: 2\r\n\r\nok")
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.ls.close()


def _rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_store_stays_bounded_under_10000_requests(mg, mgrok_sanitized):
    srv = _http_server(mg, https=False)
    svc = FastHttp()
    mg.services.append(svc)
    cap = 256 * 1024
    c, host, ip = agent(mg, srv, svc, subdomain="bnd",
                        extra=["--inspect-max-bytes", str(cap)])
    import http.client
    conn = http.client.HTTPConnection(HOST, srv.http_port, timeout=10)
    body = b"b" * 1500
    rss_at = {}
    for i in range(10000):
        conn.request("POST", "/n/%d" % i, body=body, headers={"Host": host})
        r = conn.getresponse()
        r.read()
        assert r.status == 200
        if i in (2000, 9999):
            rss_at[i] = _rss_kb(c.pid)
            text = api(ip, "/metrics")[1]
            assert metric(text, "mgrok_inspect_bytes") <= cap
    conn.close()
    assert svc.count == 10000
    text = api(ip, "/metrics")[1]
    kept = metric(text, "mgrok_inspect_requests")
    assert 0 < kept < 10000
    assert metric(text, "mgrok_inspect_bytes") <= cap
    assert metric(text, "mgrok_inspect_dropped_total") == 10000 - kept
    assert len(api(ip, "/api/requests/http?limit=100000")[1]["requests"]) == kept
    if not mgrok_sanitized:
        # the memory of 8,000 more requests is not kept
        assert rss_at[9999] - rss_at[2000] < 4 * 1024, rss_at


def test_mgrok_status_prints_the_table(mg, mgrok_bin):
    srv = _http_server(mg, https=False)
    svc = http_service(mg, "a")
    c, host, ip = agent(mg, srv, svc, subdomain="st")
    assert _get(srv.http_port, host, "/")[0] == 200
    r = subprocess.run([mgrok_bin, "status", "--inspect-addr", "%s:%d" % (HOST, ip)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "PUBLIC", "LOCAL", "STATUS", "CONNS", "REQS",
                                "IN", "OUT"]
    row = lines[1].split()
    assert row[1] == "http" and row[2] == "http://%s:%d" % (host, srv.http_port)
    assert row[3] == "127.0.0.1:%d" % svc.port and row[4] == "online"
    assert row[5] == "1" and row[6] == "1"
    # nothing there: a clear message, exit 1
    free = pick_free_port()
    r = subprocess.run([mgrok_bin, "status", "--inspect-addr", "%s:%d" % (HOST, free)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
    assert r.returncode == 1
    assert ("no agent inspector at 127.0.0.1:%d" % free) in r.stderr.decode()
    assert "is `mgrok` running with --inspect-addr?" in r.stderr.decode()


def _inspector_port(c, timeout=10):
    return wait_for(lambda: (INSPECTOR_RE.search(c.stderr()) and
                             int(INSPECTOR_RE.search(c.stderr()).group(1))) or
                    ("no inspector" in c.stderr() and -1) or (not c.alive() and -2), timeout)


def test_default_port_falls_back_and_off(mg):
    srv, svc = mg.server(), mg.echo_service()
    a = mg.tcp_client(svc.port, srv)
    mg.wait_forward(a)
    pa = _inspector_port(a)
    if pa == -1:
        pytest.skip("ports 4040-4049 are all taken on this host")
    assert 4040 <= pa <= 4049
    b = mg.tcp_client(svc.port, srv)
    mg.wait_forward(b)
    pb = _inspector_port(b)
    assert pb != pa and (pb == -1 or 4040 <= pb <= 4049), b.stderr()
    if pb == -1:
        assert "no inspector" in b.stderr()
    else:
        assert api(pb, "/healthz")[0] == 200
    assert api(pa, "/readyz")[0] == 200
    # --inspect-addr off: no listener, no line
    o = mg.tcp_client(svc.port, srv, extra=["--inspect-addr", "off"])
    mg.wait_forward(o)
    time.sleep(0.2)
    assert "inspector" not in o.stderr()


def test_busy_explicit_address_fails(mg):
    srv, svc = mg.server(), mg.echo_service()
    s = mg.track(socket.socket())
    s.bind((HOST, 0))
    s.listen(1)
    port = s.getsockname()[1]
    c = mg.tcp_client(svc.port, srv, extra=["--inspect-addr", "%s:%d" % (HOST, port)])
    assert c.wait(10) == 1, c.stderr()
    err = c.stderr()
    assert "inspector" in err and str(port) in err, err


def test_agent_events_carry_their_fields(mg):
    """The agent's event stream: tunnel_up and connection_closed with every
    field of docs/api.md (a json_pack format that did not match its
    arguments once sent them empty)."""
    from test_admin import Sse
    srv, svc = mg.server(), mg.echo_service()
    ip = pick_free_port()
    c = mg.tcp_client(svc.port, srv, extra=["--inspect-addr", "%s:%d" % (HOST, ip)])
    port = mg.wait_forward(c)[0][2]
    sse = Sse(ip, "/api/events?since=0")
    try:
        up = sse.wait(lambda e: e[0] == "tunnel_up")
        assert up, sse.events
        for k in ("tunnel", "name", "tunnel_type", "public", "session", "resumed"):
            assert k in up[1], up
        assert up[1]["tunnel_type"] == "tcp" and up[1]["resumed"] is False, up
        s = socket.create_connection((HOST, port), timeout=10)
        s.sendall(b"x" * 1234)
        got = b""
        while len(got) < 1234:
            got += s.recv(65536)
        s.close()
        cc = sse.wait(lambda e: e[0] == "connection_closed")
        assert cc, sse.events
        d = cc[1]
        assert (d["tunnel_type"], d["bytes_in"], d["bytes_out"]) == ("tcp", 1234, 1234), d
        assert d["remote_addr"].startswith("127.0.0.1:") and d["id"].startswith("c"), d
        assert d["reason"] in ("closed", "reset"), d
    finally:
        sse.close()


def test_inspector_off_loopback_refused(mg):
    """The inspector shows captured requests and replays them: it has no
    token, so it never listens off loopback (checked before binding)."""
    srv, svc = mg.server(), mg.echo_service()
    c = mg.tcp_client(svc.port, srv, extra=["--inspect-addr", "0.0.0.0:0"])
    assert c.wait(10) == 1, c.log()
    assert "not on loopback" in c.stderr() and "--inspect-addr 127.0.0.1" in c.stderr(), c.log()


def test_tls_connection_record_has_the_sni(mg):
    """A TLS tunnel's connection record names the server name its
    ClientHello asked for, peeked by the agent at the stream's start."""
    import shutil
    import ssl
    from helpers import connect, make_pki, recv_until_eof
    openssl = shutil.which("openssl")
    if not openssl:
        pytest.skip("the openssl command is not installed")
    srv = _http_server(mg, https=True)
    origin = make_pki(mg, "pki-origin", "secure.test")
    oport = pick_free_port()
    so = mg.spawn("s_server", [openssl, "s_server", "-accept", "%s:%d" % (HOST, oport),
                               "-cert", origin.server_pem, "-key", origin.server_key,
                               "-www", "-quiet"])
    assert wait_for(lambda: so.alive() and _port_open(oport), 10), mg.logs()
    ip = pick_free_port()
    _http_client(mg, srv, oport, hostname="secure.test", kind="tls",
                 extra=["--inspect-addr", "%s:%d" % (HOST, ip)])
    ctx = ssl.create_default_context(cafile=origin.ca_pem)
    t = ctx.wrap_socket(connect(srv.https_port, timeout=10), server_hostname="secure.test")
    t.sendall(b"GET / HTTP/1.0\r\n\r\n")
    data, _ = recv_until_eof(t, timeout=10)
    t.close()
    assert data.startswith(b"HTTP/1.0 200"), data[:100]

    def rec():
        st, body = api(ip, "/api/connections")[:2]
        return body["connections"] if st == 200 and body["connections"] else None
    conns = wait_for(rec, 10)
    assert conns and conns[0]["type"] == "tls" and conns[0]["sni"] == "secure.test", conns


def _port_open(port):
    try:
        socket.create_connection((HOST, port), timeout=1).close()
        return True
    except OSError:
        return False
