"""Interop: the Go smux reference peer against `mgrok mux-peer`, and a
legacy-style mgrok client written in Python (raw smux frames)."""

import os
import re
import socket
import struct
import subprocess

import pytest

from helpers import (HOST, LISTEN_RE, Proc, connect, echo_roundtrip, pick_free_port,
                     recv_exact, recv_until_eof, wait_for)
import smux
from smux import PyClient


def _start(mg, name, argv):
    p = Proc(mg._name(name), argv, dict(os.environ), mg.workdir)
    mg.procs.append(p)
    return p


def _mux_peer_v1_args(mg):
    """mux-peer has to be told to speak smux v1 when it dials a v1 peer: find
    the flag in its --help (or take MGROK_MUXPEER_V1_ARGS)."""
    if os.environ.get("MGROK_MUXPEER_V1_ARGS"):
        return os.environ["MGROK_MUXPEER_V1_ARGS"].split(), ""
    r = subprocess.run([mg.bin, "mux-peer", "--help"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=10)
    text = r.stdout.decode(errors="replace")
    for pat in (r"--smux[-_]?ver(?:sion)?\b", r"--mux[-_]?ver(?:sion)?\b",
                r"--proto(?:col)?[-_]?ver(?:sion)?\b", r"--smux\b", r"--ver\b"):
        m = re.search(pat, text)
        if m:
            return [m.group(0), "1"], text
    if re.search(r"--v1\b", text):
        return ["--v1"], text
    return None, text


@pytest.mark.parametrize("ver", [2, 1])
def test_go_client_against_mgrok_mux_peer_listen(mg, smuxpeer_bin, ver):
    port = pick_free_port()
    peer = _start(mg, "mux-peer-listen", [mg.bin, "mux-peer", "--listen", "%s:%d" % (HOST, port)])
    up = wait_for(lambda: LISTEN_RE.search(peer.stderr()) or not peer.alive(), 10)
    assert up and peer.alive(), "mgrok mux-peer --listen did not start\n" + mg.logs()
    go = _start(mg, "smuxpeer-client", [smuxpeer_bin, "-mode", "client", "-connect",
                                        "%s:%d" % (HOST, port), "-smuxver", str(ver),
                                        "-test", "echo", "-streams", "8", "-rounds", "3",
                                        "-bytes", str(1 << 20), "-maxtime", "20s"])
    rc = go.wait(25)
    out = go.stdout()
    assert rc == 0 and "ok=true" in out, (
        "Go smux v%d client (-test echo, 8 streams x 3 x 1 MiB) against mgrok mux-peer "
        "--listen: rc=%r, output %r. Note: smuxpeer's echo test speaks its request "
        "protocol ('E' | u64 BE length, then the bytes; see tests/interop/smuxpeer), so "
        "the mux-peer server must answer 'E' requests with exactly the payload.\n%s"
        % (ver, rc, out.strip(), mg.logs()))
    assert peer.alive(), "mux-peer died after the session\n" + mg.logs()


@pytest.mark.parametrize("ver", [2, 1])
def test_mgrok_mux_peer_connect_against_go_server(mg, smuxpeer_bin, ver):
    port = pick_free_port()
    go = _start(mg, "smuxpeer-server", [smuxpeer_bin, "-mode", "server", "-listen",
                                        "%s:%d" % (HOST, port), "-serve", "echo",
                                        "-smuxver", str(ver), "-maxtime", "60s"])
    up = wait_for(lambda: "listening on" in go.stderr() or not go.alive(), 10)
    assert up and go.alive(), "smuxpeer server did not start\n" + mg.logs()
    argv = [mg.bin, "mux-peer", "--connect", "%s:%d" % (HOST, port),
            "--streams", "8", "--bytes", str(1 << 20)]
    if ver == 1:
        v1args, helptext = _mux_peer_v1_args(mg)
        assert v1args, ("`mgrok mux-peer --help` shows no flag to speak smux v1 when "
                      "dialing (a Go smux v1 server rejects v2 frames):\n" + helptext)
        argv += v1args
    mp = _start(mg, "mux-peer-connect", argv)
    rc = mp.wait(25)
    text = mp.stdout() + mp.stderr()
    assert rc == 0 and "mux-peer: 8 streams ok" in text, (
        "mgrok mux-peer --connect (smux v%d, 8 streams x 1 MiB) against the Go echo "
        "server: rc=%r\n%s" % (ver, rc, mg.logs()))


def test_go_sender_gets_grown_windows(mg, smuxpeer_bin):
    """A Go smux v2 client uploading as fast as it can waits on our window:
    mgrok's receive window grows (1 MiB, 2, 4, 8 MiB, then no further), the
    Go side honours the bigger windows (no protocol error, the upload
    completes), and a 64 MiB echo round trip on a grown window comes back
    intact (smuxpeer compares it)."""
    port = pick_free_port()
    peer = _start(mg, "mux-peer-listen", [mg.bin, "mux-peer", "--listen", "%s:%d" % (HOST, port),
                                          "--log-level", "debug"])
    up = wait_for(lambda: LISTEN_RE.search(peer.stderr()) or not peer.alive(), 10)
    assert up and peer.alive(), "mgrok mux-peer --listen did not start\n" + mg.logs()
    for args, what in ((["-test", "upload", "-duration", "2s"], "upload"),
                       (["-test", "echo", "-rounds", "1", "-bytes", str(64 << 20)], "echo 64 MiB")):
        go = _start(mg, "smuxpeer-client", [smuxpeer_bin, "-mode", "client", "-connect",
                                            "%s:%d" % (HOST, port), "-streams", "1",
                                            "-maxtime", "30s"] + args)
        rc = go.wait(40)
        assert rc == 0 and "ok=true" in go.stdout(), (
            "Go smux client (%s) against mgrok mux-peer: rc=%r %r\n%s"
            % (what, rc, go.stdout().strip(), mg.logs()))
    assert peer.alive(), "mux-peer died\n" + mg.logs()
    log = peer.stderr()
    assert "protocol error" not in log, log[-3000:]
    steps = [int(x) for x in re.findall(r"receive window (\d+) KiB", log)]
    assert 8192 in steps and max(steps) == 8192, "window growth: %r\n%s" % (steps, log[-3000:])


# ---------------------------------------------------------------- legacy Python client

@pytest.mark.parametrize("ver", [1, 2])
def test_legacy_python_client(mg, ver):
    server = mg.server()
    remote = server.start_port + 11
    pc = PyClient(server.port, version=ver)
    mg.track(pc.sock)
    try:
        # legacy flow: SYN 3, handshake, Register, all without waiting for a reply
        pc.send_raw(smux.frame(ver, smux.SYN, 3)
                    + smux.frame(ver, smux.PSH, 3, smux.handshake_token(mg.token.encode()))
                    + smux.frame(ver, smux.PSH, 3, smux.register(0x01, remote, 4000, b"legacy")))
        pc.start()
        ok = pc.wait_ctrl(lambda m: m[0] in (smux.T_REGISTER_OK, smux.T_REGISTER_ERR,
                                             smux.T_AUTHERR, smux.T_ERROR), 5)
        assert ok is not None and ok[0] == smux.T_REGISTER_OK, (
            "legacy v%d client: expected RegisterOK, got %r (control msgs %r, closed %s)\n%s"
            % (ver, ok, pc.ctrl, pc.closed, mg.logs()))
        auth = [m for m in pc.ctrl if m[0] == smux.T_AUTHOK]
        assert auth and struct.unpack(">I", auth[0][1:5])[0] == 0, (
            "TOKEN session: expected AuthOK with caps 0 before RegisterOK, got %r" % pc.ctrl)
        assert struct.unpack(">BHB", ok[1:5])[:2] == (0x01, remote), ok
        payloads = [os.urandom(300 * 1024), b"x", os.urandom(70000)]
        socks = [mg.track(connect(remote)) for _ in payloads]
        for s, p in zip(socks, payloads):
            s.sendall(p)
        for s, p in zip(socks, payloads):
            got = recv_exact(s, len(p), timeout=15)
            assert got == p, "echo through the legacy v%d client differs" % ver
            s.shutdown(socket.SHUT_WR)
            rest, how = recv_until_eof(s, timeout=5)
            assert (rest, how) == (b"", "eof"), (rest[:20], how)
        assert len(pc.headers) == len(payloads), pc.headers
        for h in pc.headers:
            assert h["type"] == smux.T_NEWSTREAM, "legacy client got header type 0x%02x" % h["type"]
            assert h["stream_id"] == h["sid"], h
            assert h["sid"] % 2 == 0, h
            assert h["remote_port"] == remote and h["name"] == b"legacy", h
        assert not pc.errors, pc.errors
        assert all(f[0] == ver for f in pc.frames_seen), "server answered in another version"
    finally:
        pc.close()


def test_legacy_token_takeover_by_later_session(mg):
    """PROTOCOL 4.6: a TOKEN session's lease is taken over by a later session
    of the same identity registering the same name, type and port."""
    server = mg.server()
    remote = server.start_port + 5
    first = PyClient(server.port, version=1)
    mg.track(first.sock)
    first.start()
    first.login_token(mg.token.encode())
    first.send_ctrl(smux.register(0x01, remote, 1, b"legacy"))
    assert first.wait_ctrl(lambda m: m[0] == smux.T_REGISTER_OK, 5), first.ctrl
    second = PyClient(server.port, version=1)
    mg.track(second.sock)
    second.start()
    second.login_token(mg.token.encode())
    second.send_ctrl(smux.register(0x01, remote, 1, b"legacy"))
    ok = second.wait_ctrl(lambda m: m[0] in (smux.T_REGISTER_OK, smux.T_REGISTER_ERR), 5)
    assert ok is not None and ok[0] == smux.T_REGISTER_OK, (
        "second TOKEN session with the same name/port: %r\n%s" % (ok, mg.logs()))
    assert echo_roundtrip(remote, b"served by the newer session") == b"served by the newer session"
    assert len(second.headers) == 1 and not first.headers, (first.headers, second.headers)
    first.close()
    second.close()
