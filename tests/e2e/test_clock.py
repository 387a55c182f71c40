"""Wall-clock steps: a session and its tunnels survive the clock jumping
2 h forward and 2 h back (timeouts read the monotonic clock; the wall clock
is only for what a person reads).

The server and the agent run under libfaketime (Debian's `faketime`): their
wall clock (gettimeofday, clock_gettime(CLOCK_REALTIME)) is the real one
plus the offset in a file the test rewrites mid-session, while
CLOCK_MONOTONIC is left alone (FAKETIME_DONT_FAKE_MONOTONIC), as a real
step by a person or NTP leaves it. mgrok links libevent and OpenSSL
statically but libc dynamically, so the preload reaches every clock read.
"""

import datetime
import os
import re
import socket
import subprocess
import time

import pytest

from helpers import connect, recv_exact

LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
STAMP_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?Z? ", re.M)
HEARTBEAT_S = 1  # dead after 3 s without a frame: a wrong clock shows fast
# libevent re-reads the wall clock for its cached time of day every 5 s;
# a session that reads that cache for its timeouts notices a step within
# that, plus one keepalive tick
SETTLE_S = 9


def _set_offset(path, offset):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(offset + "\n")
    os.replace(tmp, path)  # a reader never sees half a line


def _stamps(text):
    return [datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")
            for m in STAMP_RE.finditer(text)]


def _echo(sock, i):
    msg = b"tick %d " % i + os.urandom(64)
    sock.sendall(msg)
    assert recv_exact(sock, len(msg), timeout=5) == msg


@pytest.fixture
def faked_clock(tmp_path, monkeypatch, mgrok_sanitized):
    if not os.path.exists(LIBFAKETIME):
        pytest.fail("libfaketime is not installed (scripts/deps.sh installs "
                    "faketime)", pytrace=False)
    path = str(tmp_path / "faketime")
    _set_offset(path, "+0")
    monkeypatch.setenv("LD_PRELOAD", LIBFAKETIME)
    if mgrok_sanitized:
        # ASan wants its runtime first among the libraries; the preload
        # comes before it, which is harmless for these clock functions
        monkeypatch.setenv("ASAN_OPTIONS", os.environ.get("ASAN_OPTIONS", "")
                           + ":verify_asan_link_order=0")
    monkeypatch.setenv("FAKETIME_TIMESTAMP_FILE", path)
    monkeypatch.setenv("FAKETIME_NO_CACHE", "1")
    monkeypatch.setenv("FAKETIME_DONT_FAKE_MONOTONIC", "1")
    # the preload works on a dynamically linked program here at all
    out = subprocess.run(["date", "-u", "+%s"], capture_output=True,
                         text=True, timeout=10).stdout.strip()
    assert abs(int(out) - time.time()) < 60, out
    return path


def test_clock_steps_keep_session(mg, faked_clock):
    server = mg.server(extra=["--heartbeat", str(HEARTBEAT_S)])
    server, client, port = mg.tunnel(server=server)
    s = mg.track(connect(port))
    _echo(s, 0)
    served = 1

    for step, hours in (("+2h", 2), ("-2h", -2)):
        t_step = time.time()
        _set_offset(faked_clock, step)
        # a new connection makes both ends log, stamped with their clock
        _echo(mg.track(connect(port)), 100 + served)
        # stay idle (keepalives only) while any clock-reading timeout
        # would fire, then use the connection opened before the step
        time.sleep(SETTLE_S)
        assert server.alive() and client.alive(), mg.logs()
        _echo(s, served)
        # and a new connection still gets through
        _echo(mg.track(connect(port)), 200 + served)
        served += 1
        # the step reached mgrok: its log stamps moved by about `hours`
        late = [t for t in _stamps(server.stderr() + client.stderr())
                if abs((t - datetime.datetime.utcfromtimestamp(t_step))
                       .total_seconds() - hours * 3600) < 600]
        assert late, ("no log line stamped %s: the clock step did not "
                      "reach mgrok\n%s" % (step, mg.logs()))

    logs = server.stderr() + client.stderr()
    for bad in ("no frame from the peer", "heartbeat timeout", "reconnect",
                "session closed", "connection lost"):
        assert bad not in logs, "%r after a clock step\n%s" % (bad, mg.logs())
    # one session all along: the agent connected once
    _set_offset(faked_clock, "+0")
    _echo(s, served)
    s.shutdown(socket.SHUT_WR)
