"""Load-balancing groups (issue 15): tunnels of several agents with the
same --group and --group-key share one public side; the server picks the
member per visitor by strategy and weight, keeps a UDP flow on its member,
takes members whose agent reports their service down out (and answers 503
for an HTTP group with none up), and tries a visitor refused by a dead
member again on another one. Members are separate agents (each its own
identity), as on separate machines."""

import json
import re
import socket
import threading
import time
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from helpers import HOST, pick_port_range, wait_for
from test_admin import admin_port, api, metric, parse_metrics, scrape

DOMAIN = "grp.test"


class TagService:
    """A TCP service that answers every connection with its tag and
    closes; .port, .count."""

    def __init__(self, tag):
        self.tag = tag
        self.count = 0
        self.ls = socket.socket()
        self.ls.bind((HOST, 0))
        self.ls.listen(128)
        self.ls.settimeout(0.2)
        self.port = self.ls.getsockname()[1]
        self._stop = threading.Event()
        self._held = []
        self.hold = False
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while not self._stop.is_set():
            try:
                c, _ = self.ls.accept()
            except OSError:
                continue
            self.count += 1
            try:
                c.sendall(self.tag)
            except OSError:
                pass
            if self.hold:
                self._held.append(c)
            else:
                c.close()

    def close(self):
        self._stop.set()
        self.ls.close()
        for c in self._held:
            c.close()


class Web:
    """An HTTP service: GET /healthz answers self.health (200 or 503);
    anything else "TAG PATH"."""

    def __init__(self, tag):
        svc = self
        self.tag = tag
        self.health = 200

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                if self.path == "/healthz":
                    code, body = svc.health, b"health"
                else:
                    code, body = 200, ("%s %s" % (svc.tag, self.path)).encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.srv = ThreadingHTTPServer((HOST, 0), H)
        self.srv.daemon_threads = True
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def _member(mg, kind, port, srv, group, extra=()):
    return mg.proxy_client(kind, port, srv, extra=["--group", group, "--group-key", "k3y",
                                                   "--inspect-addr", "off"] + list(extra))


def _tag_of(port, source=HOST):
    s = socket.socket()
    s.settimeout(5)
    s.bind((source, 0))
    s.connect((HOST, port))
    try:
        return s.recv(10)
    finally:
        s.close()


def _up(c, n=1):
    assert wait_for(lambda: len(c.forwards()) >= n or "Forwarding" in c.stdout()
                    or not c.alive(), 10) and c.alive(), c.log()


def test_tcp_group_strategies_and_weights(mg):
    base = pick_port_range(20)
    srv = mg.server(start_port=base, n_ports=20, extra=["--admin-addr", "127.0.0.1:0"])
    admin = admin_port(srv)
    svcs = [TagService(t) for t in (b"A", b"B", b"C")]
    mg.services.extend(svcs)
    # round robin, equal weights: 300 connections, 100 each
    for s in svcs:
        _up(_member(mg, "tcp", s.port, srv, "rr", ["--remote-port", str(base + 1)]))
    got = Counter(_tag_of(base + 1) for _ in range(300))
    assert got == Counter({b"A": 100, b"B": 100, b"C": 100}), got
    # weights 1, 2, 3: 50, 100, 150
    for s, w in zip(svcs, (1, 2, 3)):
        _up(_member(mg, "tcp", s.port, srv, "weighted",
                    ["--remote-port", str(base + 2), "--group-weight", str(w)]))
    got = Counter(_tag_of(base + 2) for _ in range(300))
    assert got == Counter({b"A": 50, b"B": 100, b"C": 150}), got
    # hash:source_ip: one source, one member; several sources spread
    for s in svcs:
        _up(_member(mg, "tcp", s.port, srv, "sticky",
                    ["--remote-port", str(base + 3), "--group-strategy", "hash:source_ip"]))
    seen = {}
    for i in range(2, 12):
        src = "127.0.0.%d" % i
        tags = {_tag_of(base + 3, src) for _ in range(10)}
        assert len(tags) == 1, (src, tags)
        seen[src] = tags.pop()
    assert len(set(seen.values())) >= 2, seen
    # least_conn: connections held open spread evenly
    for s in svcs:
        s.hold = True
    for s in svcs:
        _up(_member(mg, "tcp", s.port, srv, "least",
                    ["--remote-port", str(base + 4), "--group-strategy", "least_conn"]))
    before = [s.count for s in svcs]
    held = []
    for _ in range(9):
        c = socket.create_connection((HOST, base + 4), timeout=5)
        assert c.recv(1)
        held.append(c)
    assert [s.count - b for s, b in zip(svcs, before)] == [3, 3, 3]
    for c in held:
        c.close()
    # the API: the group, its strategy and members
    st, body, _ = api(admin, "/api/v1/tunnels")
    assert st == 200
    tl = body["tunnels"]
    groups = {t["name"]: t for t in tl if t.get("group", {}).get("role") == "group"}
    assert set(groups) == {"rr", "weighted", "sticky", "least"}, [t["name"] for t in tl]
    assert groups["sticky"]["group"]["strategy"] == "hash:source_ip"
    assert len(groups["rr"]["group"]["members"]) == 3
    members = [t for t in tl if t.get("group", {}).get("group") == "weighted"]
    assert sorted(m["group"]["weight"] for m in members) == [1, 2, 3]
    assert sum(m["connections"] for m in members) == 300


def test_wrong_key_and_mismatches_are_refused(mg):
    base = pick_port_range(10)
    srv = mg.server(start_port=base, n_ports=10)
    a = TagService(b"A")
    mg.services.append(a)
    _up(_member(mg, "tcp", a.port, srv, "pool", ["--remote-port", str(base)]))
    bad = mg.proxy_client("tcp", a.port, srv, extra=["--group", "pool", "--group-key", "nope",
                                                     "--inspect-addr", "off"])
    assert bad.wait(10) == 1, bad.log()
    assert re.search(r"wrong key for group pool \(code 5\)", bad.stderr()), bad.log()
    other = _member(mg, "tcp", a.port, srv, "pool", ["--group-strategy", "least_conn"])
    assert other.wait(10) == 1
    assert "group pool uses strategy round_robin, not least_conn" in other.stderr(), other.log()
    hdr = _member(mg, "tcp", a.port, srv, "p2", ["--group-strategy", "hash:header:X-User"])
    assert hdr.wait(10) == 1
    assert "hash:header is for http groups" in hdr.stderr(), hdr.log()


def _http_srv(mg, extra=()):
    port = pick_port_range(1)
    srv = mg.server(extra=["--domain", DOMAIN, "--http-addr", "%s:%d" % (HOST, port),
                           "--admin-addr", "127.0.0.1:0"] + list(extra))
    assert wait_for(lambda: "http listening on port %d" % port in srv.stderr(), 10), srv.log()
    srv.http_port = port
    return srv


def _get(srv, host, path="/", headers=None, timeout=10):
    req = urllib.request.Request("http://%s:%d%s" % (HOST, srv.http_port, path),
                                 headers=dict({"Host": host}, **(headers or {})))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_http_group_round_robin_and_header_hash(mg):
    srv = _http_srv(mg)
    webs = [Web(t) for t in ("A", "B", "C")]
    mg.services.extend(webs)
    host = "shop." + DOMAIN
    for w in webs:
        _up(_member(mg, "http", w.port, srv, "shop", ["--subdomain", "shop"]))
    got = Counter(_get(srv, host, "/r%d" % i)[1].split()[0] for i in range(300))
    assert got == Counter({"A": 100, "B": 100, "C": 100}), got
    host2 = "cart." + DOMAIN
    for w in webs:
        _up(_member(mg, "http", w.port, srv, "cart",
                    ["--subdomain", "cart", "--group-strategy", "hash:header:X-User"]))
    per_user = {}
    for u in range(12):
        tags = {_get(srv, host2, "/", {"X-User": "user%d" % u})[1].split()[0] for _ in range(5)}
        assert len(tags) == 1, (u, tags)
        per_user[u] = tags.pop()
    assert len(set(per_user.values())) >= 2, per_user


def test_udp_flow_stays_on_its_member(mg):
    base = pick_port_range(5)
    srv = mg.server(start_port=base, n_ports=5)
    a, b = mg.udp_service(mode="echo"), mg.udp_service(mode="echo")
    for s in (a, b):
        _up(_member(mg, "udp", s.port, srv, "dns", ["--remote-port", str(base)]))
    socks = []
    for i in range(4):
        u = mg.udp_sock()
        u.settimeout(2)
        socks.append(u)
    for rnd in range(5):
        for i, u in enumerate(socks):
            u.sendto(b"flow %d datagram %d" % (i, rnd), (HOST, base))
            assert u.recv(100) == b"flow %d datagram %d" % (i, rnd)
    # each flow's datagrams all reached one service; the flows spread
    by_flow = {}
    for svc, name in ((a, "a"), (b, "b")):
        for addr, d in list(svc.received):
            by_flow.setdefault(d.split(b" datagram")[0], set()).add(name)
    assert len(by_flow) == 4 and all(len(v) == 1 for v in by_flow.values()), by_flow
    assert {next(iter(v)) for v in by_flow.values()} == {"a", "b"}, by_flow


def test_health_takes_members_out_and_503_when_none(mg):
    srv = _http_srv(mg)
    a, b = Web("A"), Web("B")
    mg.services.extend([a, b])
    host = "svc." + DOMAIN
    hc = ["--subdomain", "svc", "--health", "http", "--health-path", "/healthz",
          "--health-interval", "0.2s", "--health-fall", "2", "--health-rise", "2"]
    for w in (a, b):
        _up(_member(mg, "http", w.port, srv, "svc", hc))
    assert wait_for(lambda: srv.stderr().count("health: up") >= 2, 10), srv.log()
    a.health = 503
    t0 = time.monotonic()
    assert wait_for(lambda: "health: down (HTTP 503)" in srv.stderr(), 5), srv.log()
    assert time.monotonic() - t0 < 0.2 * 2 + 1.5
    assert {_get(srv, host, "/x%d" % i)[1].split()[0] for i in range(20)} == {"B"}
    b.health = 503
    assert wait_for(lambda: srv.stderr().count("health: down (HTTP 503)") >= 2, 5), srv.log()
    st, body = _get(srv, host, "/none")
    assert st == 503 and "No member of group svc" in body, (st, body)
    a.health = 200
    assert wait_for(lambda: _get(srv, host, "/back")[1].startswith("A "), 5), srv.log()
    m = parse_metrics(scrape(srv.admin if hasattr(srv, "admin") else admin_port(srv)))
    assert metric(m, "mgrok_connections_refused_total", reason="service_down") >= 1
    assert metric(m, "mgrok_health_reports_total", state="down") >= 2


def test_killed_member_loses_no_request(mg):
    """A member's agent killed with kill -9 in the middle of a loop of 200
    short requests: the ones it had taken are tried on another member
    (its session's end is seen at once), none fails."""
    srv = _http_srv(mg)
    webs = [Web(t) for t in ("A", "B", "C")]
    mg.services.extend(webs)
    host = "kill." + DOMAIN
    agents = [_member(mg, "http", w.port, srv, "kill", ["--subdomain", "kill"]) for w in webs]
    for c in agents:
        _up(c)
    failed, seen = 0, Counter()
    for i in range(200):
        if i == 60:
            agents[0].kill9()
        st, body = _get(srv, host, "/k%d" % i)
        if st != 200:
            failed += 1
        else:
            seen[body.split()[0]] += 1
    assert failed == 0, (failed, seen, srv.log())
    assert seen["A"] >= 15 and seen["B"] > 60 and seen["C"] > 60, seen


def test_dashboard_shows_group_and_health(mg, browser):
    """The dashboard in headless Chromium: the group's row (strategy,
    members up) and each member's health, which turns down with the reason
    of the last failure when the agent reports it, without a reload."""
    from selenium.webdriver.common.by import By
    from browser import wait_until
    srv = _http_srv(mg)
    a, b = Web("A"), Web("B")
    mg.services.extend([a, b])
    hc = ["--subdomain", "dash", "--health", "http", "--health-path", "/healthz",
          "--health-interval", "0.2s", "--health-fall", "2", "--health-rise", "2"]
    for w in (a, b):
        _up(_member(mg, "http", w.port, srv, "dash", hc))
    drv = browser
    drv.get("http://127.0.0.1:%d/" % admin_port(srv))

    def row(d, name):
        for r in d.find_elements(By.CSS_SELECTOR, "#tunnels tr[data-tunnel-id]"):
            if r.get_attribute("data-tunnel-name") == name:
                return r
        return None
    wait_until(drv, lambda d: row(d, "dash") is not None and "2/2 members up" in row(d, "dash").text,
               15, what="the group's row with 2 members up")
    wait_until(drv, lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-health=up]")) == 2, 15,
               what="two members up")
    a.health = 503
    wait_until(drv, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-health=down]"), 15,
               what="a member down")
    wait_until(drv, lambda d: "HTTP 503" in d.find_element(By.ID, "tunnels").text and
               "1/2 members up" in row(d, "dash").text, 15, what="the reason and the group's count")


def test_tcp_refused_member_retried_then_taken_out(mg):
    """A member whose local service is gone refuses its streams
    (StreamReject): each such visitor is tried again on the other member
    invisibly (none fails), and after 3 refusals in a row the member is
    taken out for a while (no more retries needed). A member killed with
    kill -9 mid-loop costs no connection either."""
    base = pick_port_range(5)
    srv = mg.server(start_port=base, n_ports=5, extra=["--admin-addr", "127.0.0.1:0"])
    admin = admin_port(srv)
    a, b, c = TagService(b"A"), TagService(b"B"), TagService(b"C")
    mg.services.extend([a, b, c])
    agents = [_member(mg, "tcp", s.port, srv, "tcp", ["--remote-port", str(base)])
              for s in (a, b, c)]
    for x in agents:
        _up(x)
    a.close()  # A's service is gone: its agent refuses
    got = Counter(_tag_of(base) for _ in range(60))
    assert set(got) == {b"B", b"C"} and sum(got.values()) == 60, got
    m = parse_metrics(scrape(admin))
    assert metric(m, "mgrok_group_retries_total") >= 3, m
    assert metric(m, "mgrok_group_ejections_total") >= 1
    assert "streams refused in a row: taken out for 5 s" in srv.stderr()
    # kill -9 of C's agent in a loop of short connections: none is lost
    failed = 0
    for i in range(100):
        if i == 30:
            agents[2].kill9()
        try:
            if _tag_of(base) not in (b"B", b"C"):
                failed += 1
        except OSError:
            failed += 1
    assert failed == 0, (failed, srv.log())
