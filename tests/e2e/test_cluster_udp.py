"""UDP tunnels in a cluster of three nodes (issue 16): a UDP port node 1's
tunnel holds answers on nodes 2 and 3 too. Each of those binds the port
while another node owns it and carries each visitor's flow on its own
node link stream to node 1, which hands it to the tunnel as if the
visitor had sent to its own socket: the agent's PROXY v2 header names the
visitor, and replies go back the way they came. Real redis-server on
loopback; the nodes of test_cluster_forward.Cluster."""

import collections
import os
import socket

import pytest

from helpers import udp_recv, wait_for
from test_admin import metric
from test_cluster import redis_cmd
from test_cluster_forward import VISITOR, Cluster, fwd_metrics
from test_proxy_protocol import PPUdpService
from test_rstore import REDIS

pytestmark = pytest.mark.skipif(REDIS is None, reason="redis-server is not installed")


def visitor_sock(mg, connect=None):
    """A UDP socket of the visitor (127.0.0.9), with room for bursts."""
    s = mg.track(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    for opt in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
        if opt is None:
            continue
        try:
            s.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
            break
        except OSError:
            continue
    s.bind((VISITOR, 0))
    if connect:
        s.connect(connect)
    return s


def ask(s, to, payload, timeout=0.5):
    """sendto + the first reply within timeout: (data, source), or
    (None, None); (None, "refused") once the port is closed (connected
    sockets hear the ICMP error)."""
    if to is None:
        s.send(payload)
    else:
        s.sendto(payload, to)
    return udp_recv(s, timeout)


def answers(s, to, payload, timeout=15):
    """Ask until a reply comes (the other nodes open a port within a
    sweep, 2 s, or at once on the store's channel); the reply or None."""
    got = []

    def one():
        d, src = ask(s, to, payload)
        if d is not None:
            got.append((d, src))
            return True
        return False
    return got[0] if wait_for(one, timeout) else None


def drain(s):
    s.setblocking(False)
    try:
        while True:
            s.recvfrom(65536)
    except (BlockingIOError, ConnectionRefusedError):
        pass
    finally:
        s.setblocking(True)


def udp_tunnel(mg, cl, svc_port, extra=()):
    port = cl.base + 2
    c = mg.udp_client(svc_port, cl.nodes[0], remote_port=port,
                      extra=["--inspect-addr", "off"] + list(extra))
    fw = mg.wait_forward(c)
    assert fw[0][0] == "udp" and fw[0][2] == port, fw
    return c, port


def test_udp_through_every_node_200_datagrams_and_the_port_closes(mg):
    cl = Cluster(mg)
    n1, n2, n3 = cl.nodes
    svc = mg.udp_service("echo")
    c, port = udp_tunnel(mg, cl, svc.port)
    s = visitor_sock(mg)
    # each node answers from its own address: n1 itself, n2 and n3 forward
    for srv in (n1, n2, n3):
        r = answers(s, (srv.addr, port), b"hello " + srv.name.encode())
        assert r is not None, (srv.name, mg.logs())
        assert r == (b"hello " + srv.name.encode(), (srv.addr, port)), (srv.name, r)
        drain(s)  # the answers to asks repeated while the port opened
    # 200 datagrams of 1..1400 bytes through n3, in bursts of 50: every
    # one back, intact
    sizes = [1 + (i * 977) % 1400 for i in range(200)]
    sizes[0], sizes[1] = 1, 1400
    sent = [os.urandom(n) for n in sizes]
    got = []
    for k in range(0, len(sent), 50):
        for d in sent[k:k + 50]:
            s.sendto(d, (n3.addr, port))
        want = len(got) + len(sent[k:k + 50])
        while len(got) < want:
            d, src = udp_recv(s, 5)
            if d is None:
                break
            assert src == (n3.addr, port), src
            got.append(d)
    assert len(got) == len(sent), (len(got), len(sent), n3.log())
    assert collections.Counter(got) == collections.Counter(sent)
    # the same through n2
    for i in range(20):
        d, src = ask(s, (n2.addr, port), b"n2-%d" % i, timeout=5)
        assert (d, src) == (b"n2-%d" % i, (n2.addr, port)), (i, d, src)
    # the figures: n3 forwarded the flow and its bytes both ways; n1 took it
    m3, m1 = fwd_metrics(n3), fwd_metrics(n1)
    assert metric(m3, "mgrok_cluster_forwarded_connections_total", direction="out") >= 1
    assert metric(m3, "mgrok_cluster_forwarded_bytes_total", direction="in") >= sum(sizes)
    assert metric(m3, "mgrok_cluster_forwarded_bytes_total", direction="out") >= sum(sizes)
    assert metric(m1, "mgrok_cluster_forwarded_connections_total", direction="in") >= 2
    # the tunnel ends: its route goes, and n3's port closes (a connected
    # socket hears the ICMP port unreachable)
    c.stop()
    assert wait_for(lambda: redis_cmd(cl.redis.port, "EXISTS", "mgrok:route:udp:%d" %
                                      port) == b":0\r\n", 10)
    closed = visitor_sock(mg, connect=(n3.addr, port))
    assert wait_for(lambda: ask(closed, None, b"still there?")[1] == "refused", 5), n3.log()


def test_udp_flows_keep_apart_and_the_agent_sees_the_visitor(mg):
    """Several visitors through n3 each get their own flow (the tag service
    names the agent's socket it came from); with --proxy-protocol v2 each
    datagram reaches the service behind a header naming the visitor, as if
    it had sent to n1."""
    cl = Cluster(mg)
    n3 = cl.nodes[2]
    svc = mg.udp_service("tag")
    c, port = udp_tunnel(mg, cl, svc.port)
    socks = [visitor_sock(mg) for _ in range(5)]
    tags = set()
    for i, s in enumerate(socks):
        r = answers(s, (n3.addr, port), b"v%d" % i)
        assert r is not None and r[0].endswith(b"|v%d" % i), (i, r, mg.logs())
        for _ in range(3):  # the flow keeps its socket
            d, _src = ask(s, (n3.addr, port), b"v%d" % i, timeout=5)
            assert d == r[0], (i, d, r)
        tags.add(r[0].split(b"|")[0])
    assert len(tags) == len(socks), tags
    c.stop()

    pp = PPUdpService()
    mg.services.append(pp)
    port = cl.base + 3
    c = mg.udp_client(pp.port, cl.nodes[0], remote_port=port, extra=[
        "--proxy-protocol", "v2", "--inspect-addr", "off"])
    assert mg.wait_forward(c)[0][2] == port
    s = visitor_sock(mg)
    vport = s.getsockname()[1]
    r = answers(s, (n3.addr, port), b"first")
    assert r == (b"first", (n3.addr, port)), (r, pp.errors, mg.logs())
    for payload in (b"second", b"x" * 1400):
        d, src = ask(s, (n3.addr, port), payload, timeout=5)
        assert (d, src) == (payload, (n3.addr, port)), (d, src, pp.errors)
    assert not pp.errors, pp.errors
    assert len(pp.got) >= 3, pp.got
    for h, _payload in pp.got:
        assert h["family"] == 1 and h["transport"] == 2, h  # INET, DGRAM
        assert h["src"] == (VISITOR, vport), h
    assert [p for _h, p in pp.got][-2:] == [b"second", b"x" * 1400]


class _WithExtra:
    """mg whose servers get more options (the Cluster's nodes)."""

    def __init__(self, mg, extra):
        self._mg, self._extra = mg, list(extra)

    def server(self, **kw):
        kw["extra"] = list(kw.get("extra", ())) + self._extra
        return self._mg.server(**kw)

    def __getattr__(self, name):
        return getattr(self._mg, name)


def test_udp_forwarded_flows_end_when_idle(mg):
    """A forwarded flow idle for --udp-idle-timeout ends on both nodes: the
    owner's flow count falls back to 0, and the visitor's next datagram
    opens a new stream from n3."""
    cl = Cluster(_WithExtra(mg, ["--udp-idle-timeout", "2"]))
    n1, n3 = cl.nodes[0], cl.nodes[2]
    svc = mg.udp_service("echo")
    _c, port = udp_tunnel(mg, cl, svc.port)
    s = visitor_sock(mg)
    assert answers(s, (n3.addr, port), b"one") is not None, mg.logs()
    drain(s)

    def out_streams():
        return metric(fwd_metrics(n3), "mgrok_cluster_forwarded_connections_total",
                      direction="out")
    first = out_streams()
    assert first >= 1
    assert metric(fwd_metrics(n1), "mgrok_udp_flows_active") == 1
    # within the timeout the flow stays
    d, _ = ask(s, (n3.addr, port), b"two", timeout=5)
    assert d == b"two" and out_streams() == first
    assert wait_for(lambda: metric(fwd_metrics(n1), "mgrok_udp_flows_active") == 0, 8), \
        n1.log()
    d, _ = ask(s, (n3.addr, port), b"three", timeout=5)
    assert d == b"three", n3.log()
    assert out_streams() == first + 1


def test_udp_owner_policy_holds_for_forwarded_flows(mg):
    """The agent's --deny-cidr is checked on the owner for a flow another
    node forwards, against the visitor's own address: 127.0.0.9 gets
    nothing through n3 (counted as a policy drop on n1) while 127.0.0.10
    is answered; a refused flow asks the owner again at most once a
    second, not once a datagram."""
    cl = Cluster(mg)
    n1, n3 = cl.nodes[0], cl.nodes[2]
    svc = mg.udp_service("echo")
    _c, port = udp_tunnel(mg, cl, svc.port, extra=["--deny-cidr", VISITOR + "/32"])
    ok = mg.track(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    ok.bind(("127.0.0.10", 0))
    assert answers(ok, (n3.addr, port), b"allowed") is not None, mg.logs()

    def out_streams():
        return metric(fwd_metrics(n3), "mgrok_cluster_forwarded_connections_total",
                      direction="out")
    before = out_streams()
    s = visitor_sock(mg)
    replies = 0
    for i in range(15):  # 1.5 s of datagrams
        d, _ = ask(s, (n3.addr, port), b"denied %d" % i, timeout=0.1)
        replies += d is not None
    assert replies == 0
    opened = out_streams() - before
    assert 1 <= opened <= 3, opened
    drops = metric(fwd_metrics(n1), "mgrok_udp_drops_total", direction="in", reason="policy")
    assert drops and drops >= 1, drops
    assert not [d for _a, d in svc.received if d.startswith(b"denied")]


def test_udp_port_moves_to_another_node(mg):
    """The tunnel of a port ends on n1 and the port is registered again on
    n2: n3 forwards to n2 now, and n1, which held the port itself, forwards
    it too."""
    cl = Cluster(mg)
    n1, n2, n3 = cl.nodes
    svc = mg.udp_service("echo")
    c, port = udp_tunnel(mg, cl, svc.port)
    s = visitor_sock(mg)
    assert answers(s, (n3.addr, port), b"to n1") is not None, mg.logs()
    c.stop()
    assert wait_for(lambda: redis_cmd(cl.redis.port, "EXISTS", "mgrok:route:udp:%d" %
                                      port) == b":0\r\n", 10)
    c2 = mg.udp_client(svc.port, n2, remote_port=port, extra=["--inspect-addr", "off"])
    assert mg.wait_forward(c2)[0][2] == port
    assert redis_cmd(cl.redis.port, "HGET", "mgrok:route:udp:%d" % port,
                     "node").endswith(b"n2\r\n")
    for srv in (n3, n1, n2):
        drain(s)
        r = answers(s, (srv.addr, port), b"to n2 via " + srv.name.encode())
        assert r == (b"to n2 via " + srv.name.encode(), (srv.addr, port)), (srv.name, r,
                                                                              mg.logs())
    m2 = fwd_metrics(n2)
    assert metric(m2, "mgrok_cluster_forwarded_connections_total", direction="in") >= 2
