"""A cluster of servers sharing their routes in Redis (issue 16, first
part: route claims). Real redis-server on loopback, nodes on 127.0.0.2
and 127.0.0.3 with the same public ports: a route (host name or port) is
owned by one node at a time; two agents asking for one subdomain on two
nodes at the same instant: exactly one wins, the other is told which node
has it; with Redis down a registration gets a clear error and succeeds
once Redis is back; a Redis restarted empty gets every route asserted
again. (Forwarding visitors between nodes is the next part.)"""

import re
import socket
import time

import pytest

from helpers import HOST, pick_port_range, wait_for
from test_admin import admin_port, api, metric, parse_metrics, scrape
from test_rstore import REDIS, Redis

pytestmark = pytest.mark.skipif(REDIS is None, reason="redis-server is not installed")
DOMAIN = "cl.test"


def redis_cmd(port, *args):
    """One command through a raw RESP connection; the raw reply."""
    s = socket.create_connection((HOST, port), timeout=5)
    try:
        req = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a)
                                                 for a in (x.encode() for x in args))
        s.sendall(req)
        time.sleep(0.05)
        return s.recv(65536)
    finally:
        s.close()


def node(mg, redis, addr, base, http_port, name):
    srv = mg.server(start_port=base, n_ports=10, extra=[
        "--bind-addr", addr, "--http-addr", "%s:%d" % (addr, http_port), "--domain", DOMAIN,
        "--cluster", "redis://127.0.0.1:%d/0" % redis.port, "--node-id", name,
        "--lease-grace", "1", "--admin-addr", "127.0.0.1:0"])
    assert wait_for(lambda: "cluster: the store is up (node %s)" % name in srv.stderr(), 10), \
        srv.log()
    return srv


def test_one_owner_per_route_and_the_conflict_named(mg):
    redis = Redis(mg)
    base = pick_port_range(10)
    http_port = pick_port_range(1)
    n1 = node(mg, redis, "127.0.0.2", base, http_port, "n1")
    n2 = node(mg, redis, "127.0.0.3", base, http_port, "n2")
    svc = mg.echo_service()
    # two agents, one subdomain, two nodes, at the same instant
    a = mg.proxy_client("http", svc.port, n1, extra=["--subdomain", "shop", "--inspect-addr", "off"])
    b = mg.proxy_client("http", svc.port, n2, extra=["--subdomain", "shop", "--inspect-addr", "off"])
    assert wait_for(lambda: (not a.alive()) or (not b.alive()), 15), mg.logs()
    time.sleep(0.5)
    alive = [c for c in (a, b) if c.alive()]
    dead = [c for c in (a, b) if not c.alive()]
    assert len(alive) == 1 and len(dead) == 1, mg.logs()
    assert "Forwarding http://shop.%s" % DOMAIN in alive[0].stdout()
    loser = "n1" if dead[0] is a else "n2"
    winner = "n2" if loser == "n1" else "n1"
    assert re.search(r"cannot register .*: shop\.%s is in use on node %s \(code 4\)"
                     % (re.escape(DOMAIN), winner), dead[0].stderr()), dead[0].log()
    # the record names the winner; TCP ports likewise
    rec = redis_cmd(redis.port, "HGET", "mgrok:route:host:shop." + DOMAIN, "node")
    assert winner.encode() in rec, rec
    t1 = mg.tcp_client(svc.port, n1, remote_port=base + 3, extra=["--inspect-addr", "off"])
    assert mg.wait_forward(t1)[0][2] == base + 3
    t2 = mg.tcp_client(svc.port, n2, remote_port=base + 3, extra=["--inspect-addr", "off"])
    assert t2.wait(10) == 1
    assert "port %d is in use on node n1 (code 4)" % (base + 3) in t2.stderr(), t2.log()
    # released when its tunnel ends (after its lease's grace, 1 s here):
    # the other node may have it then
    t1.stop()
    assert wait_for(lambda: redis_cmd(redis.port, "EXISTS", "mgrok:route:tcp:%d" % (base + 3))
                    == b":0\r\n", 10)
    t3 = mg.tcp_client(svc.port, n2, remote_port=base + 3, extra=["--inspect-addr", "off"])
    assert mg.wait_forward(t3)[0][2] == base + 3
    # the figures: each node's claims by result, Redis up, in /metrics
    # and /api/v1/info
    conflicts = 0
    for n, name in ((n1, "n1"), (n2, "n2")):
        port = admin_port(n)
        m = parse_metrics(scrape(port))
        assert metric(m, "mgrok_cluster_redis_up") == 1
        assert metric(m, "mgrok_cluster_route_claims_total", result="ok") >= 1
        assert metric(m, "mgrok_cluster_redis_commands_total") > 0
        conflicts += metric(m, "mgrok_cluster_route_claims_total", result="conflict")
        st, info, _ = api(port, "/api/v1/info")
        assert st == 200 and info["cluster"]["node"] == name and info["cluster"]["up"], info
    assert conflicts == 2, conflicts


def test_redis_down_then_back_and_restarted_empty(mg):
    redis = Redis(mg)
    base = pick_port_range(10)
    n1 = node(mg, redis, "127.0.0.2", base, pick_port_range(1), "n1")
    svc = mg.echo_service()
    held = mg.tcp_client(svc.port, n1, remote_port=base + 1, extra=["--inspect-addr", "off"])
    assert mg.wait_forward(held)[0][2] == base + 1
    redis.proc.kill9()
    assert wait_for(lambda: "cluster: the store is unreachable" in n1.stderr(), 10), n1.log()
    # a new registration: a clear error, and it is tried again
    c = mg.tcp_client(svc.port, n1, remote_port=base + 2, extra=["--inspect-addr", "off"])
    assert wait_for(lambda: "cluster state unavailable" in c.stderr(), 10), c.log()
    assert "trying again in 2 s" in c.stderr() and c.alive()
    # the existing tunnel keeps serving meanwhile
    s = socket.create_connection(("127.0.0.2", base + 1), timeout=5)
    s.sendall(b"ping")
    assert s.recv(10) == b"ping"
    s.close()
    # Redis back, empty: the waiting registration succeeds, and the route
    # held before is asserted again
    redis.start()
    assert wait_for(lambda: len(c.forwards()) >= 1, 20), c.log()
    assert c.forwards()[0][2] == base + 2
    assert wait_for(lambda: redis_cmd(redis.port, "EXISTS", "mgrok:route:tcp:%d" % (base + 1))
                    == b":1\r\n", 10), n1.log()
    assert "routes asserted again" in n1.stderr()


def test_failover_keeps_the_subdomain_and_port(mg):
    """kill -9 of the node an agent is on: the agent fails over to the other
    node (--server n1,n2) and claims its routes there, the same subdomain
    and the same port: the claim's session is the agent's lease owner
    (identity and client id), so the record moves with a new epoch instead
    of conflicting with the dead node's until it expires."""
    import urllib.request
    redis = Redis(mg)
    base = pick_port_range(10)
    http_port = pick_port_range(1)
    n1 = node(mg, redis, "127.0.0.2", base, http_port, "n1")
    n2 = node(mg, redis, "127.0.0.3", base, http_port, "n2")
    svc = mg.echo_service()

    from test_groups import Web as GWeb
    web = GWeb("W")
    mg.services.append(web)
    servers = "%s:%d,%s:%d" % (HOST, n1.port, HOST, n2.port)
    h = mg._client([mg.bin, "http", "%s:%d" % (HOST, web.port), "--server", servers,
                    "--token", mg.token, "--subdomain", "shop", "--inspect-addr", "off"],
                   None, None)
    t = mg._client([mg.bin, "tcp", "%s:%d" % (HOST, svc.port), "--server", servers,
                    "--token", mg.token, "--remote-port", str(base + 4), "--inspect-addr", "off"],
                   None, None)
    assert wait_for(lambda: "Forwarding http://shop.%s" % DOMAIN in h.stdout(), 10), h.log()
    assert mg.wait_forward(t)[0][2] == base + 4
    e1 = int(redis_cmd(redis.port, "HGET", "mgrok:route:host:shop." + DOMAIN, "epoch")
             .split(b"\r\n")[1])

    def get(addr):
        req = urllib.request.Request("http://%s:%d/x" % (addr, http_port),
                                     headers={"Host": "shop." + DOMAIN})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.read().decode()
        except Exception as e:  # noqa: BLE001 - a refused or failed request
            return None, str(e)
    assert get("127.0.0.2") == (200, "W /x")
    n1.kill9()
    # on n2 within the back-off: the same subdomain and port
    assert wait_for(lambda: get("127.0.0.3") == (200, "W /x"), 15), mg.logs()
    assert wait_for(lambda: len(t.forwards()) >= 2, 15), t.log()
    assert t.forwards()[-1][2] == base + 4
    s = socket.create_connection(("127.0.0.3", base + 4), timeout=5)
    s.sendall(b"moved")
    assert s.recv(10) == b"moved"
    s.close()
    rec = redis_cmd(redis.port, "HGET", "mgrok:route:host:shop." + DOMAIN, "node")
    assert b"n2" in rec, rec
    e2 = int(redis_cmd(redis.port, "HGET", "mgrok:route:host:shop." + DOMAIN, "epoch")
             .split(b"\r\n")[1])
    assert e2 > e1, (e1, e2)
    assert h.alive() and t.alive()
