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


# ------------------------------------------- one line naming cause and fix
# (issue 11, item 13): each misconfiguration an agent can meet at start

from helpers import make_pki  # noqa: E402

HTTP_LISTEN_RE = re.compile(r"http listening on port (\d+)")


def _agent_fails_with(mg, c, text, timeout=15):
    rc = c.wait(timeout)
    err = c.stderr()
    assert rc is not None, "agent still running after %ds, wanted %r\n%s" % (
        timeout, text, mg.logs())
    assert rc != 0, "agent exited 0\n" + mg.logs()
    lines = [l for l in _mgrok_error_lines(err) if text in l]
    assert lines, "no 'mgrok: ...%s...' line:\n%s" % (text, err)
    assert "protocol error" not in lines[0] and "closed by the server" not in lines[0]
    return lines[0]


def test_plain_agent_against_tls_server(mg):
    pki = make_pki(mg, "pki")
    server = mg.server(extra=["--tls-cert", pki.server_pem, "--tls-key", pki.server_key])
    svc = mg.echo_service()
    t0 = time.monotonic()
    c = mg.tcp_client(svc.port, server)
    line = _agent_fails_with(mg, c, "the server speaks TLS: add --tls")
    assert "127.0.0.1:%d" % server.port in line, line
    assert time.monotonic() - t0 < 10


def test_tls_agent_against_plain_server(mg):
    pki = make_pki(mg, "pki")
    server = mg.server()
    svc = mg.echo_service()
    c = mg.tcp_client(svc.port, server, extra=["--tls", "--tls-ca", pki.ca_pem])
    line = _agent_fails_with(mg, c, "the server does not speak TLS")
    assert "drop --tls" in line, line


def _http_port_server(mg):
    hp = pick_free_port()
    server = mg.server(extra=["--domain", "t.test", "--http-addr", "%s:%d" % (HOST, hp)])
    assert wait_for(lambda: "http listening on port %d" % hp in server.stderr(), 10), mg.logs()
    return server, hp


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_agent_pointed_at_the_http_port(mg, tls):
    server, hp = _http_port_server(mg)
    svc = mg.echo_service()
    extra = []
    if tls:
        pki = make_pki(mg, "pki")
        extra = ["--tls-ca", pki.ca_pem]
    c = mg.tcp_client(svc.port, hp, extra=extra)
    line = _agent_fails_with(mg, c, "this is an HTTP server, not the mgrok control port")
    assert "--addr" in line, line


def test_listener_that_never_answers(mg):
    """A port that accepts and says nothing: a clear line within ~10 s,
    not 30 s of silence (and the agent keeps trying)."""
    lst = mg.track(socket.socket())
    lst.bind((HOST, 0))
    lst.listen(8)
    port = lst.getsockname()[1]
    svc = mg.echo_service()
    t0 = time.monotonic()
    c = mg.tcp_client(svc.port, port)
    want = "accepted the connection but sent nothing within 10 s"
    assert wait_for(lambda: want in c.stderr(), 15), mg.logs()
    took = time.monotonic() - t0
    assert took < 13, "took %.1fs" % took
    assert "127.0.0.1:%d" % port in c.stderr()
    assert c.alive(), "a silent server is not a configuration error: keep trying"


def _run(mg, args, timeout=10, env=None):
    import subprocess
    e = dict(os.environ)
    e.pop("MGROK_TOKEN", None)
    e["XDG_STATE_HOME"] = mg.state_dir()
    if env:
        e.update(env)
    r = subprocess.run([mg.bin] + list(args), stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, env=e)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def test_local_as_url(mg):
    """`mgrok http http://localhost:PORT` and `--local http://...`: the
    ngrok habit works; https:// and paths get a clear line."""
    server, hp = _http_port_server(mg)
    svc = mg.echo_service()
    argv = [mg.bin, "http", "http://127.0.0.1:%d" % svc.port, "--server",
            "%s:%d" % (HOST, server.port), "--token", mg.token]
    c = mg._client(argv, None, None)
    fw = mg.wait_forward(c)
    assert fw[0][0] == "http" and fw[0][3] == ("127.0.0.1", svc.port), fw
    argv = [mg.bin, "client", "--local", "http://127.0.0.1:%d/" % svc.port,
            "--local", "tcp://127.0.0.1:%d" % svc.port, "--server",
            "%s:%d" % (HOST, server.port), "--token", mg.token]
    c2 = mg._client(argv, None, None)
    kinds = sorted(f[0] for f in mg.wait_forward(c2, count=2))
    assert kinds == ["http", "tcp"], kinds
    rc, _, err = _run(mg, ["http", "https://localhost:3000", "--token", "x"])
    assert rc == 2 and "https:// local service is not supported" in err, err
    rc, _, err = _run(mg, ["http", "http://localhost:3000/app", "--token", "x"])
    assert rc == 2 and "a path is not forwarded" in err, err
    rc, _, err = _run(mg, ["tcp", "http://localhost:3000", "--token", "x"])
    assert rc == 2 and "mgrok tcp takes [HOST:]PORT or tcp://HOST:PORT" in err, err


def test_https_cert_error_names_https_cert(mg):
    # --addr on loopback: a server that got past the check must not listen
    # on every address
    rc, _, err = _run(mg, ["server", "--token", "t", "--addr", "127.0.0.1:0",
                           "--https-addr", "127.0.0.1:0",
                           "--https-cert", "nope.pem", "--https-key", "nope.key"])
    assert rc != 0
    assert "--https-cert nope.pem: No such file or directory" in err, err
    assert "--tls-cert" not in err, err
    rc, _, err = _run(mg, ["tcp", "22", "--token", "t", "--tls-ca", "nope-ca.pem"])
    assert rc != 0 and "--tls-ca nope-ca.pem: No such file or directory" in err, err


def test_server_without_port_means_9000(mg):
    rc, _, err = _run(mg, ["tcp", "22", "--token", "t", "--server", "127.0.0.1",
                           "--no-reconnect", "--log-level", "debug"], timeout=30)
    assert rc != 0
    # whatever listens on 9000 here (nothing, or another server), the
    # agent went there
    assert "connecting to 127.0.0.1:9000" in err, err
    assert "expected HOST:PORT" not in err and "port must be" not in err, err


@pytest.mark.parametrize("args", [
    ["tcp", "70000"], ["tcp", "0"], ["tcp", "localhost:99999"],
    ["tcp", "22", "--remote-port", "0"], ["tcp", "22", "--remote-port", "65536"],
    ["tcp", "22", "--server", "h:0"], ["client", "--local", "udp:h:123456"],
    ["server", "--addr", "127.0.0.1:0", "--start-port", "0"],
    ["server", "--addr", "127.0.0.1:0", "--end-port", "70000"],
])
def test_port_errors_agree_on_the_range(mg, args):
    rc, _, err = _run(mg, args + ["--token", "t"])
    assert rc == 2, (args, rc, err)
    assert "port must be 1-65535" in err, (args, err)
    assert "0 to 65535" not in err and "from 1 to 65535" not in err, err


def test_token_file_lines_are_trimmed(mg):
    path = os.path.join(mg.workdir, "tokens")
    with open(path, "wb") as f:
        f.write(b"# tokens\r\n  spaced-token \t\r\n\r\ncrlf-token\r\n")
    server = mg.server(token="unused", extra=["--token-file", path])
    svc = mg.echo_service()
    for t in ("spaced-token", "crlf-token"):
        c = mg.tcp_client(svc.port, server, token=t)
        port = mg.wait_forward(c)[0][2]
        assert echo_roundtrip(port, b"ok") == b"ok"


def test_tls_agent_against_an_https_server(mg):
    """After the TLS handshake an HTTPS server answers the mgrok handshake
    with HTTP: the agent says what it probably is, and keeps trying."""
    import ssl
    import threading
    pki = make_pki(mg, "pki")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.server_pem, pki.server_key)
    lst = mg.track(socket.socket())
    lst.bind((HOST, 0))
    lst.listen(8)
    lst.settimeout(0.5)
    port = lst.getsockname()[1]
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                raw, _ = lst.accept()
            except (socket.timeout, OSError):
                continue
            try:
                raw.settimeout(5)
                s = ctx.wrap_socket(raw, server_side=True)
                s.recv(100)
                s.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                s.close()
            except (OSError, ssl.SSLError):
                raw.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        svc = mg.echo_service()
        c = mg.tcp_client(svc.port, port, extra=["--tls-ca", pki.ca_pem])
        want = "not an HTTPS server"
        assert wait_for(lambda: want in c.stderr(), 10), mg.logs()
        assert "127.0.0.1:%d" % port in c.stderr()
        assert c.alive()
    finally:
        stop.set()
        t.join(3)
