"""Failure handling: bad tokens, ports in use, local service down, garbage on
the control port, HMAC authentication from a hand-written client."""

import errno
import os
import re
import socket
import struct
import time

import pytest

from helpers import (HOST, connect, echo_roundtrip, pick_free_port, recv_exact,
                     recv_until_eof, wait_closed, wait_for)
import smux
from smux import (FIN, NOP, PSH, SYN, UPD, PyClient, frame)


def _mgrok_error_lines(text):
    return [l for l in text.splitlines() if l.startswith("mgrok: ")]


def test_wrong_token_exits_fast(mg):
    """A refused token ends the client: it does not retry (its retries
    would outlast the bounded wait below)."""
    server = mg.server()
    svc = mg.echo_service()
    c = mg.tcp_client(svc.port, server, token="not-the-token")
    rc = c.wait(20)
    assert rc is not None, "client with a wrong token still running after 20s\n" + mg.logs()
    assert rc != 0, "client with a wrong token exited 0\n" + mg.logs()
    err = c.stderr()
    lines = _mgrok_error_lines(err)
    assert any(re.search("auth", l, re.I) for l in lines), (
        "no 'mgrok: ...auth...' line on stderr:\n%s" % err)
    assert c.forwards() == [], "a forwarding line was printed despite the bad token"


def test_remote_port_in_use_by_other_client(mg):
    server = mg.server()
    svc = mg.echo_service()
    want = server.start_port + 7
    c1 = mg.tcp_client(svc.port, server, remote_port=want)
    fw = mg.wait_forward(c1)
    assert fw[0][2] == want, "asked for --remote-port %d, got %r" % (want, fw)
    c2 = mg.tcp_client(svc.port, server, remote_port=want)  # another client id
    rc = c2.wait(8)
    assert rc is not None, "second client asking for a taken port still running\n" + mg.logs()
    assert rc != 0, "second client exited 0\n" + mg.logs()
    lines = _mgrok_error_lines(c2.stderr())
    assert any(re.search("in use", l, re.I) for l in lines), (
        "no 'mgrok: ... in use' line on stderr:\n%s" % c2.stderr())
    assert any(str(want) in l for l in lines), "error does not name port %d: %r" % (want, lines)
    assert c2.forwards() == []
    assert c1.alive()
    assert echo_roundtrip(want, b"still mine") == b"still mine"


def test_remote_port_taken_by_foreign_listener(mg):
    server = mg.server()
    svc = mg.echo_service()
    want = server.start_port + 3
    squat = socket.socket()
    squat.bind((HOST, want))
    squat.listen(1)
    mg.track(squat)
    c = mg.tcp_client(svc.port, server, remote_port=want)
    rc = c.wait(8)
    assert rc is not None and rc != 0, "client got a port that another process holds (rc=%r)\n%s" % (
        rc, mg.logs())
    assert any(re.search("in use", l, re.I) for l in _mgrok_error_lines(c.stderr())), c.stderr()


def test_local_service_down_resets_public_connection(mg):
    dead = pick_free_port()  # nothing listens here
    server = mg.server()
    c = mg.tcp_client(dead, server)
    _, _, port, _ = mg.wait_forward(c)[0]
    # send nothing: a reset must come from the server, not from unread data;
    # on loopback it may come so fast that connect() itself reports it
    try:
        s = mg.track(connect(port))
        s.settimeout(10)
        d = s.recv(100)
        outcome = "clean close (EOF)" if d == b"" else "data %r" % d[:50]
    except ConnectionResetError:
        outcome = "reset"
    except socket.timeout:
        outcome = "timeout (nothing within 10s)"
    assert outcome == "reset", (
        "public connection to a tunnel whose local service is down: expected "
        "ECONNRESET (docs/protocol.md 4.5), got %s\n%s" % (outcome, mg.logs()))
    assert c.alive(), "client died after a refused local dial\n" + mg.logs()
    # once the service exists, the same tunnel works
    lst = socket.socket()
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind((HOST, dead))
    lst.listen(4)
    mg.track(lst)
    s2 = mg.track(connect(port))
    s2.sendall(b"now up")
    lst.settimeout(10)
    conn, _ = lst.accept()
    mg.track(conn)
    assert recv_exact(conn, 6) == b"now up"
    conn.sendall(b"reply")
    assert recv_exact(s2, 5) == b"reply"


# ---------------------------------------------------------------- garbage

def _garbage_cases(token):
    v2 = 2
    rnd = bytearray(os.urandom(64))
    rnd[0] = 0xEE  # no valid version: the server cannot wait for a payload
    return {
        "random64": bytes(rnd),
        "bad_version": frame(3, SYN, 3),
        "unknown_cmd": frame(v2, SYN, 3) + struct.pack("<BBHI", v2, 9, 0, 3),
        "psh_65535_not_handshake": frame(v2, SYN, 3) + frame(v2, PSH, 3, os.urandom(65535)),
        "psh_65535_then_unknown_cmd": frame(v2, SYN, 3) + frame(v2, PSH, 3, b"\x00" * 65535)
        + struct.pack("<BBHI", v2, 0x42, 0, 3),
        "syn_even_sid": frame(v2, SYN, 2),
        "nop_with_payload": frame(v2, SYN, 3) + frame(v2, NOP, 0, b"abcd"),
        "upd_len4": frame(v2, SYN, 3) + frame(v2, UPD, 3, b"\x00\x00\x01\x00"),
        "second_stream_after_auth": frame(v2, SYN, 3)
        + frame(v2, PSH, 3, smux.handshake_token(token)) + frame(v2, SYN, 5),
        "register_too_short": frame(v2, SYN, 3)
        + frame(v2, PSH, 3, smux.handshake_token(token)) + frame(v2, PSH, 3, b"\x01\x01"),
        "unknown_auth_method_then_data": frame(v2, SYN, 3) + frame(v2, PSH, 3, b"GRT1\x09xyz"),
    }


def test_garbage_on_control_port_closes_only_that_session(mg):
    server, client, port = mg.tunnel()
    live = mg.track(connect(port))
    live.sendall(b"before")
    assert recv_exact(live, 6) == b"before"
    cases = _garbage_cases(mg.token.encode())
    raws = {}
    for name, data in cases.items():
        r = mg.track(socket.create_connection((HOST, server.port), timeout=5))
        try:
            r.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        raws[name] = r
    # closed for the garbage, not by the heartbeat (3 x 10 s by default):
    # 15 s in all tells the two apart however slow the machine is
    outcomes = {}
    t0 = time.monotonic()
    for name, r in raws.items():
        left = max(0.5, 15.0 - (time.monotonic() - t0))
        outcomes[name] = wait_closed(r, timeout=left)
    not_closed = {k: v for k, v in outcomes.items() if v == "timeout"}
    assert not not_closed, ("server kept these garbage sessions open for 15s: %s\n%s"
                            % (sorted(not_closed), mg.logs()))
    assert server.alive(), "server died on garbage input\n" + mg.logs()
    assert client.alive(), "real client died\n" + mg.logs()
    live.sendall(b"after")
    assert recv_exact(live, 5) == b"after", "existing tunnel connection broken"
    assert echo_roundtrip(port, b"new conn after garbage") == b"new conn after garbage"


# ---------------------------------------------------------------- HMAC handshake

def _hmac_client(mg, server, version=2):
    pc = PyClient(server.port, version=version)
    mg.track(pc.sock)
    pc.start()
    return pc


def test_hmac_handshake_and_register(mg):
    server = mg.server()
    svc = mg.echo_service()
    pc = _hmac_client(mg, server)
    cn, cid = os.urandom(16), os.urandom(16)
    caps = 0x7
    try:
        sn, reply = pc.login_hmac(mg.token.encode(), cid, cn, caps=caps)
        assert reply is not None, "no AuthOK/AuthErr after AuthProof (closed: %s)\n%s" % (
            pc.closed, mg.logs())
        assert reply[0] == smux.T_AUTHOK, "expected AuthOK, got %r" % reply[:64]
        got_caps, hb, alen = struct.unpack(">IHB", reply[1:8])
        assert got_caps & ~caps == 0, "AuthOK caps 0x%x not a subset of 0x%x" % (got_caps, caps)
        assert hb > 0, "heartbeat_s is 0"
        assert len(reply) == 8 + alen, "AuthOK length %d, agent_len %d" % (len(reply), alen)
        # register a TCP proxy and use it
        pc.send_ctrl(smux.register(0x01, 0, svc.port, b"py-hmac"))
        ok = pc.wait_ctrl(lambda m: m[0] in (smux.T_REGISTER_OK, smux.T_REGISTER_ERR), 5)
        assert ok is not None and ok[0] == smux.T_REGISTER_OK, "Register answer: %r\n%s" % (
            ok, mg.logs())
        ptype, rport, nlen = struct.unpack(">BHB", ok[1:5])
        assert ptype == 0x01 and ok[5:5 + nlen] == b"py-hmac", ok
        url = ok[5 + nlen:].decode()
        assert url.startswith("tcp://") and url.endswith(":%d" % rport), url
        assert server.start_port <= rport <= server.end_port
        # the server opens a stream; our Python client echoes it
        s = mg.track(connect(rport))
        msg = os.urandom(5000)
        s.sendall(msg)
        assert recv_exact(s, len(msg)) == msg
        hdr = pc.headers[0]
        assert hdr["remote_port"] == rport and hdr["name"] == b"py-hmac", hdr
        assert hdr["stream_id"] == hdr["sid"] and hdr["sid"] % 2 == 0, hdr
        if got_caps & 1:
            assert hdr["type"] == smux.T_NEWSTREAM_EX and hdr["af"] == 4, hdr
            assert hdr["addr"] == b"\x7f\x00\x00\x01" and hdr["port"] == s.getsockname()[1], hdr
        else:
            assert hdr["type"] == smux.T_NEWSTREAM, hdr
        assert not pc.errors, pc.errors
    finally:
        pc.close()


def test_hmac_wrong_mac_gets_autherr_2(mg):
    server = mg.server()
    pc = _hmac_client(mg, server)
    try:
        sn, reply = pc.login_hmac(mg.token.encode(), os.urandom(16), os.urandom(16),
                                  mac=os.urandom(32))
        assert reply is not None, "no reply to a wrong AuthProof (closed: %s)" % pc.closed
        assert reply[0] == smux.T_AUTHERR and len(reply) >= 2, reply[:64]
        assert reply[1] == 2, "AuthErr code %d, expected 2" % reply[1]
        assert pc.wait_closed(5), "server kept the connection open after AuthErr"
    finally:
        pc.close()


def test_hmac_bad_version_and_unknown_method_get_code_3(mg):
    server = mg.server()
    for name, hs in (("hmac ver 2", smux.handshake_hmac(os.urandom(16), os.urandom(16), ver=2)),
                     ("method 0x09", b"GRT1\x09" + os.urandom(20))):
        pc = _hmac_client(mg, server)
        try:
            pc.open_control()
            pc.send_ctrl(hs)
            m = pc.wait_ctrl(lambda m: True, 5)
            assert m is not None and m[0] == smux.T_AUTHERR and m[1] == 3, (
                "%s: expected AuthErr code 3, got %r (closed %s)" % (name, m, pc.closed))
            assert pc.wait_closed(5), "%s: connection not closed after AuthErr" % name
        finally:
            pc.close()


def test_no_plain_token_refuses_token_method(mg):
    server = mg.server(extra=["--no-plain-token"])
    pc = _hmac_client(mg, server)
    try:
        pc.login_token(mg.token.encode())
        m = pc.wait_ctrl(lambda m: True, 5)
        assert m is not None and m[0] == smux.T_AUTHERR and m[1] == 3, (
            "TOKEN with --no-plain-token: expected AuthErr code 3, got %r" % (m,))
        assert pc.wait_closed(5)
    finally:
        pc.close()
    # the real client (HMAC) still works there
    svc = mg.echo_service()
    c = mg.tcp_client(svc.port, server)
    _, _, port, _ = mg.wait_forward(c)[0]
    assert echo_roundtrip(port, b"hmac client ok") == b"hmac client ok"
