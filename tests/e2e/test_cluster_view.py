"""The whole cluster seen from any node (GET /api/v1/cluster and the
dashboard's Cluster section): a real redis-server, nodes on 127.0.0.2 and
127.0.0.3 with the same ports, agents on the first node; the second node's
view lists both nodes with their session and tunnel counts and the routes
with their owner and epoch; a route released disappears; a server outside
a cluster answers 404; the store down is a 503 naming why; a request whose
client went away, or a node stopped while a view is read, leave nothing
behind (the ASan build checks); more routes than the bound say truncated."""

import json
import signal
import socket
import time

import pytest

from helpers import HOST, pick_port_range, wait_for
from test_admin import admin_port, api
from test_rstore import REDIS, Redis

pytestmark = pytest.mark.skipif(REDIS is None, reason="redis-server is not installed")
DOMAIN = "cv.test"


def node(mg, redis, addr, base, http_port, name, node_port):
    srv = mg.server(start_port=base, n_ports=10, extra=[
        "--bind-addr", addr, "--http-addr", "%s:%d" % (addr, http_port), "--domain", DOMAIN,
        "--cluster", "redis://127.0.0.1:%d/0" % redis.port, "--node-id", name,
        "--node-addr", "%s:%d" % (addr, node_port),
        "--lease-grace", "1", "--admin-addr", "127.0.0.1:0"])
    assert wait_for(lambda: "cluster: the store is up (node %s)" % name in srv.stderr(), 10), \
        srv.log()
    srv.admin = admin_port(srv)
    return srv


def view(srv):
    st, j, _ = api(srv.admin, "/api/v1/cluster")
    assert st == 200, (st, j)
    return j


def two_nodes(mg):
    redis = Redis(mg)
    base = pick_port_range(10)
    http_port = pick_port_range(1)
    node_port = pick_port_range(1)
    n1 = node(mg, redis, "127.0.0.2", base, http_port, "n1", node_port)
    n2 = node(mg, redis, "127.0.0.3", base, http_port, "n2", node_port)
    return redis, base, node_port, n1, n2


def send_resp(port, cmds):
    """Pipeline cmds (lists of str) on one connection; wait for every answer."""
    s = socket.create_connection((HOST, port), timeout=10)
    try:
        out = bytearray()
        for args in cmds:
            out += b"*%d\r\n" % len(args)
            for a in args:
                a = a.encode()
                out += b"$%d\r\n%s\r\n" % (len(a), a)
        s.sendall(bytes(out))
        got, lines = b"", 0
        while lines < len(cmds):  # every answer here is one line
            chunk = s.recv(1 << 16)
            assert chunk, "redis closed the connection"
            got += chunk
            lines = got.count(b"\r\n")
        return got
    finally:
        s.close()


def agents(mg, n1, base):
    svc = mg.echo_service()
    h = mg.proxy_client("http", svc.port, n1, extra=["--subdomain", "shop", "--inspect-addr", "off"])
    t = mg.tcp_client(svc.port, n1, remote_port=base + 3, extra=["--inspect-addr", "off"])
    mg.wait_forward(h)
    assert mg.wait_forward(t)[0][2] == base + 3
    return h, t


def test_cluster_view_from_any_node(mg):
    redis, base, node_port, n1, n2 = two_nodes(mg)
    h, t = agents(mg, n1, base)
    host_key = "mgrok:route:host:shop." + DOMAIN
    tcp_key = "mgrok:route:tcp:%d" % (base + 3)

    # the counts come with the next heartbeat (every 2 s)
    def ready():
        j = view(n2)
        n = {x["id"]: x for x in j["nodes"]}
        return j if set(n) == {"n1", "n2"} and n["n1"]["sessions"] == 2 and \
            n["n1"]["tunnels"] == 2 and len(j["routes"]) == 2 else None
    j = wait_for(ready, 10)
    assert j, view(n2)
    assert j["node"] == "n2" and j["store"]["up"] is True and j["truncated"] is False, j
    assert isinstance(j["store"]["rtt_us"], int)
    nodes = {x["id"]: x for x in j["nodes"]}
    assert [x["id"] for x in j["nodes"]] == ["n1", "n2"]
    assert nodes["n1"]["self"] is False and nodes["n2"]["self"] is True
    assert nodes["n1"]["addr"] == "127.0.0.2:%d" % node_port
    assert nodes["n2"]["addr"] == "127.0.0.3:%d" % node_port
    assert nodes["n2"]["sessions"] == 0 and nodes["n2"]["tunnels"] == 0
    now = time.time()
    for n in nodes.values():
        assert abs(n["started"] - now) < 60 and 0 <= n["age_s"] < 60, n
        assert 0 < n["ttl_ms"] <= 6000, n
    assert j["sessions_by_node"] == {"n1": 2, "n2": 0}
    routes = {r["key"]: r for r in j["routes"]}
    assert sorted(routes) == sorted([host_key, tcp_key]), j["routes"]
    assert routes[host_key]["kind"] == "host" and routes[host_key]["name"] == "shop." + DOMAIN
    assert routes[tcp_key]["kind"] == "tcp" and routes[tcp_key]["name"] == str(base + 3)
    for r in routes.values():
        assert r["node"] == "n1", r
        assert isinstance(r["epoch"], int) and r["epoch"] > 10 ** 15, r  # from Redis's clock, us
        assert 0 < r["ttl_ms"] <= 6000, r
    assert routes[host_key]["epoch"] != routes[tcp_key]["epoch"]
    # the same records from the owner's side, with itself marked
    j1 = view(n1)
    assert j1["node"] == "n1"
    assert {x["id"]: x["self"] for x in j1["nodes"]} == {"n1": True, "n2": False}
    assert {r["key"]: r["epoch"] for r in j1["routes"]} == \
        {k: r["epoch"] for k, r in routes.items()}
    # the node record keeps its first fields (load is the sessions)
    rec = send_resp(redis.port, [["HGET", "mgrok:node:n1", "load"]])
    assert rec.endswith(b"2\r\n"), rec

    # the TCP tunnel ends: its route goes (after the lease's 1 s grace),
    # and the node's count follows at its next heartbeat
    t.stop()
    assert wait_for(lambda: [r["key"] for r in view(n2)["routes"]] == [host_key], 10), view(n2)
    assert wait_for(lambda: {x["id"]: (x["sessions"], x["tunnels"]) for x in view(n2)["nodes"]}
                    == {"n1": (1, 1), "n2": (0, 0)}, 10), view(n2)

    # a server outside any cluster: 404 with a JSON error
    solo = mg.server(extra=["--admin-addr", "127.0.0.1:0"])
    st, body, hdrs = api(admin_port(solo), "/api/v1/cluster")
    assert st == 404 and "not in a cluster" in body["error"], (st, body)
    assert "json" in hdrs.get("Content-Type", "")
    st, info, _ = api(admin_port(solo), "/api/v1/info")
    assert st == 200 and info["cluster"] is None


def test_cluster_view_store_down_and_gone_clients(mg):
    redis, base, node_port, n1, n2 = two_nodes(mg)
    assert wait_for(lambda: len(view(n2)["nodes"]) == 2, 10)

    # Redis stopped (SIGSTOP): the views' commands get no answer. Four
    # reads at once, then a fifth is refused at once; three clients go
    # away (answered to nobody, without harm: the ASan build checks); the
    # fourth is told of the timeout
    redis.proc.signal(signal.SIGSTOP)
    try:
        socks = []
        for _ in range(4):
            s = socket.create_connection((HOST, n2.admin), timeout=15)
            s.sendall(b"GET /api/v1/cluster HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % n2.admin)
            socks.append(s)
        time.sleep(0.3)
        t0 = time.monotonic()
        st, j, hdrs = api(n2.admin, "/api/v1/cluster")
        assert st == 503 and "being read already" in j["error"], (st, j)
        assert hdrs.get("Retry-After") == "1" and time.monotonic() - t0 < 1
        for s in socks[:3]:
            s.close()
        t0 = time.monotonic()
        got = b""
        while b"\r\n\r\n" not in got or not got.rstrip().endswith(b"}"):
            c = socks[3].recv(4096)
            if not c:
                break
            got += c
        socks[3].close()
        assert time.monotonic() - t0 < 8
        head, _, body = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 "), got
        j = json.loads(body)
        assert j["node"] == "n2" and ("timeout" in j["error"] or "timed out" in j["error"]), j
        assert j["store"]["up"] is False, j
        # then the store is down (redone, and Redis still stopped): at once
        assert wait_for(lambda: "unreachable" in api(n2.admin, "/api/v1/cluster")[1]["error"],
                        10)
    finally:
        redis.proc.signal(signal.SIGCONT)
    assert wait_for(lambda: api(n2.admin, "/api/v1/cluster")[0] == 200, 20), n2.log()

    # Redis killed: 503 naming why, at once
    redis.kill9()
    assert wait_for(lambda: "cluster: the store is unreachable" in n1.stderr(), 10), n1.log()
    st, j, _ = api(n1.admin, "/api/v1/cluster")
    assert st == 503, (st, j)
    assert j["error"].startswith("the cluster store is unreachable: "), j
    assert len(j["error"]) > len("the cluster store is unreachable: ") + 3, j
    assert j["store"] == {"up": False, "error": j["error"][len("the cluster store is unreachable: "):]}
    redis.start()
    assert wait_for(lambda: api(n1.admin, "/api/v1/cluster")[0] == 200, 20), n1.log()
    assert wait_for(lambda: len(view(n1)["nodes"]) == 2, 10), view(n1)

    # a node stopped while a view is being read (Redis paused again): it
    # ends cleanly, its client gets an answer or a closed connection
    redis.proc.signal(signal.SIGSTOP)
    try:
        s = socket.create_connection((HOST, n1.admin), timeout=10)
        s.sendall(b"GET /api/v1/cluster HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % n1.admin)
        time.sleep(0.3)
        n1.signal(signal.SIGTERM)
        assert n1.wait(20) == 0, n1.log()
        got = b""
        try:
            while True:
                c = s.recv(4096)
                if not c:
                    break
                got += c
        except OSError:
            pass
        s.close()
        assert got == b"" or b" 503 " in got.split(b"\r\n")[0], got
    finally:
        redis.proc.signal(signal.SIGCONT)


def test_cluster_view_bounded(mg):
    """More route records than the view lists (10000): truncated; a key
    that is not a hash under the prefix is skipped; records without a TTL
    show null."""
    redis = Redis(mg)
    base = pick_port_range(10)
    n1 = node(mg, redis, "127.0.0.2", base, pick_port_range(1), "n1", pick_port_range(1))
    cmds = [["HSET", "mgrok:route:host:h%05d.x" % i, "node", "zz", "session", "s",
             "epoch", str(1000 + i)] for i in range(10005)]
    cmds.append(["SET", "mgrok:route:junk", "not a hash"])
    send_resp(redis.port, cmds)
    j = view(n1)
    assert j["truncated"] is True
    # 10000 keys read (the junk one among them, maybe)
    assert 9999 <= len(j["routes"]) <= 10000, len(j["routes"])
    r = j["routes"][0]
    assert r["node"] == "zz" and r["kind"] == "host" and r["ttl_ms"] is None, r
    assert r["epoch"] == 1000 + int(r["name"][1:6]), r
    assert [x["id"] for x in j["nodes"]] == ["n1"]
    # fewer: all of them, the junk key skipped
    send_resp(redis.port, [["DEL"] + ["mgrok:route:host:h%05d.x" % i for i in range(10)]])
    j = view(n1)
    assert j["truncated"] is False and len(j["routes"]) == 9995, len(j["routes"])
    assert all(r["key"] != "mgrok:route:junk" for r in j["routes"])


def test_cluster_dashboard(mg, browser):
    from browser import console_errors, screenshot, wait_until
    from selenium.webdriver.common.by import By
    redis, base, node_port, n1, n2 = two_nodes(mg)
    agents(mg, n1, base)
    drv = browser
    drv.get("http://127.0.0.1:%d/" % n2.admin)

    def node_rows(d):
        return {r.get_attribute("data-node-id"): r
                for r in d.find_elements(By.CSS_SELECTOR, "#cluster-nodes tr[data-node-id]")}

    def route_rows(d):
        return {r.get_attribute("data-route-key"): r
                for r in d.find_elements(By.CSS_SELECTOR, "#cluster-routes tr[data-route-key]")}

    wait_until(drv, lambda d: d.find_element(By.ID, "cluster").is_displayed(), 15,
               what="the cluster section")
    wait_until(drv, lambda d: set(node_rows(d)) == {"n1", "n2"}, 15, what="both nodes")
    wait_until(drv, lambda d: len(route_rows(d)) == 2, 15, what="both routes")
    # the counts come with the heartbeat; the page refreshes by itself
    wait_until(drv, lambda d: node_rows(d)["n1"].find_elements(By.CSS_SELECTOR, "td")[2].text
               == "2", 15, what="n1's two sessions")
    nodes = node_rows(drv)
    assert nodes["n2"].get_attribute("data-self") == "1"
    assert nodes["n1"].get_attribute("data-self") == "0"
    assert "this node" in nodes["n2"].text and "this node" not in nodes["n1"].text
    assert "127.0.0.2:%d" % node_port in nodes["n1"].text
    api_routes = {r["key"]: r for r in view(n2)["routes"]}
    for key, row in route_rows(drv).items():
        assert row.get_attribute("data-owner") == "n1"
        cells = [c.text for c in row.find_elements(By.CSS_SELECTOR, "td")]
        assert cells[0] == api_routes[key]["kind"] and cells[1] == api_routes[key]["name"], cells
        assert cells[2] == "n1" and cells[3] == str(api_routes[key]["epoch"]), cells
    screenshot(drv, "dashboard-cluster")
    errs = [e for e in console_errors(drv) if "401" not in e["message"]]
    assert not errs, errs

    # a server outside a cluster: no such section
    solo = mg.server(extra=["--admin-addr", "127.0.0.1:0"])
    drv.get("http://127.0.0.1:%d/" % admin_port(solo))
    wait_until(drv, lambda d: d.find_element(By.ID, "version").text.strip() != "", 15,
               what="the page loaded")
    time.sleep(0.5)
    assert not drv.find_element(By.ID, "cluster").is_displayed()
