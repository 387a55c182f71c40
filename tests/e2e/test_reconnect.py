"""Client death, server restarts, client restarts and leases."""

import os
import re
import signal
import socket
import time

import pytest

from helpers import (connect, echo_roundtrip, pick_free_port, pick_port_range,
                     recv_exact, recv_until_eof, wait_closed, wait_for)


def _echo_ok(port, msg=b"ping"):
    try:
        return echo_roundtrip(port, msg, timeout=3) == msg
    except (AssertionError, OSError):
        return False


def test_client_kill9_closes_open_public_connection(mg):
    server, client, port = mg.tunnel()
    s = mg.track(connect(port))
    s.sendall(b"alive?")
    assert recv_exact(s, 6) == b"alive?"
    client.kill9()
    # the kernel closes the dead client's tunnel connection at once, so the
    # server learns of the death from EOF, not from its heartbeat (3 x 10 s):
    # a 20 s wait tells the two apart however slow the machine is
    how = wait_closed(s, timeout=20)
    assert how in ("eof", "reset"), (
        "public connection still open 20s after the client was killed (-9)\n" + mg.logs())
    assert server.alive()


def test_client_sigterm_exits_zero_with_summary(mg):
    server, client, port = mg.tunnel()
    assert _echo_ok(port)
    client.signal(signal.SIGTERM)
    rc = client.wait(10)
    assert rc == 0, "client exit code after SIGTERM: %r\n%s" % (rc, mg.logs())
    assert client.stderr().strip(), "client printed no summary on stderr"


def test_client_id_file(mg):
    server, client, port = mg.tunnel()
    path = os.path.join(client.state_dir, "mgrok", "client_id")
    assert os.path.isfile(path), "no client_id at %s" % path
    with open(path) as f:
        cid = f.read().strip()
    assert re.fullmatch(r"[0-9a-fA-F]{32}", cid), "client_id file holds %r" % cid


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_server_restart_client_returns_same_port(mg, how):
    base = pick_port_range(70)
    sport = pick_free_port()
    svc = mg.echo_service()
    server1 = mg.server(start_port=base + 20, n_ports=50, addr_port=sport)
    assert server1.port == sport
    c = mg.tcp_client(svc.port, server1)
    fw = mg.wait_forward(c)
    port = fw[0][2]
    assert _echo_ok(port)
    if how == "sigterm":
        server1.signal(signal.SIGTERM)
        if server1.wait(10) is None:
            pytest.fail("server did not exit within 10s of SIGTERM\n" + mg.logs())
    else:
        server1.kill9()
    # the new server's range starts 20 ports lower: a client that just asks
    # for "any port" would get base, not its old port
    server2 = None
    for _ in range(20):
        server2 = mg.server(start_port=base, n_ports=70, addr_port=sport, wait=False)
        ok = wait_for(lambda: "listening on" in server2.stderr() or not server2.alive(), 5)
        if ok and server2.alive():
            break
        time.sleep(0.25)
    assert server2 is not None and server2.alive(), "restarted server did not start\n" + mg.logs()
    ok = wait_for(lambda: _echo_ok(port), 30, interval=0.3)
    fw2 = c.forwards()
    assert ok, ("tunnel on public port %d did not come back within 30s of the server "
                "restart (%s); forwarding lines: %r\n%s" % (port, how, fw2, mg.logs()))
    assert c.alive()
    if len(fw2) > len(fw):
        assert fw2[-1][2] == port, "client re-registered on %r, expected port %d" % (fw2[-1], port)


@pytest.mark.parametrize("named", [False, True], ids=["default-name", "with-name"])
def test_client_restart_same_id_gets_same_port_at_once(mg, named):
    server = mg.server(extra=["--lease-grace", "30"])
    svc = mg.echo_service()
    state = mg.state_dir("same")
    extra = ["--name", "web"] if named else []
    c1 = mg.tcp_client(svc.port, server, state_dir=state, extra=extra)
    port = mg.wait_forward(c1)[0][2]
    assert _echo_ok(port)
    c1.kill9()
    # another client id must not get the leased port during the grace period
    other = mg.tcp_client(svc.port, server)
    oport = mg.wait_forward(other)[0][2]
    assert oport != port, "a different client id took port %d while it was leased" % port
    # "at once": the lease is taken over, not waited out; the wait is bounded
    # well below the 30 s grace, so a port that came back only when the
    # lease expired cannot pass
    c2 = mg.tcp_client(svc.port, server, state_dir=state, extra=extra)
    port2 = mg.wait_forward(c2, timeout=15)[0][2]
    assert port2 == port, "restarted client (same client_id) got port %d, expected %d\n%s" % (
        port2, port, mg.logs())
    assert "expired" not in server.stderr(), mg.logs()
    assert _echo_ok(port, b"back again")


def test_client_restart_with_explicit_client_id(mg):
    server = mg.server()
    svc = mg.echo_service()
    cid = os.urandom(16).hex()
    c1 = mg.tcp_client(svc.port, server, extra=["--client-id", cid])
    port = mg.wait_forward(c1)[0][2]
    c1.kill9()
    c2 = mg.tcp_client(svc.port, server, extra=["--client-id", cid])  # fresh state dir
    port2 = mg.wait_forward(c2, timeout=8)[0][2]
    assert port2 == port, "same --client-id got port %d, expected %d" % (port2, port)
    assert _echo_ok(port)


def test_newer_session_of_same_client_replaces_older(mg):
    """PROTOCOL 4.6: a second client with the same client_id takes over at
    once (same port); the first is told Goodbye code 11, says it was
    replaced, and exits non-zero without reconnecting."""
    server = mg.server()
    svc = mg.echo_service()
    cid = os.urandom(16).hex()
    c1 = mg.tcp_client(svc.port, server, extra=["--client-id", cid])
    port = mg.wait_forward(c1)[0][2]
    c2 = mg.tcp_client(svc.port, server, extra=["--client-id", cid])
    port2 = mg.wait_forward(c2, timeout=8)[0][2]
    assert port2 == port, "the newer session got port %d, expected %d" % (port2, port)
    rc = c1.wait(10)
    assert rc not in (None, 0), "the replaced client did not exit non-zero: %r\n%s" % (
        rc, mg.logs())
    assert "replaced" in c1.stderr(), mg.logs()
    assert c2.alive()
    assert _echo_ok(port)
    assert "replaced by session" in server.stderr(), mg.logs()


def test_connection_during_outage_is_served_after_return(mg):
    server = mg.server(extra=["--lease-grace", "20"])
    svc = mg.echo_service()
    state = mg.state_dir("outage")
    # --name: the default-name case is covered by the restart test above
    c1 = mg.tcp_client(svc.port, server, state_dir=state, extra=["--name", "svc"])
    port = mg.wait_forward(c1)[0][2]
    assert _echo_ok(port)
    c1.kill9()
    time.sleep(0.5)  # let the server notice the dead session
    s = mg.track(connect(port, timeout=5))
    payload = b"sent while the client was down " + os.urandom(2000)
    s.sendall(payload)
    time.sleep(1.0)
    c2 = mg.tcp_client(svc.port, server, state_dir=state, extra=["--name", "svc"])
    port2 = mg.wait_forward(c2, timeout=10)[0][2]
    assert port2 == port, "client came back on %d, expected %d" % (port2, port)
    try:
        got = recv_exact(s, len(payload), timeout=10)
    except AssertionError as e:
        pytest.fail("connection made during the outage was not served: %s\n%s" % (e, mg.logs()))
    assert got == payload
    s.shutdown(socket.SHUT_WR)
    rest, how = recv_until_eof(s, timeout=5)
    assert (rest, how) == (b"", "eof")


def test_outage_connection_refused_after_grace(mg):
    server = mg.server(extra=["--lease-grace", "2"])
    svc = mg.echo_service()
    c1 = mg.tcp_client(svc.port, server)
    port = mg.wait_forward(c1)[0][2]
    c1.kill9()
    held = re.compile(r"lease of tcp .* on port %d held for 2 s" % port)
    assert wait_for(lambda: held.search(server.stderr()), 10), (
        "server did not hold the lease after kill -9\n" + mg.logs())
    # during the grace the port is held: a visitor is accepted and waits
    # (a refusal here means the lease was dropped early: a failure)
    try:
        s = mg.track(connect(port, timeout=5))
    except OSError as e:
        pytest.fail("port %d refused a visitor during its 2s lease grace: %r\n%s"
                    % (port, e, mg.logs()))
    s.sendall(b"x")
    how = wait_closed(s, timeout=20)
    assert how in ("eof", "reset"), ("waiting public connection neither served nor "
                                     "refused 20s after a 2s lease grace\n" + mg.logs())
    assert re.search(r"on port %d expired: 1 waiting" % port, server.stderr()), (
        "the waiting visitor was not counted when the lease expired\n" + mg.logs())
    # and the port is free again afterwards
    assert wait_for(lambda: _refused(port), 10), "port %d still accepting after grace" % port


def _refused(port):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=1)
    except OSError:
        return True
    s.close()
    return False


def test_heartbeat_keeps_idle_tunnel_and_drops_silent_session(mg):
    """--heartbeat 1: the real client's idle session survives well past three
    intervals, while a raw session that goes silent after login is closed."""
    import smux
    server = mg.server(extra=["--heartbeat", "1"])
    svc = mg.echo_service()
    c = mg.tcp_client(svc.port, server)
    port = mg.wait_forward(c)[0][2]
    s = mg.track(connect(port))
    s.sendall(b"one")
    assert recv_exact(s, 3) == b"one"
    # t0 before the session's last frame (the login): however late this
    # thread runs, the server cannot close it sooner than 3 intervals after t0
    t0 = time.monotonic()
    silent = smux.PyClient(server.port, version=2)
    mg.track(silent.sock)
    silent.start()
    silent.login_token(mg.token.encode())
    # the default heartbeat (3 x 10 s) would close it only after 30 s
    closed = silent.wait_closed(20)
    took = time.monotonic() - t0
    hb = [m for m in silent.ctrl if m[:1] == bytes([smux.T_AUTHOK])]
    silent.close()
    assert closed, "a session silent for 20s was not closed with --heartbeat 1\n" + mg.logs()
    assert took >= 2.0, "silent session closed after only %.1fs (3 intervals = 3s)" % took
    assert hb, "no AuthOK among the control messages %r" % silent.ctrl
    assert struct_unpack_hb(hb[0]) == 1, "AuthOK heartbeat_s %d, expected 1" % struct_unpack_hb(hb[0])
    # the idle real tunnel (about 3+ s without traffic) still works on the same connection
    s.sendall(b"two")
    assert recv_exact(s, 3) == b"two", "idle tunnel connection broken"
    assert c.alive()
    assert len(c.forwards()) == 1, "client reconnected during idle time: %r" % c.forwards()


def struct_unpack_hb(authok):
    import struct
    return struct.unpack(">H", authok[5:7])[0]
