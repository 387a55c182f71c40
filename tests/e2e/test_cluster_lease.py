"""Names and ports the server chose hold across the nodes of a cluster
(capability 6, CLUSTER: docs/internals/protocol-ext.md). Real
redis-server on loopback, nodes on 127.0.0.2 and 127.0.0.3 with the same
ports. An agent with no --subdomain (a random host name) and one with no
--remote-port (a port the server picked), both with --server n1,n2: kill
-9 of node 1, and on node 2 they have the same host name and the same
port. Only servers with --cluster say so (a server without it makes the
agent ask anew: tests/e2e/test_failover.py). Under a policy that does not
let the agent choose its subdomain, the random name is still its own on
node 2 (its route names its lease owner), and nobody else's."""

import re
import socket
import urllib.request

import pytest

from helpers import HOST, pick_port_range, wait_for
from test_cluster import DOMAIN, node, redis_cmd
from test_groups import Web
from test_rstore import REDIS, Redis

pytestmark = pytest.mark.skipif(REDIS is None, reason="redis-server is not installed")

HOST_RE = re.compile(r"Forwarding http://([a-z0-9]{5})\.%s:" % re.escape(DOMAIN))


def get(addr, http_port, host):
    """GET /x at addr with Host: host; (status, body) or (None, why)."""
    req = urllib.request.Request("http://%s:%d/x" % (addr, http_port),
                                 headers={"Host": host})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except Exception as e:  # noqa: BLE001 - a refused or failed request
        return None, str(e)


def echo(addr, port, data=b"moved"):
    """What the TCP port at addr sends back for data, or None."""
    try:
        s = socket.create_connection((addr, port), timeout=5)
    except OSError:
        return None
    try:
        s.sendall(data)
        return s.recv(len(data))
    except OSError:
        return None
    finally:
        s.close()


def agent(mg, kind, local_port, servers, token, extra=()):
    return mg._client([mg.bin, kind, "%s:%d" % (HOST, local_port), "--server", servers,
                       "--token", token, "--inspect-addr", "off"] + list(extra), None, None)


def random_host(c, timeout=10):
    """The random host name an HTTP agent printed."""
    m = wait_for(lambda: HOST_RE.search(c.stdout()), timeout)
    assert m, c.log()
    return m.group(1) + "." + DOMAIN


def test_failover_keeps_the_random_name_and_the_server_chosen_port(mg):
    redis = Redis(mg)
    base = pick_port_range(10)
    http_port = pick_port_range(1)
    n1 = node(mg, redis, "127.0.0.2", base, http_port, "n1")
    n2 = node(mg, redis, "127.0.0.3", base, http_port, "n2")
    svc = mg.echo_service()
    web = Web("W")
    mg.services.append(web)
    servers = "%s:%d,%s:%d" % (HOST, n1.port, HOST, n2.port)
    h = agent(mg, "http", web.port, servers, mg.token)
    t = agent(mg, "tcp", svc.port, servers, mg.token)
    host = random_host(h)
    port = mg.wait_forward(t)[0][2]
    assert base <= port < base + 10
    assert get("127.0.0.2", http_port, host) == (200, "W /x")
    assert echo("127.0.0.2", port) == b"moved"
    # the nodes say they share state: AuthOK's caps have bit 6 (0x40)
    caps = [int(x, 16) for x in re.findall(r"authenticated \(hmac, .*caps 0x([0-9a-f]+)\)",
                                           n1.stderr())]
    assert len(caps) >= 2 and all(c & 0x40 for c in caps), n1.log()
    e1 = redis_cmd(redis.port, "HGET", "mgrok:route:host:" + host, "epoch")

    n1.kill9()
    # on n2: the same random host name and the same port
    assert wait_for(lambda: get("127.0.0.3", http_port, host) == (200, "W /x"), 15), mg.logs()
    assert wait_for(lambda: echo("127.0.0.3", port) == b"moved", 15), mg.logs()
    for key in ("host:" + host, "tcp:%d" % port):
        rec = redis_cmd(redis.port, "HGET", "mgrok:route:" + key, "node")
        assert b"n2" in rec, (key, rec)
    assert redis_cmd(redis.port, "HGET", "mgrok:route:host:" + host, "epoch") != e1
    # the HTTP URL is the same: said resumed, not printed again
    assert wait_for(lambda: "resumed at http://%s:%d on" % (host, http_port) in h.stderr(),
                    10), h.log()
    assert len(HOST_RE.findall(h.stdout())) == 1, h.log()
    # the TCP one names the port it had (printed again only if the
    # server's address in it changed)
    assert all(f[2] == port for f in t.forwards()), t.log()
    assert "asking for a new one" not in h.stderr() + t.stderr()
    assert h.alive() and t.alive()


def test_no_cluster_no_capability(mg):
    """A server without --cluster does not offer bit 6: an agent moving
    from it asks anew (test_failover.py has the move)."""
    srv = mg.server()
    svc = mg.echo_service()
    t = mg.tcp_client(svc.port, srv, extra=["--inspect-addr", "off"])
    mg.wait_forward(t)
    m = re.search(r"authenticated \(hmac, .*caps 0x([0-9a-f]+)\)", srv.stderr())
    assert m and int(m.group(1), 16) & 0x40 == 0, srv.log()
    assert int(m.group(1), 16) & 0x20, srv.log()  # the agent's other caps are there


def policy_node(mg, redis, cfg, addr, base, http_port, name):
    """A node whose tokens (and their policies) come from the file cfg."""
    srv = mg.spawn("server", [
        mg.bin, "server", "--config", str(cfg), "--addr", "%s:0" % HOST,
        "--bind-addr", addr, "--start-port", str(base), "--end-port", str(base + 9),
        "--http-addr", "%s:%d" % (addr, http_port), "--domain", DOMAIN,
        "--cluster", "redis://127.0.0.1:%d/0" % redis.port, "--node-id", name,
        "--lease-grace", "1", "--log-level", "debug"])
    m = wait_for(lambda: re.search(r"listening on 127\.0\.0\.1:(\d+)", srv.stderr())
                 or (not srv.alive() and "dead"), 10)
    assert m and m != "dead", srv.log()
    srv.port = int(m.group(1))
    assert wait_for(lambda: "cluster: the store is up (node %s)" % name in srv.stderr(), 10), \
        srv.log()
    return srv


def test_a_policy_that_names_subdomains_keeps_the_random_name_its_own(mg, tmp_path):
    """bob may choose only bob-* subdomains; a random name is the server's
    choice. Failing over, bob asks for his random name on node 2: not a
    bob-* name, but its route names bob's lease owner, so it is his. An
    agent asking for a random-looking name that is not its own is
    refused, with the policy's reason."""
    cfg = tmp_path / "tokens.yml"
    cfg.write_text("""
tokens:
  - name: bob
    secret: bob-secret
    allow:
      subdomains: ["bob-*"]
      types: [http]
""")
    redis = Redis(mg)
    base = pick_port_range(10)
    http_port = pick_port_range(1)
    n1 = policy_node(mg, redis, cfg, "127.0.0.2", base, http_port, "n1")
    n2 = policy_node(mg, redis, cfg, "127.0.0.3", base, http_port, "n2")
    web = Web("B")
    mg.services.append(web)
    servers = "%s:%d,%s:%d" % (HOST, n1.port, HOST, n2.port)
    h = agent(mg, "http", web.port, servers, "bob-secret")
    host = random_host(h)
    assert get("127.0.0.2", http_port, host) == (200, "B /x")
    n1.kill9()
    assert wait_for(lambda: get("127.0.0.3", http_port, host) == (200, "B /x"), 15), mg.logs()
    assert wait_for(lambda: "resumed at http://%s" % host in h.stderr(), 10), h.log()
    assert h.alive()
    # another agent of bob (another client id): that name is not its own
    # (in use), nor is a free random-looking one (the policy's reason)
    sub = host.split(".")[0]
    free = "k" + ("wxyz" if sub[1:] != "wxyz" else "mnpq")
    for want, code, why in ((sub, 4, "%s is in use" % host),
                            (free, 5, "does not match bob's subdomains")):
        o = mg.proxy_client("http", web.port, n2, token="bob-secret",
                            extra=["--subdomain", want, "--inspect-addr", "off"])
        assert o.wait(10) == 1, o.log()
        m = re.search(r"cannot register [^:]*: (.*) \(code (\d+)\)", o.stdout() + o.stderr())
        assert m and int(m.group(2)) == code and why in m.group(1), o.log()
    assert "is not this agent's in the cluster" in m.group(1), m.group(1)
    assert redis_cmd(redis.port, "EXISTS", "mgrok:route:host:%s.%s" % (free, DOMAIN)) \
        == b":0\r\n"
    # bob's tunnel is untouched
    assert get("127.0.0.3", http_port, host) == (200, "B /x")


def test_taken_meanwhile_asks_anew(mg, tmp_path):
    """The name node 1 gave is someone else's by the time the agent
    reaches node 2 (here: the record's session rewritten in Redis): the
    agent is refused it there, and asks as its configuration does (a new
    random name) instead of giving up. (Not with a TCP port: node 2 would
    pick the same lowest port, still claimed in Redis, and refuse it; its
    port picker does not look at the cluster's routes yet.)"""
    cfg = tmp_path / "tokens.yml"
    cfg.write_text("""
tokens:
  - name: bob
    secret: bob-secret
    allow:
      subdomains: ["bob-*"]
""")
    redis = Redis(mg)
    base = pick_port_range(10)
    http_port = pick_port_range(1)
    n1 = policy_node(mg, redis, cfg, "127.0.0.2", base, http_port, "n1")
    n2 = policy_node(mg, redis, cfg, "127.0.0.3", base, http_port, "n2")
    web = Web("B")
    mg.services.append(web)
    servers = "%s:%d,%s:%d" % (HOST, n1.port, HOST, n2.port)
    h = agent(mg, "http", web.port, servers, "bob-secret")
    host = random_host(h)
    # n1 refreshes by node and epoch: it keeps the record while it names
    # another lease owner
    assert redis_cmd(redis.port, "HSET", "mgrok:route:host:" + host, "session",
                     "oelsewhere") == b":0\r\n"
    n1.kill9()
    assert wait_for(lambda: len(HOST_RE.findall(h.stdout())) >= 2, 15), h.log()
    host2 = HOST_RE.findall(h.stdout())[-1] + "." + DOMAIN
    assert host2 != host
    assert "asking for a new one" in h.stderr() and "not this agent's" in h.stderr(), h.log()
    assert wait_for(lambda: get("127.0.0.3", http_port, host2) == (200, "B /x"), 10), mg.logs()
    assert h.alive()
