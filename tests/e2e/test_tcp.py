"""TCP tunnels: echo, bulk transfer, concurrency, half-close, head-of-line blocking."""

import hashlib
import os
import re
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from helpers import (connect, echo_roundtrip, pattern_chunks, recv_exact,
                     recv_until_eof, wait_for)


def test_echo_through_tunnel(mg):
    server, client, port = mg.tunnel()
    assert server.start_port <= port <= server.end_port, (
        "public port %d outside --start-port/--end-port %d-%d"
        % (port, server.start_port, server.end_port))
    for size in (1, 5, 1000, 65536, 300000):
        payload = os.urandom(size)
        got = echo_roundtrip(port, payload)
        assert got == payload, "echo of %d bytes differs\n%s" % (size, mg.logs())
    # the same connection, several request/response rounds
    s = mg.track(connect(port))
    for i in range(20):
        msg = b"round %d " % i + os.urandom(i * 37)
        s.sendall(msg)
        assert recv_exact(s, len(msg)) == msg
    s.shutdown(socket.SHUT_WR)
    rest, how = recv_until_eof(s, timeout=5)
    assert (rest, how) == (b"", "eof"), (rest[:64], how)


def test_token_from_env_and_second_token(mg):
    t2 = "second-" + os.urandom(6).hex()
    server = mg.server(token=[mg.token, t2])
    svc = mg.echo_service()
    c1 = mg.tcp_client(svc.port, server, token_env=t2)
    _, _, port, _ = mg.wait_forward(c1)[0]
    assert echo_roundtrip(port, b"hello via MGROK_TOKEN") == b"hello via MGROK_TOKEN"
    c2 = mg.tcp_client(svc.port, server, token=mg.token)
    _, _, port2, _ = mg.wait_forward(c2)[0]
    assert port2 != port
    assert echo_roundtrip(port2, b"first token") == b"first token"


def test_bulk_256mib_each_way_sha256(mg):
    """256 MiB up and 256 MiB down, concurrently, on one public connection.
    The local service hashes what it receives and streams its own 256 MiB."""
    total = 256 << 20
    res = {}

    def service(c, idx):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.settimeout(60)

        def sink():
            h = hashlib.sha256()
            n = 0
            buf = bytearray(1 << 20)
            while True:
                k = c.recv_into(buf)
                if not k:
                    break
                h.update(memoryview(buf)[:k])
                n += k
            res["svc_rx"] = (n, h.hexdigest())

        t = threading.Thread(target=sink, daemon=True)
        t.start()
        h = hashlib.sha256()
        for chunk in pattern_chunks(total, seed=2):
            h.update(chunk)
            c.sendall(chunk)
        res["svc_tx"] = (total, h.hexdigest())
        c.shutdown(socket.SHUT_WR)
        t.join(90)

    svc = mg.service(service)
    server, client, port = mg.tunnel(service=svc)
    s = mg.track(connect(port, timeout=60))
    s.settimeout(60)
    errors = []

    def upload():
        try:
            h = hashlib.sha256()
            for chunk in pattern_chunks(total, seed=1):
                h.update(chunk)
                s.sendall(chunk)
            res["cli_tx"] = (total, h.hexdigest())
            s.shutdown(socket.SHUT_WR)
        except Exception as e:
            errors.append("upload: %r" % e)

    t0 = time.monotonic()
    up = threading.Thread(target=upload, daemon=True)
    up.start()
    h = hashlib.sha256()
    n = 0
    buf = bytearray(1 << 20)
    deadline = t0 + 180  # a bound for a stuck transfer, not a speed target
    try:
        while time.monotonic() < deadline:
            k = s.recv_into(buf)
            if not k:
                break
            h.update(memoryview(buf)[:k])
            n += k
    except Exception as e:
        errors.append("download: %r after %d bytes" % (e, n))
    res["cli_rx"] = (n, h.hexdigest())
    up.join(max(1, deadline - time.monotonic()))
    ok = wait_for(lambda: "svc_rx" in res, max(1, deadline - time.monotonic()))
    assert not errors, "%s\nres=%r\n%s" % (errors, res, mg.logs())
    assert ok, "service never saw EOF of the upload; res=%r\n%s" % (res, mg.logs())
    assert res["cli_tx"] == res["svc_rx"], "upload corrupted: %r\n%s" % (res, mg.logs())
    assert res["svc_tx"] == res["cli_rx"], "download corrupted: %r\n%s" % (res, mg.logs())
    assert res["cli_rx"][0] == total


def test_200_concurrent_connections(mg):
    server, client, port = mg.tunnel()
    n = 200
    payloads = [b"conn-%03d:" % i + os.urandom(4096 + 97 * i) for i in range(n)]
    socks = []
    for i in range(n):
        socks.append(mg.track(connect(port, timeout=10)))

    def one(i):
        s = socks[i]
        s.sendall(payloads[i])
        got = recv_exact(s, len(payloads[i]), timeout=30)
        s.shutdown(socket.SHUT_WR)
        rest, how = recv_until_eof(s, timeout=10)
        return got, rest, how

    with ThreadPoolExecutor(max_workers=50) as ex:
        results = list(ex.map(one, range(n)))
    bad = [i for i, (got, rest, how) in enumerate(results)
           if got != payloads[i] or rest or how != "eof"]
    assert not bad, ("connections with a wrong reply or close: %s (first: got %r... "
                     "expected %r..., rest=%r, %s)\n%s"
                     % (bad[:10], results[bad[0]][0][:20], payloads[bad[0]][:20],
                        results[bad[0]][1][:20], results[bad[0]][2], mg.logs()))


def test_half_close(mg):
    """Public side half-closes; the local service reads to EOF, then sends
    a large reply and closes; the public client reads all of it."""
    up = os.urandom(300 * 1024)
    reply_tail = os.urandom(1 << 20)
    seen = {}

    def service(c, idx):
        data, how = recv_until_eof(c, timeout=30)
        seen["data"], seen["how"] = data, how
        c.sendall(hashlib.sha256(data).digest() + struct.pack(">Q", len(data)) + reply_tail)
        c.close()

    svc = mg.service(service)
    server, client, port = mg.tunnel(service=svc)
    s = mg.track(connect(port))
    s.sendall(up)
    s.shutdown(socket.SHUT_WR)
    reply, how = recv_until_eof(s, timeout=30)
    assert seen.get("how") == "eof", "local service did not see EOF: %r\n%s" % (
        seen.get("how"), mg.logs())
    assert seen["data"] == up
    expect = hashlib.sha256(up).digest() + struct.pack(">Q", len(up)) + reply_tail
    assert how == "eof", "public side ended with %s after %d bytes\n%s" % (
        how, len(reply), mg.logs())
    assert len(reply) == len(expect), "reply %d bytes, expected %d" % (len(reply), len(expect))
    assert reply == expect


def test_half_close_other_direction(mg):
    """Local service half-closes first; public client keeps sending after EOF."""
    first = os.urandom(1000)
    later = os.urandom(200 * 1024)
    seen = {}

    def service(c, idx):
        c.sendall(first)
        c.shutdown(socket.SHUT_WR)
        data, how = recv_until_eof(c, timeout=30)
        seen["data"], seen["how"] = data, how

    svc = mg.service(service)
    server, client, port = mg.tunnel(service=svc)
    s = mg.track(connect(port))
    got, how = recv_until_eof(s, timeout=10)
    assert (got, how) == (first, "eof"), (len(got), how)
    s.sendall(later)
    s.shutdown(socket.SHUT_WR)
    assert wait_for(lambda: "how" in seen, 15), "service never saw EOF\n" + mg.logs()
    assert seen["how"] == "eof" and seen["data"] == later, (
        "service got %d bytes (%s), expected %d" % (len(seen["data"]), seen["how"], len(later)))


def test_stalled_stream_does_not_block_others(mg):
    """Conn A's local reader never reads; conn B still moves 64 MiB of echo."""
    stall_release = threading.Event()
    stalled = {}

    def service(c, idx):
        if idx == 0:
            stall_release.wait(120)
            data, how = recv_until_eof(c, timeout=60, limit=64 << 20)
            stalled["data"], stalled["how"] = data, how
            return
        while True:
            d = c.recv(256 * 1024)
            if not d:
                c.shutdown(socket.SHUT_WR)
                return
            c.sendall(d)

    svc = mg.service(service)
    server, client, port = mg.tunnel(service=svc)
    a = mg.track(connect(port))
    assert wait_for(lambda: svc.accepted >= 1, 10), "local service never got conn A\n" + mg.logs()
    # fill conn A as far as it goes
    a.setblocking(False)
    written = bytearray()
    chunk = os.urandom(64 * 1024)
    t_end = time.monotonic() + 3.0
    idle_since = time.monotonic()
    while time.monotonic() < t_end and len(written) < (32 << 20):
        try:
            k = a.send(chunk)
            written += chunk[:k]
            idle_since = time.monotonic()
        except BlockingIOError:
            if time.monotonic() - idle_since > 1.0:
                break
            time.sleep(0.01)
    assert len(written) >= 1 << 20, "could only write %d bytes on conn A" % len(written)

    # conn B: 64 MiB echo while A is stuck
    total = 64 << 20
    b = mg.track(connect(port, timeout=30))
    b.settimeout(30)
    errs = []
    tx = {}

    def send_b():
        try:
            h = hashlib.sha256()
            for c in pattern_chunks(total, seed=5):
                h.update(c)
                b.sendall(c)
            tx["h"] = h.hexdigest()
        except Exception as e:
            errs.append("send B: %r" % e)

    t0 = time.monotonic()
    th = threading.Thread(target=send_b, daemon=True)
    th.start()
    h = hashlib.sha256()
    n = 0
    buf = bytearray(1 << 20)
    try:
        while n < total and time.monotonic() - t0 < 90:  # bound, not a speed target
            k = b.recv_into(buf, min(len(buf), total - n))
            if not k:
                break
            h.update(memoryview(buf)[:k])
            n += k
    except Exception as e:
        errs.append("recv B: %r after %d bytes" % (e, n))
    th.join(10)
    elapsed = time.monotonic() - t0
    assert n == total and not errs, (
        "conn B moved %d of %d bytes in %.1fs while conn A was stalled "
        "(A had %d bytes written): %s\n%s" % (n, total, elapsed, len(written), errs, mg.logs()))
    assert h.hexdigest() == tx.get("h"), "conn B echo corrupted"

    # release A: every byte written on it must arrive, in order
    a.setblocking(True)
    a.shutdown(socket.SHUT_WR)
    stall_release.set()
    assert wait_for(lambda: "how" in stalled, 30), "stalled conn never drained\n" + mg.logs()
    assert stalled["how"] == "eof", stalled["how"]
    assert len(stalled["data"]) == len(written), (
        "stalled conn delivered %d of %d bytes" % (len(stalled["data"]), len(written)))
    assert stalled["data"] == bytes(written), "stalled conn data corrupted"


def test_client_with_two_locals(mg):
    """`mgrok client --local A --local B`: one session, two proxies, each public
    port reaches its own local service."""
    def tagger(tag):
        def h(c, idx):
            d, how = recv_until_eof(c, timeout=10)
            c.sendall(tag + d)
        return h

    s1 = mg.service(tagger(b"one:"))
    s2 = mg.service(tagger(b"two:"))
    server = mg.server()
    c = mg.multi_client([s1.port, s2.port], server)
    fw = mg.wait_forward(c, count=2)
    ports = [f[2] for f in fw[:2]]
    assert ports[0] != ports[1], fw
    locals_ = [f[3] for f in fw[:2]]
    if all(locals_):
        # the line names the local address: map by it
        by_local = {lp: p for p, (_, lp) in zip(ports, locals_)}
        assert set(by_local) == {s1.port, s2.port}, fw
        p1, p2 = by_local[s1.port], by_local[s2.port]
    else:
        p1, p2 = ports
    for p, tag in ((p1, b"one:"), (p2, b"two:"), (p1, b"one:")):
        s = mg.track(connect(p))
        s.sendall(b"ping")
        s.shutdown(socket.SHUT_WR)
        got, how = recv_until_eof(s, timeout=10)
        assert got == tag + b"ping", "port %d answered %r (%s)\n%s" % (p, got, how, mg.logs())


def _vmrss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def test_window_grows_and_memory_stays_bounded(mg, mgrok_sanitized):
    """A fast stream's receive window grows to --stream-window and no
    further; when its local service then stops reading, what the client
    buffers stays within that bound (the user's writes stall instead), and
    every byte arrives once the service reads again."""
    bound = 4 << 20
    fast = 48 << 20
    reading = threading.Event()
    reading.set()
    got = {}

    def service(c, idx):
        h = hashlib.sha256()
        n = 0
        buf = bytearray(1 << 20)
        while True:
            if n >= fast and not reading.is_set():
                reading.wait(60)
            k = c.recv_into(buf, len(buf) if n >= fast else min(len(buf), fast - n))
            if not k:
                break
            h.update(memoryview(buf)[:k])
            n += k
        got["n"], got["h"] = n, h.hexdigest()

    svc = mg.service(service)
    win = ["--stream-window", str(bound)]
    server = mg.server(extra=win)
    _, client, port = mg.tunnel(server=server, service=svc, extra=win + ["--log-level", "debug"])
    rss0 = _vmrss_kib(client.pid)
    reading.clear()  # the service stops after the first 48 MiB
    u = mg.track(connect(port))
    u.setblocking(False)
    h = hashlib.sha256()
    sent = 0
    chunk = os.urandom(256 * 1024)
    t_end = time.monotonic() + 30.0
    idle_since = time.monotonic()
    # write until the tunnel stops taking bytes for 1.5 s (bounded: 30 s, 512 MiB)
    while time.monotonic() < t_end and sent < (512 << 20):
        try:
            k = u.send(chunk)
            h.update(chunk[:k])
            sent += k
            idle_since = time.monotonic()
        except BlockingIOError:
            if time.monotonic() - idle_since > 1.5:
                break
            time.sleep(0.005)
    assert time.monotonic() - idle_since > 1.5, "the writes never stalled (%d bytes)\n%s" % (sent, mg.logs())
    assert sent > fast, "only %d bytes went in before the stall\n%s" % (sent, mg.logs())
    grown = _vmrss_kib(client.pid) - rss0
    # the stalled stream's queue is at most its window; allow 6 MiB for
    # partly filled chains, the allocator and the session's read buffer
    # (seen: 5.4 to 7.5 MiB in all; 30 MiB when the bound was ignored).
    # Under ASan, freed memory sits in quarantine: RSS says nothing there.
    if not mgrok_sanitized:
        assert grown <= (bound >> 10) + 6144, (
            "client RSS grew by %d KiB with a %d KiB window (%d bytes written)\n%s"
            % (grown, bound >> 10, sent, mg.logs()))
    log = client.stderr()
    steps = [int(x) for x in re.findall(r"receive window (\d+) KiB", log)]
    assert steps and steps == sorted(steps), "window growth: %r\n%s" % (steps, log[-3000:])
    assert max(steps) <= bound >> 10, "the window grew past the bound: %r" % steps
    # growth needs the sender to outrun the window round after round: an
    # instrumented (ASan) build on a loaded machine may stop a step short
    # in 48 MiB; the bound above is what must hold there
    if not mgrok_sanitized:
        assert steps[-1] == bound >> 10, "window growth: %r\n%s" % (steps, log[-3000:])
    # release: every byte arrives, in order
    reading.set()
    u.setblocking(True)
    u.shutdown(socket.SHUT_WR)
    assert wait_for(lambda: "n" in got, 60), "the service never saw EOF\n" + mg.logs()
    assert got["n"] == sent and got["h"] == h.hexdigest(), (
        "delivered %d of %d bytes (grown %d KiB)" % (got["n"], sent, grown))


def _read_to_end(sock, timeout):
    """Read sock until its end: ("reset", n) for a reset, ("eof", n) for an
    orderly end, ("timeout", n) when neither came within timeout."""
    sock.settimeout(1.0)
    n = 0
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            k = len(sock.recv(1 << 20))
        except ConnectionResetError:
            return "reset", n
        except socket.timeout:
            continue
        if k == 0:
            return "eof", n
        n += k
    return "timeout", n


def test_agent_killed_mid_download_resets_visitor(mg):
    """The agent dies (kill -9) during a big download: the visitor must see
    a reset, not an orderly end that makes a cut transfer look complete."""
    stop = threading.Event()

    def service(c, idx):
        zeros = bytes(1 << 20)
        c.settimeout(30)
        for _ in range(2048):  # up to 2 GiB, or until the tunnel dies
            if stop.is_set():
                break
            c.sendall(zeros)

    svc = mg.service(service)
    server, client, port = mg.tunnel(service=svc)
    v = mg.track(connect(port))
    v.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
    v.settimeout(10)
    got = 0
    # a slow visitor: the tunnel holds bytes for it when the agent dies
    while got < (32 << 20):
        k = len(v.recv(256 * 1024))
        assert k > 0, "the download ended after %d bytes\n%s" % (got, mg.logs())
        got += k
        time.sleep(0.002)
    client.kill9()
    how, more = _read_to_end(v, 20)
    stop.set()
    assert how == "reset", (
        "after the agent died the visitor saw %s after %d more bytes (of "
        "2 GiB): a cut download must end with a reset\n%s"
        % (how, more, mg.logs()))


def test_server_killed_mid_upload_resets_service(mg):
    """The other direction: the server (the visitor's side) dies during a
    big upload: the local service must see a reset, not an orderly end."""
    res = {}

    def service(c, idx):
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
        n = 0
        c.settimeout(1.0)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            try:
                k = len(c.recv(256 * 1024))
            except ConnectionResetError:
                res["how"] = "reset"
                break
            except socket.timeout:
                continue
            if k == 0:
                res["how"] = "eof"
                break
            n += k
            res["n"] = n
            time.sleep(0.002)  # a slow service: the tunnel holds bytes
        res.setdefault("how", "timeout")

    svc = mg.service(service)
    server, client, port = mg.tunnel(service=svc)
    v = mg.track(connect(port))
    v.settimeout(10)
    zeros = bytes(1 << 20)
    t_end = time.monotonic() + 60
    while res.get("n", 0) < (32 << 20) and time.monotonic() < t_end:
        v.sendall(zeros)
    assert res.get("n", 0) >= (32 << 20), "upload stalled at %d bytes\n%s" % (
        res.get("n", 0), mg.logs())
    server.kill9()
    assert wait_for(lambda: "how" in res, 70), "the service never saw the end"
    assert res["how"] == "reset", (
        "after the server died the service saw %s: a cut upload must end "
        "with a reset\n%s" % (res["how"], mg.logs()))


def _upload_until(v, res, n, timeout=60):
    zeros = bytes(1 << 20)
    t_end = time.monotonic() + timeout
    while res.get("n", 0) < n and time.monotonic() < t_end:
        v.sendall(zeros)
    return res.get("n", 0) >= n


def _slow_reader(res):
    """A service that reads slowly and records how its connection ended."""
    def service(c, idx):
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
        how, n = "timeout", 0
        c.settimeout(1.0)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            try:
                k = len(c.recv(256 * 1024))
            except ConnectionResetError:
                how = "reset"
                break
            except socket.timeout:
                continue
            if k == 0:
                how = "eof"
                break
            n += k
            res["n"] = n
            time.sleep(0.002)
        res["how"] = how
    return service


def test_visitor_reset_mid_upload_resets_service(mg):
    """The visitor's connection is reset during a big upload: the local
    service must see a reset too, not an orderly end (the stream carries
    the reset across the tunnel: mux_stream_abort)."""
    res = {}
    svc = mg.service(_slow_reader(res))
    server, client, port = mg.tunnel(service=svc)
    v = mg.track(connect(port))
    v.settimeout(10)
    assert _upload_until(v, res, 16 << 20), "upload stalled at %d bytes\n%s" % (
        res.get("n", 0), mg.logs())
    v.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    v.close()  # RST
    assert wait_for(lambda: "how" in res, 70), "the service never saw the end"
    assert res["how"] == "reset", (
        "after the visitor's reset the service saw %s after %d bytes: a cut "
        "upload must end with a reset\n%s" % (res["how"], res["n"], mg.logs()))
    # one stream failed, not the session
    assert client.alive() and "closed:" not in server.stderr(), mg.logs()


def test_service_reset_mid_download_resets_visitor(mg):
    """The local service resets its connection during a big download: the
    visitor must see a reset, not an orderly end."""
    def service(c, idx):
        zeros = bytes(1 << 20)
        c.settimeout(30)
        for _ in range(64):  # 64 MiB, then a reset
            c.sendall(zeros)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                     struct.pack("ii", 1, 0))

    svc = mg.service(service)
    server, client, port = mg.tunnel(service=svc)
    v = mg.track(connect(port))
    v.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
    how, n = _read_to_end(v, 60)
    assert how == "reset", (
        "after the service's reset the visitor saw %s after %d bytes: a cut "
        "download must end with a reset\n%s" % (how, n, mg.logs()))
