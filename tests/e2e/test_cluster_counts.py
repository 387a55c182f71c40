"""Limits that are counts hold cluster-wide (issue 16): a token's
limits.tunnels and limits.visitors are summed over the nodes of a cluster.
Real redis-server on loopback, two nodes on 127.0.0.2 and 127.0.0.3 with
the same public ports and the same tokens file; gina may hold 2 tunnels
and 3 public connections at once. Each node writes its own figures into
the hash mgrok:count:<hex SHA-256 of the identity> at once on a change
(within a 100 ms tick) and reads the other nodes' sum back with every
heartbeat (2 s): a test waits for the figures in Redis, then for one
heartbeat, before it expects a node to know them."""

import hashlib
import os
import re
import signal
import socket
import time

import pytest

from helpers import HOST, pick_port_range, wait_for
from test_admin import admin_port, metric, parse_metrics, scrape
from test_cluster import redis_cmd
from test_rstore import REDIS, Redis

pytestmark = pytest.mark.skipif(REDIS is None, reason="redis-server is not installed")

SECRET = "gina-secret"
KEY = "mgrok:count:" + hashlib.sha256(b"gina").hexdigest()
BEAT = 2.0
LISTEN_RE = re.compile(r"listening on 127\.0\.0\.1:(\d+)")


def node(mg, redis, cfg, addr, base, name):
    """A node with the tokens file (a --token would replace its tokens)."""
    srv = mg.spawn("server", [
        mg.bin, "server", "--config", str(cfg), "--addr", "%s:0" % HOST,
        "--bind-addr", addr, "--start-port", str(base), "--end-port", str(base + 9),
        "--cluster", "redis://127.0.0.1:%d/0" % redis.port, "--node-id", name,
        "--lease-grace", "1", "--admin-addr", "127.0.0.1:0", "--log-level", "debug"])
    m = wait_for(lambda: LISTEN_RE.search(srv.stderr()) or (not srv.alive() and "dead"), 10)
    assert m and m != "dead", srv.log()
    srv.port = int(m.group(1))
    assert wait_for(lambda: "cluster: the store is up (node %s)" % name in srv.stderr(), 10), \
        srv.log()
    return srv


def cluster(mg, tmp_path):
    cfg = tmp_path / "tokens.yml"
    cfg.write_text("""
tokens:
  - name: gina
    secret: %s
    limits:
      tunnels: 2
      visitors: 3
""" % SECRET)
    redis = Redis(mg)
    base = pick_port_range(10)
    n1 = node(mg, redis, cfg, "127.0.0.2", base, "n1")
    n2 = node(mg, redis, cfg, "127.0.0.3", base, "n2")
    return redis, base, n1, n2


def figures(redis):
    """{(node, field): int} of gina's count hash."""
    raw = redis_cmd(redis.port, "HGETALL", KEY).split(b"\r\n")
    vals = [x.decode() for x in raw[2::2]]  # skip the *N and $len lines
    out = {}
    for f, v in zip(vals[0::2], vals[1::2]):
        n, k = f.rsplit(":", 1)
        out[(n, k)] = int(v)
    return out


def figures_are(redis, **want):
    """gina's figures in Redis are n1=(tunnels, visitors), ... (a node
    absent: no record)"""
    f = figures(redis)
    for n in ("n1", "n2"):
        t, v = want.get(n, (None, None))
        if f.get((n, "tunnels")) != t or f.get((n, "visitors")) != v:
            return False
    return True


def tunnel(mg, svc, srv, port):
    return mg.tcp_client(svc.port, srv, token=SECRET, remote_port=port,
                         extra=["--inspect-addr", "off"])


def refused(c, timeout=10):
    """The agent's 'cannot register' line once it exited 1."""
    assert c.wait(timeout) == 1, c.log()
    m = re.search(r"cannot register [^:]*: (.*) \(code (\d+)\)", c.stdout() + c.stderr())
    assert m, c.log()
    return m.group(1), int(m.group(2))


def test_tunnels_counted_across_nodes(mg, tmp_path):
    redis, base, n1, n2 = cluster(mg, tmp_path)
    svc = mg.echo_service()
    t1 = tunnel(mg, svc, n1, base + 1)
    assert mg.wait_forward(t1)[0][2] == base + 1
    t2 = tunnel(mg, svc, n2, base + 2)
    assert mg.wait_forward(t2)[0][2] == base + 2
    # each node's own record, under the hashed identity
    assert wait_for(lambda: figures_are(redis, n1=(1, 0), n2=(1, 0)), 5), figures(redis)
    ttl = int(redis_cmd(redis.port, "PTTL", KEY).split(b"\r\n")[0][1:])
    assert 0 < ttl <= 6000, ttl
    time.sleep(BEAT + 0.5)  # each node has read the other's figure
    # a third on either node is over her count
    for srv, port in ((n1, base + 3), (n2, base + 4)):
        msg, code = refused(tunnel(mg, svc, srv, port))
        assert (msg, code) == ("gina may have at most 2 tunnels at once", 6), msg
    # one ends (after its lease's grace, 1 s): n1's record says so at once,
    # n2 reads it with its heartbeat, and takes one more
    t1.stop()
    assert wait_for(lambda: figures_are(redis, n2=(1, 0)), 5), figures(redis)
    time.sleep(BEAT + 0.5)
    t3 = tunnel(mg, svc, n2, base + 5)
    assert mg.wait_forward(t3)[0][2] == base + 5
    assert wait_for(lambda: figures_are(redis, n2=(2, 0)), 5), figures(redis)
    # ... and none more on n1 (n1's own count is 0 now)
    time.sleep(BEAT + 0.5)
    msg, code = refused(tunnel(mg, svc, n1, base + 6))
    assert code == 6, msg
    for srv in (n1, n2):
        m = parse_metrics(scrape(admin_port(srv)))
        assert metric(m, "mgrok_registrations_refused_total", code="limit") >= 1


def hold(addr, port):
    s = socket.create_connection((addr, port), timeout=5)
    s.sendall(b"x")
    assert s.recv(10) == b"x"
    return s


def echo(addr, port):
    """One connection through addr:port: the echo, or None when refused."""
    try:
        s = socket.create_connection((addr, port), timeout=5)
    except OSError:
        return None
    try:
        s.sendall(b"ping")
        return s.recv(100) or None
    except OSError:
        return None
    finally:
        s.close()


def test_visitors_counted_across_nodes(mg, tmp_path):
    redis, base, n1, n2 = cluster(mg, tmp_path)
    svc = mg.echo_service()
    c1 = tunnel(mg, svc, n1, base + 1)
    assert mg.wait_forward(c1)[0][2] == base + 1
    c2 = tunnel(mg, svc, n2, base + 2)
    assert mg.wait_forward(c2)[0][2] == base + 2
    a1 = ("127.0.0.2", base + 1)
    a2 = ("127.0.0.3", base + 2)
    held = [hold(*a1), hold(*a1), hold(*a2)]
    assert wait_for(lambda: figures_are(redis, n1=(1, 2), n2=(1, 1)), 5), figures(redis)
    time.sleep(BEAT + 0.5)
    # a 4th, through either node, is over her 3
    assert echo(*a2) is None
    assert echo(*a1) is None
    # one of n1's ends: n2 takes one more once it read n1's new figure
    held.pop(0).close()
    assert wait_for(lambda: figures_are(redis, n1=(1, 1), n2=(1, 1)), 5), figures(redis)
    assert wait_for(lambda: echo(*a2) == b"ping", BEAT + 3), mg.logs()
    assert wait_for(lambda: echo(*a1) == b"ping", BEAT + 3), mg.logs()
    # the probes above were visitors too, counted for a moment; each node
    # reads the other's figures once a beat: wait for a settled pair
    assert wait_for(lambda: figures_are(redis, n1=(1, 1), n2=(1, 1)), 5), figures(redis)
    time.sleep(BEAT + 0.5)
    # 3 held again: refused again
    held.append(hold(*a2))
    assert wait_for(lambda: figures_are(redis, n1=(1, 1), n2=(1, 2)), 5), figures(redis)
    assert echo(*a2) is None
    time.sleep(BEAT + 0.5)
    assert echo(*a1) is None
    for s in held:
        s.close()
    for srv in (n1, n2):
        m = parse_metrics(scrape(admin_port(srv)))
        assert metric(m, "mgrok_connections_refused_total", reason="too_many_visitors") >= 1
    # the tunnels end: the records go (a node with nothing deletes its own)
    c1.stop()
    c2.stop()
    assert wait_for(lambda: redis_cmd(redis.port, "EXISTS", KEY) == b":0\r\n", 8), figures(redis)


def test_store_down_keeps_the_last_figures(mg, tmp_path):
    """Redis killed: each node enforces with the figures it read last (n1
    still counts n2's tunnel: the limit's refusal comes before the claim,
    which would fail with "cluster state unavailable")."""
    redis, base, n1, n2 = cluster(mg, tmp_path)
    svc = mg.echo_service()
    t1 = tunnel(mg, svc, n1, base + 1)
    assert mg.wait_forward(t1)[0][2] == base + 1
    t2 = tunnel(mg, svc, n2, base + 2)
    assert mg.wait_forward(t2)[0][2] == base + 2
    assert wait_for(lambda: figures_are(redis, n1=(1, 0), n2=(1, 0)), 5), figures(redis)
    time.sleep(BEAT + 0.5)
    redis.kill9()
    for srv in (n1, n2):
        assert wait_for(lambda: "cluster: the store is unreachable" in srv.stderr(), 10), \
            srv.log()
    # the limit holds on the last known figures (no "retrying": they were read)
    time.sleep(BEAT + 0.5)
    msg, code = refused(tunnel(mg, svc, n1, base + 3))
    assert (msg, code) == ("gina may have at most 2 tunnels at once", 6), msg
    assert t1.alive() and t2.alive()


def test_first_registration_waits_for_the_count(mg, tmp_path):
    """A node where gina has no figures yet reads the others' count at her
    login; her first registration's answer waits for that read (as it
    waits for the route's claim) instead of answering "retrying": her
    first tunnel on each node is up at once, and with n1 holding her 2,
    the first registration on n2 is refused at once by the limit (never
    admitted blind, never "retrying")."""
    redis, base, n1, n2 = cluster(mg, tmp_path)
    svc = mg.echo_service()
    ts = []
    for port in (base + 1, base + 2):
        t0 = time.monotonic()
        t = tunnel(mg, svc, n1, port)
        assert mg.wait_forward(t)[0][2] == port
        took = time.monotonic() - t0
        assert took < 1.5, (took, t.log())
        assert "retrying" not in t.stdout() + t.stderr(), t.log()
        ts.append(t)
    assert wait_for(lambda: figures_are(redis, n1=(2, 0)), 5), figures(redis)
    # n2 has never counted gina: its first registration of her waits for
    # the read of n1's 2, and is over her limit
    t0 = time.monotonic()
    c = tunnel(mg, svc, n2, base + 3)
    msg, code = refused(c)
    took = time.monotonic() - t0
    assert (msg, code) == ("gina may have at most 2 tunnels at once", 6), msg
    assert took < 1.5, (took, c.log())
    assert "retrying" not in c.stdout() + c.stderr(), c.log()
    # one of n1's ends: n2 learns it with its heartbeat and takes one, at
    # once (the count is known now: nothing to wait for)
    ts.pop(0).stop()
    assert wait_for(lambda: figures_are(redis, n1=(1, 0)), 5), figures(redis)
    time.sleep(BEAT + 0.5)
    t0 = time.monotonic()
    t = tunnel(mg, svc, n2, base + 4)
    assert mg.wait_forward(t)[0][2] == base + 4
    assert time.monotonic() - t0 < 1.5, t.log()
    assert "retrying" not in t.stdout() + t.stderr(), t.log()
    assert "retrying" not in n1.stderr() + n2.stderr(), mg.logs()


def test_first_registration_when_the_read_fails(mg, tmp_path):
    """Redis stopped (SIGSTOP) when gina logs in on a node that never
    counted her: her registration waits for the read, which the store's
    2 s timeout ends; only then is it answered "retrying" (code 10), and
    the agent's next try, Redis back, brings the tunnel up."""
    redis, base, n1, n2 = cluster(mg, tmp_path)
    svc = mg.echo_service()
    os.kill(redis.proc.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        t = tunnel(mg, svc, n1, base + 1)
        assert wait_for(lambda: "register waits for the count of gina" in n1.stderr(), 5), \
            n1.log()
        assert wait_for(lambda: "trying again" in t.stderr() + t.stdout(), 6), t.log()
        took = time.monotonic() - t0
        assert took >= 1.5, (took, t.log())  # answered when the read failed
    finally:
        os.kill(redis.proc.pid, signal.SIGCONT)
    assert "is being read), retrying" in t.stderr() + t.stdout(), t.log()
    assert mg.wait_forward(t, timeout=20)[0][2] == base + 1
    assert wait_for(lambda: figures_are(redis, n1=(1, 0)), 8), figures(redis)
