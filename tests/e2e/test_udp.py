"""UDP tunnels (docs/protocol.md section 5): flows per public source, datagram
sizes, idle expiry, floods, a missing local service, reconnects, bad
datagram framing from a raw client, and mixed UDP + TCP clients."""

import os
import signal
import struct
import threading
import time

import pytest

import smux
from helpers import (HOST, echo_roundtrip, pick_free_port, pick_port_range,
                     proc_net_udp, udp_client_summary, udp_exchange, udp_free_port,
                     udp_recv, udp_server_summary, wait_for)
from smux import FIN, PSH, PyClient

DGRAM_MAX = 65507


def _udp_tunnel(mg, server=None, service=None, server_extra=(), client_extra=(), **kw):
    """server + UDP service + `mgrok udp` client; returns (server, client, svc, port)."""
    server = server or mg.server(extra=list(server_extra))
    service = service or mg.udp_service("tag")
    c = mg.udp_client(service.port, server, extra=list(client_extra), **kw)
    fw = mg.wait_forward(c)
    scheme, host, port, local = fw[0]
    assert scheme == "udp", "client printed %r, expected a udp:// forwarding line" % (fw,)
    assert host == HOST, fw
    assert local == (HOST, service.port), "forwarding line names local %r, expected %r" % (
        local, (HOST, service.port))
    return server, c, service, port


def _tag(port):
    return b"127.0.0.1:%d|" % port


def _stop(proc, sig, what, timeout=10):
    proc.signal(sig)
    rc = proc.wait(timeout)
    assert rc is not None, "%s did not exit within %ds of signal %d" % (what, timeout, sig)
    return rc


def _client_summary(mg, client, port):
    rc = _stop(client, signal.SIGINT, "client")
    summ = udp_client_summary(client.stderr(), port)
    assert summ is not None, ("client (rc %s) printed no 'udp://127.0.0.1:%d -> ...: N flows' "
                              "summary line on SIGINT\n%s" % (rc, port, mg.logs()))
    return summ


def _server_summary(mg, server, port):
    _stop(server, signal.SIGTERM, "server", timeout=15)
    summ = udp_server_summary(server.stderr(), port)
    assert summ is not None, ("server printed no 'udp \"NAME\" port %d: ...' line at exit\n%s"
                              % (port, mg.logs()))
    return summ


def _exchange_retry(sock, port, payload, tries=10, timeout=0.5):
    """Request/response with bounded retries; returns the reply or None."""
    for _ in range(tries):
        r = udp_exchange(sock, port, payload, timeout=timeout)
        if r is not None:
            return r
    return None


def _flow_sockets(svc_port):
    """Client flow sockets connected to the local service (seen in /proc)."""
    return [e["local_port"] for e in proc_net_udp(remote_port=svc_port)]


# ---------------------------------------------------------------- 1. many flows

def test_udp_100_flows_each_reply_to_its_sender(mg):
    server, client, svc, port = _udp_tunnel(mg)
    n = 100
    socks = [mg.udp_sock() for _ in range(n)]
    pub_ports = [s.getsockname()[1] for s in socks]
    assert len(set(pub_ports)) == n
    for i, s in enumerate(socks):
        s.sendto(b"req-%03d" % i, (HOST, port))
    replies = {i: [] for i in range(n)}
    deadline = time.monotonic() + 8
    for i, s in enumerate(socks):
        while not replies[i]:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            d, a = udp_recv(s, left)
            if d is None:
                break
            replies[i].append((d, a))
    # anything more that turns up (a reply for somebody else?)
    time.sleep(0.3)
    for i, s in enumerate(socks):
        while True:
            d, a = udp_recv(s, 0.01)
            if d is None:
                break
            replies[i].append((d, a))
    missing = [i for i in range(n) if not replies[i]]
    assert not missing, ("%d of %d flows got no reply within 8s: %s; service got %d "
                         "datagrams\n%s" % (len(missing), n, missing[:20], len(svc.received),
                                            mg.logs()))
    seen_by_svc = {}
    for i in range(n):
        for d, a in replies[i]:
            assert a == (HOST, port), "flow %d: reply came from %r, not the public port %d" % (
                i, a, port)
            sep = d.find(b"|")
            assert sep > 0, "flow %d: untagged reply %r" % (i, d[:80])
            assert d[sep + 1:] == b"req-%03d" % i, (
                "flow %d (public source port %d) received %r: a reply meant for "
                "another sender" % (i, pub_ports[i], d[:80]))
            seen_by_svc.setdefault(i, set()).add(d[:sep])
        assert len(replies[i]) == 1, "flow %d got %d replies: %r" % (i, len(replies[i]),
                                                                     replies[i])
    srcs = svc.sources()
    assert len(srcs) == n, "service received %d datagrams, expected %d" % (len(srcs), n)
    assert all(a[0] == HOST for a in srcs), srcs
    src_ports = {a[1] for a in srcs}
    assert len(src_ports) == n, ("the local service saw %d distinct source ports for %d "
                                 "public peers" % (len(src_ports), n))
    assert len({next(iter(v)) for v in seen_by_svc.values()}) == n
    cs = _client_summary(mg, client, port)
    assert cs["flows"] == n and cs["in_pkts"] == n and cs["out_pkts"] == n, cs
    assert cs["in_drops"] == 0 and cs["out_drops"] == 0, cs
    ss = _server_summary(mg, server, port)
    assert ss["flows"] == n and ss["in_pkts"] == n and ss["out_pkts"] == n, ss
    assert ss["in_drops"] == 0 and ss["out_drops"] == 0, ss
    assert ss["in_bytes"] == sum(len(b"req-%03d" % i) for i in range(n)), ss
    assert ss["out_bytes"] == sum(len(_tag(p)) + 7 for p in src_ports), ss


# ---------------------------------------------------------------- 2. sizes

def test_udp_datagram_sizes_intact_both_ways(mg):
    server, client, svc, port = _udp_tunnel(mg, service=mg.udp_service("echo"))
    s = mg.udp_sock(bufsize=1 << 20)
    sent = []
    for n in (1, 1400, DGRAM_MAX, 2, DGRAM_MAX - 1):
        payload = os.urandom(n)
        sent.append(payload)
        got = udp_exchange(s, port, payload, timeout=3)
        assert got is not None, "no reply to a %d-byte datagram within 3s\n%s" % (n, mg.logs())
        assert len(got) == n, "sent %d bytes, reply has %d" % (n, len(got))
        assert got == payload, "%d-byte datagram came back altered" % n
    recv = [d for _, d in svc.received]
    assert [len(d) for d in recv] == [len(d) for d in sent], (
        "the local service received sizes %r" % [len(d) for d in recv])
    assert recv == sent, "the local service received altered datagrams"
    assert len(set(a for a, _ in svc.received)) == 1, "one public peer became several flows"
    cs = _client_summary(mg, client, port)
    total = sum(len(d) for d in sent)
    assert (cs["in_pkts"], cs["in_bytes"], cs["out_pkts"], cs["out_bytes"]) == (
        len(sent), total, len(sent), total), cs
    assert cs["flows"] == 1, cs


def test_udp_oversized_public_datagram_not_forwarded(mg):
    """A public datagram can be at most 65507 bytes over IPv4 anyway; an empty
    one is dropped by the server (len 0 cannot be framed)."""
    server, client, svc, port = _udp_tunnel(mg, service=mg.udp_service("echo"))
    s = mg.udp_sock()
    s.sendto(b"", (HOST, port))
    assert udp_exchange(s, port, b"after-empty", timeout=3) == b"after-empty", mg.logs()
    assert [d for _, d in svc.received] == [b"after-empty"], svc.received
    assert server.alive() and client.alive()
    ss = _server_summary(mg, server, port)
    assert ss["in_drops"] >= 1 and ss["in_pkts"] == 1, ss


# ---------------------------------------------------------------- 3. idle expiry

@pytest.mark.parametrize("server_idle,client_idle", [(2, 2), (2, 60), (60, 2)],
                         ids=["both-2s", "server-2s", "client-2s"])
def test_udp_idle_flow_expires(mg, server_idle, client_idle):
    server, client, svc, port = _udp_tunnel(
        mg, server_extra=["--udp-idle-timeout", str(server_idle)],
        client_extra=["--udp-idle-timeout", str(client_idle)])
    s = mg.udp_sock()
    # t0 before the flow's last datagram: however late this thread runs, a
    # flow that honours its 2 s idle timeout cannot be gone sooner after t0
    t0 = time.monotonic()
    r = udp_exchange(s, port, b"one", timeout=3)
    assert r is not None and r.endswith(b"|one"), "first exchange: %r\n%s" % (r, mg.logs())
    p1 = svc.received[-1][0][1]
    assert p1 in _flow_sockets(svc.port), "flow socket %d not in /proc/net/udp" % p1
    gone = wait_for(lambda: p1 not in _flow_sockets(svc.port), 20, interval=0.1)
    took = time.monotonic() - t0
    assert gone, ("the client's flow socket (127.0.0.1:%d -> service) is still open %.1fs "
                  "after the last datagram (server timeout %ds, client %ds)\n%s"
                  % (p1, took, server_idle, client_idle, mg.logs()))
    assert took >= 1.5, "flow closed after %.1fs, before the 2s idle timeout" % took
    time.sleep(0.3)  # let a FIN from the other side land
    r = udp_exchange(s, port, b"two", timeout=3)
    assert r is not None, ("no reply after the flow expired (server timeout %ds, client %ds):"
                           " the server kept a flow whose client side is gone?\n%s"
                           % (server_idle, client_idle, mg.logs()))
    assert r.endswith(b"|two"), r
    p2 = svc.received[-1][0][1]
    assert p2 != p1, ("the local service saw the same source port %d again: the flow "
                      "was not closed on the client" % p1)
    assert r == _tag(p2) + b"two"
    if (server_idle, client_idle) == (2, 2):
        gone = wait_for(lambda: p2 not in _flow_sockets(svc.port), 20, interval=0.1)
        assert gone, "second flow socket %d not closed within 20s" % p2
        cs = _client_summary(mg, client, port)
        assert cs["flows"] == 2 and cs["active"] == 0, (
            "client summary after both flows expired: %r (expected 2 flows, 0 active)" % cs)
        ss = _server_summary(mg, server, port)
        assert ss["flows"] == 2, ss


# ---------------------------------------------------------------- 4. flood

def test_udp_flood_does_not_starve_other_flow(mg, udptag_bin):
    # a native service: a Python one is slower than the tunnel, and then its
    # own socket drops whatever arrives, flows alike, which is not mgrok's
    # fairness at work but the service's limit
    svc = mg.native_udp_tag(udptag_bin, prefix=b"F")
    server, client, svc, port = _udp_tunnel(mg, service=svc)
    flood = mg.udp_sock()
    ask = mg.udp_sock()
    assert udp_exchange(ask, port, b"warm", timeout=3) is not None, mg.logs()
    stop = threading.Event()
    sent = [0, 0]  # ok, errors
    blob = b"F" + os.urandom(1199)

    def blast():
        # until the exchanges are done; the cap only bounds the loop
        end = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < end:
            for _ in range(64):
                try:
                    flood.sendto(blob, (HOST, port))
                    sent[0] += 1
                except OSError:
                    sent[1] += 1

    t = threading.Thread(target=blast, daemon=True)
    t_flood = time.monotonic()
    t.start()
    time.sleep(0.2)
    fails = []
    rtts = []
    try:
        for i in range(50):
            msg = b"Q%02d" % i
            t1 = time.monotonic()
            ask.sendto(msg, (HOST, port))
            got = None
            # a lost answer, not a slow one, is the failure: wait generously
            while time.monotonic() - t1 < 5.0:
                d, _ = udp_recv(ask, 5.0 - (time.monotonic() - t1))
                if d is None:
                    break
                if d.endswith(b"|" + msg):
                    got = d
                    break
            if got is None:
                fails.append(i)
            else:
                rtts.append(time.monotonic() - t1)
            time.sleep(0.02)
        flooding = t.is_alive()
        flood_secs = time.monotonic() - t_flood
    finally:
        stop.set()
        t.join(timeout=5)
    drops = {"service socket": sum(e["drops"] for e in proc_net_udp(local_port=svc.port)),
             "public socket": sum(e["drops"] for e in proc_net_udp(local_port=port))}
    discarded, answered = svc.stop()
    assert sent[0] > 1000, "the flood sent only %d datagrams" % sent[0]
    assert discarded > 0, "no flood datagram reached the local service"
    assert not fails, ("%d of 50 request/responses failed (5s timeout) during a flood of "
                       "%d datagrams from another source: %s; kernel drops %r; service got "
                       "%d flood datagrams; rtts of the others %s\n%s"
                       % (len(fails), sent[0], fails[:10], drops, discarded,
                          ["%.3f" % x for x in rtts], mg.logs()))
    assert flooding, "the 50 exchanges outlasted a 120s flood (%.1fs)" % flood_secs
    assert server.alive() and client.alive()
    cs = _client_summary(mg, client, port)
    ss = _server_summary(mg, server, port)
    assert ss["flows"] == 2, ss
    # every public datagram the server read is either forwarded or counted
    assert ss["in_pkts"] + ss["in_drops"] >= 51, ss
    assert cs["in_pkts"] <= ss["in_pkts"], (cs, ss)
    print("flood: %.1fs, sent %d, service got %d, client %r, server %r, max rtt %.3fs"
          % (flood_secs, sent[0], discarded, cs, ss, max(rtts)))


# ---------------------------------------------------------------- 5. service absent

def test_udp_local_service_absent_then_started(mg):
    dead = udp_free_port()
    server = mg.server()
    client = mg.udp_client(dead, server)
    fw = mg.wait_forward(client)
    assert fw[0][0] == "udp", fw
    port = fw[0][2]
    s = mg.udp_sock()
    n_absent = 5
    for i in range(n_absent):
        r = udp_exchange(s, port, b"nobody-%d" % i, timeout=0.2)
        assert r is None, "got a reply %r while nothing listens on %d" % (r, dead)
    time.sleep(0.2)
    assert client.alive(), "client died sending to a closed UDP port\n" + mg.logs()
    assert server.alive(), "server died\n" + mg.logs()
    svc = mg.udp_service("tag", port=dead)
    r = _exchange_retry(s, port, b"now-up", tries=10, timeout=0.5)
    assert r is not None, ("no reply within 10 tries after the local service started on "
                           "%d\n%s" % (dead, mg.logs()))
    assert r.endswith(b"|now-up"), r
    assert [d for _, d in svc.received if not d.startswith(b"nobody")][:1] == [b"now-up"]
    cs = _client_summary(mg, client, port)
    assert cs["in_drops"] > 0, ("client summary counts no dropped datagram after %d sent to a "
                                "closed port: %r" % (n_absent, cs))
    assert cs["out_pkts"] >= 1, cs


# ---------------------------------------------------------------- 6. reconnect

def test_udp_server_restart_client_returns_same_port(mg):
    base = pick_port_range(70)
    sport = pick_free_port()
    svc = mg.udp_service("tag")
    server1 = mg.server(start_port=base + 20, n_ports=50, addr_port=sport)
    c = mg.udp_client(svc.port, server1)
    fw = mg.wait_forward(c)
    port = fw[0][2]
    s = mg.udp_sock()
    r = udp_exchange(s, port, b"before", timeout=3)
    assert r is not None and r.endswith(b"|before"), r
    server1.signal(signal.SIGTERM)
    if server1.wait(30) is None:
        pytest.fail("server with an open UDP flow did not exit within 30s of SIGTERM\n"
                    + mg.logs())
    # an open flow must not hold the stop up until the drain deadline
    assert "drain deadline reached" not in server1.stderr(), (
        "server waited out its drain timeout on SIGTERM with one UDP flow\n" + mg.logs())
    server2 = None
    for _ in range(20):
        server2 = mg.server(start_port=base, n_ports=70, addr_port=sport, wait=False)
        ok = wait_for(lambda: "listening on" in server2.stderr() or not server2.alive(), 5)
        if ok and server2.alive():
            break
        time.sleep(0.25)
    assert server2 is not None and server2.alive(), "restarted server did not start\n" + mg.logs()
    r = wait_for(lambda: udp_exchange(s, port, b"after", timeout=0.5) or not c.alive(),
                 30, interval=0.05)
    assert c.alive(), "client exited after the server restart\n" + mg.logs()
    assert r is not None and r.endswith(b"|after"), (
        "no request/response on udp port %d within 30s of the server restart\n%s"
        % (port, mg.logs()))
    fw2 = c.forwards()
    back = ("back at udp://127.0.0.1:%d" % port) in c.stderr()
    assert back or (len(fw2) > len(fw) and fw2[-1][:3] == ("udp", HOST, port)), (
        "client shows neither 'proxy ... back at udp://127.0.0.1:%d' nor a new forwarding "
        "line for it: %r\n%s" % (port, fw2, mg.logs()))


def test_udp_lease_drops_while_client_away(mg):
    server = mg.server(extra=["--lease-grace", "20"])
    svc = mg.udp_service("tag")
    state = mg.state_dir("udp-lease")
    c1 = mg.udp_client(svc.port, server, state_dir=state, extra=["--name", "dns"])
    port = mg.wait_forward(c1)[0][2]
    s = mg.udp_sock()
    assert udp_exchange(s, port, b"one", timeout=3) is not None, mg.logs()
    c1.kill9()
    time.sleep(0.5)  # let the server notice the lost session
    away = 4
    for i in range(away):
        assert udp_exchange(s, port, b"away-%d" % i, timeout=0.1) is None
    assert not any(d.startswith(b"away") for _, d in svc.received)
    c2 = mg.udp_client(svc.port, server, state_dir=state, extra=["--name", "dns"])
    port2 = mg.wait_forward(c2, timeout=10)[0][2]
    assert port2 == port, "client came back on %d, expected %d" % (port2, port)
    r = _exchange_retry(s, port, b"back", tries=10, timeout=0.5)
    assert r is not None and r.endswith(b"|back"), mg.logs()
    ss = _server_summary(mg, server, port)
    assert ss["in_drops"] >= away, ("server summary counts %d dropped datagrams, %d were "
                                    "sent while the client was away: %r" % (
                                        ss["in_drops"], away, ss))


# ---------------------------------------------------------------- 7. bad input

BAD_DATAGRAMS = {
    "len0": b"\x00\x00",
    "len65508": struct.pack(">H", DGRAM_MAX + 1) + b"x" * 100,
    "len65535": b"\xff\xff" + b"y" * 100,
    "fin_mid_datagram": None,
}


@pytest.mark.parametrize("case", sorted(BAD_DATAGRAMS))
def test_udp_bad_datagram_framing_closes_only_that_session(mg, case):
    server, real, svc, rport = _udp_tunnel(mg)
    live = mg.udp_sock()
    r = udp_exchange(live, rport, b"live-before", timeout=3)
    assert r is not None and r.endswith(b"|live-before"), mg.logs()

    pc = PyClient(server.port, version=2)
    mg.track(pc.sock)
    pc.start()
    try:
        _, reply = pc.login_hmac(mg.token.encode(), os.urandom(16), os.urandom(16), caps=0x7)
        assert reply is not None and reply[0] == smux.T_AUTHOK, (reply, mg.logs())
        pc.send_ctrl(smux.register(0x02, 0, 9, b"py-udp"))
        ok = pc.wait_ctrl(lambda m: m[0] in (smux.T_REGISTER_OK, smux.T_REGISTER_ERR), 5)
        assert ok is not None and ok[0] == smux.T_REGISTER_OK, "Register: %r\n%s" % (
            ok, mg.logs())
        ptype, port, nlen = struct.unpack(">BHB", ok[1:5])
        assert ptype == 0x02 and ok[5:5 + nlen] == b"py-udp", ok
        assert ok[5 + nlen:].decode().startswith("udp://"), ok
        # a public datagram: the server opens a flow stream, PyClient echoes
        # the framed datagram back, so the reply proves the framing
        pub = mg.udp_sock()
        got = udp_exchange(pub, port, b"hello", timeout=3)
        assert pc.headers, "no flow stream opened after a public datagram\n" + mg.logs()
        hdr = pc.headers[0]
        assert hdr["remote_port"] == port and hdr["name"] == b"py-udp", hdr
        if hdr["type"] == smux.T_NEWSTREAM_EX:
            assert hdr["addr"] == b"\x7f\x00\x00\x01" and hdr["port"] == pub.getsockname()[1]
        sid = hdr["sid"]
        diag = "raw client: closed %s, errors %r, frames %r, stream %r\n%s" % (
            pc.closed, pc.errors, pc.frames_seen, pc.streams[sid], mg.logs())
        assert got == b"hello", "echo of a framed datagram by the raw client: %r; %s" % (
            got, diag)
        # the reader thread counts after it sent: let it finish its bookkeeping
        assert wait_for(lambda: pc.streams[sid]["echoed"] == 7, 2), diag
        # now the bad datagram on the flow stream
        if case == "fin_mid_datagram":
            pc.send_frame(PSH, sid, b"\x00\x10abcd")
            pc.send_frame(FIN, sid)
        else:
            pc.send_frame(PSH, sid, BAD_DATAGRAMS[case])
        closed = pc.wait_closed(5)
        assert closed, ("server kept the session open 5s after a bad datagram (%s) on a "
                        "UDP flow\n%s" % (case, mg.logs()))
        assert udp_exchange(pub, port, b"dead?", timeout=0.3) is None
    finally:
        pc.close()
    assert server.alive(), "server died on a bad datagram (%s)\n%s" % (case, mg.logs())
    assert real.alive(), "the real client died\n" + mg.logs()
    r = udp_exchange(live, rport, b"live-after", timeout=3)
    assert r is not None and r.endswith(b"|live-after"), (
        "the real client's UDP tunnel broke after another session's bad datagram\n"
        + mg.logs())
    other = mg.udp_sock()
    r = udp_exchange(other, rport, b"new-flow", timeout=3)
    assert r is not None and r.endswith(b"|new-flow"), mg.logs()
    assert len(real.forwards()) == 1, "the real client reconnected: %r" % real.forwards()


# ---------------------------------------------------------------- 8. UDP + TCP

def test_client_exposes_udp_and_tcp_at_once(mg):
    server = mg.server()
    usvc = mg.udp_service("tag")
    tsvc = mg.echo_service()
    c = mg.locals_client(["udp:127.0.0.1:%d" % usvc.port, "127.0.0.1:%d" % tsvc.port], server)
    fw = mg.wait_forward(c, count=2)
    by = {f[0]: f for f in fw}
    assert set(by) == {"udp", "tcp"}, "forwarding lines: %r" % (fw,)
    assert by["udp"][3] == (HOST, usvc.port), fw
    assert by["tcp"][3] == (HOST, tsvc.port), fw
    uport, tport = by["udp"][2], by["tcp"][2]
    s = mg.udp_sock()
    r = udp_exchange(s, uport, b"over-udp", timeout=3)
    assert r is not None and r == _tag(usvc.received[-1][0][1]) + b"over-udp", (r, mg.logs())
    msg = os.urandom(100000)
    assert echo_roundtrip(tport, msg) == msg
    r2 = udp_exchange(s, uport, b"again", timeout=3)
    assert r2 is not None and r2.endswith(b"|again")
    cs = _client_summary(mg, c, uport)
    assert cs["flows"] == 1 and cs["in_pkts"] == 2 and cs["out_pkts"] == 2, cs
