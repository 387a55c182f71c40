"""The cluster store (src/cluster/rstore.c, routes.c) against a real
redis-server on loopback, through the driver tests/cluster/rstore_drive.c:
route claims as one compare-and-set, fencing epochs, TTL expiry, pub/sub,
command timeouts and limits, and a Redis killed with SIGKILL and restarted
empty (reconnect with back-off, scripts loaded again, NOSCRIPT handled,
subscriptions back).

Run: make all build/rstore_drive, then
MGROK_BIN=build/mgrok /usr/bin/python3 -m pytest -q tests/e2e/test_rstore.py
"""

import os
import queue
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from helpers import wait_for

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
EVENTS = ("up", "down ", "msg ", "subscribed ")

pytestmark = pytest.mark.skipif(not os.access(REDIS, os.X_OK),
                                reason="redis-server is not installed "
                                       "(scripts/deps.sh installs it)")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def redis_ping(port, password=None, timeout=0.5):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            if password:
                s.sendall(b"AUTH %s\r\n" % password.encode())
                s.recv(100)
            s.sendall(b"PING\r\n")
            return s.recv(100).startswith(b"+PONG")
    except OSError:
        return False


class Redis:
    """A redis-server on 127.0.0.1:port, started through MgrokEnv.spawn
    (ended by PID in the test's cleanup), restartable on the same port."""

    def __init__(self, mg, port=None, password=None):
        self.mg = mg
        self.password = password
        self.port = port
        self.proc = None
        self.start()

    def start(self):
        for _ in range(5):
            port = self.port or free_port()
            argv = [REDIS, "--port", str(port), "--bind", "127.0.0.1",
                    "--save", "", "--appendonly", "no", "--daemonize", "no"]
            if self.password:
                argv += ["--requirepass", self.password]
            p = self.mg.spawn("redis", argv)
            if wait_for(lambda: redis_ping(port, self.password) or not p.alive(), 10.0) \
                    and p.alive():
                self.port, self.proc = port, p
                return
            p.stop(grace=0.5)
            if self.port:  # a fixed port: no other to try
                break
        raise AssertionError("redis-server did not start on %s" % (self.port or "a free port"))

    def kill9(self):
        self.proc.kill9()

    def url(self, db=0, password=None):
        pw = password if password is not None else self.password
        return "redis://%s127.0.0.1:%d/%d" % ((":%s@" % pw) if pw else "", self.port, db)


class Drive:
    """One rstore_drive process: commands on stdin, a line each on stdout
    (results in order; events `up`, `down`, `msg`, `subscribed` any time)."""

    def __init__(self, binpath, url, workdir, name, *extra):
        self.name = name
        self.err_path = os.path.join(str(workdir), name + ".stderr")
        self._err = open(self.err_path, "wb")
        self.p = subprocess.Popen([binpath, url] + [str(x) for x in extra],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self._err, close_fds=True)
        self.lines = []
        self.cond = threading.Condition()
        self.results = queue.Queue()
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for raw in self.p.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
            if not line.startswith(EVENTS) and line != "up":
                self.results.put(line)

    def send(self, line):
        self.p.stdin.write((line + "\n").encode())
        self.p.stdin.flush()

    def result(self, timeout=5.0):
        try:
            return self.results.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("%s: no result within %.0fs\n%s" % (self.name, timeout, self.log()))

    def call(self, line, timeout=5.0):
        self.send(line)
        return self.result(timeout)

    def mark(self):
        with self.cond:
            return len(self.lines)

    def wait_line(self, pred, start=0, timeout=10.0):
        """The first line at index >= start that pred accepts, or an error."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines[start:]:
                    if pred(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("%s: no such line within %.0fs\n%s"
                                         % (self.name, timeout, self.log()))
                self.cond.wait(left)

    def wait_up(self, start=0, timeout=10.0):
        return self.wait_line(lambda s: s == "up", start, timeout)

    def stats(self):
        line = self.call("stats")
        assert line.startswith("stats "), line
        return {k: int(v) for k, v in (kv.split("=") for kv in line.split()[1:])}

    def log(self):
        with open(self.err_path, "rb") as f:
            err = f.read().decode("utf-8", "replace")
        with self.cond:
            out = "\n".join(self.lines)
        return "---- %s (pid %d, rc %s)\n-- stdout:\n%s\n-- stderr:\n%s" % (
            self.name, self.p.pid, self.p.poll(), out[-4000:], err[-4000:])

    def stop(self):
        if self.p.poll() is None:
            try:
                self.p.stdin.close()
            except OSError:
                pass
            try:
                self.p.wait(timeout=3)
            except subprocess.TimeoutExpired:
                os.kill(self.p.pid, signal.SIGKILL)
                self.p.wait(timeout=5)
        self._err.close()


@pytest.fixture
def drives(rstore_drive_bin, tmp_path):
    made = []

    def start(url, *extra, up=True):
        d = Drive(rstore_drive_bin, url, tmp_path, "drive%d" % len(made), *extra)
        made.append(d)
        if up:
            d.wait_up()
        return d

    yield start
    for d in made:
        d.stop()
    # an ASan/UBSan build of the driver: any report fails the test
    for d in made:
        with open(d.err_path, "rb") as f:
            err = f.read().decode("utf-8", "replace")
        for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
            assert bad not in err, d.log()


def assert_nothing_after_closed(d):
    """No callback or hook ran after rstore_free returned."""
    d.t.join(5)
    with d.cond:
        assert d.lines and d.lines[-1] == "closed", d.log()


def key(name):
    return "mgrok:route:tcp:%s" % name


def test_claim_race_one_winner(mg, drives):
    """Two nodes claim the same routes at the same instant: exactly one wins
    each, the other is told the winner's node, session and epoch."""
    r = Redis(mg)
    a = drives(r.url())
    b = drives(r.url())
    wins = {"n1": 0, "n2": 0}
    epochs = set()
    for i in range(30):
        k = key(10000 + i)
        a.send("claim %s n1 sa%d 30000" % (k, i))
        b.send("claim %s n2 sb%d 30000" % (k, i))
        ra, rb = a.result(), b.result()
        oks = [x for x in (ra, rb) if x.startswith("ok ")]
        assert len(oks) == 1, (ra, rb)
        epoch = int(oks[0].split()[1])
        epochs.add(epoch)
        if ra.startswith("ok "):
            wins["n1"] += 1
            assert rb == "conflict n1 sa%d %d" % (i, epoch), (ra, rb)
        else:
            wins["n2"] += 1
            assert ra == "conflict n2 sb%d %d" % (i, epoch), (ra, rb)
    assert len(epochs) == 30  # every new claim has its own epoch
    # the winner refreshes its claim: the same epoch; the loser still conflicts
    a.send("claim %s n1 sx 30000" % key(20000))
    e = int(a.result().split()[1])
    assert a.call("claim %s n1 sx 30000" % key(20000)) == "ok %d" % e
    assert b.call("claim %s n2 sy 30000" % key(20000)) == "conflict n1 sx %d" % e
    # the same node with another session is a conflict too (a lease is the
    # server's business: it releases first)
    assert a.call("claim %s n1 other 30000" % key(20000)) == "conflict n1 sx %d" % e


def test_stale_epoch_refused_and_ttl_expiry(mg, drives):
    """A route whose TTL ran out is free; a new owner gets a new epoch and
    the old owner's refresh and release are refused by theirs."""
    r = Redis(mg)
    a = drives(r.url())
    b = drives(r.url())
    k = "mgrok:route:host:shop.example.com"
    e1 = int(a.call("claim %s n1 s1 400" % k).split()[1])
    assert a.call("refresh %s n1 %d 400" % (k, e1)) == "refresh 1"
    assert a.call("refresh %s n1 %d 400" % (k, e1 + 100)) == "refresh 0"
    assert b.call("refresh %s n2 %d 400" % (k, e1)) == "refresh 0"
    assert b.call("claim %s n2 s2 5000" % k).startswith("conflict n1 s1 ")
    # n1 stops refreshing: the record expires (PEXPIRE) and the route is free
    assert wait_for(lambda: b.call("cmd EXISTS %s" % k) == "reply int 0", 5.0)
    e2 = int(b.call("claim %s n2 s2 5000" % k).split()[1])
    assert e2 > e1
    # n1 comes back, stale: neither its refresh nor its release touch it
    assert a.call("refresh %s n1 %d 5000" % (k, e1)) == "refresh 0"
    assert a.call("release %s n1 %d" % (k, e1)) == "release 0"
    assert a.call("claim %s n1 s1 5000" % k) == "conflict n2 s2 %d" % e2
    # the TTL is the owner's: a refresh sets it again
    pttl = int(b.call("cmd PTTL %s" % k).split()[2])
    assert 0 < pttl <= 5000
    assert b.call("release %s n2 %d" % (k, e2)) == "release 1"
    assert b.call("cmd EXISTS %s" % k) == "reply int 0"
    # node heartbeat record
    assert a.call("node n1 127.0.0.11:9100 7 3000") == "node 1"
    assert a.call("cmd HGET mgrok:node:n1 addr") == "reply str 127.0.0.11:9100"
    assert a.call("cmd HGET mgrok:node:n1 load") == "reply str 7"
    assert 0 < int(a.call("cmd PTTL mgrok:node:n1").split()[2]) <= 3000


def test_pubsub_claims_and_releases(mg, drives):
    r = Redis(mg)
    a = drives(r.url())
    b = drives(r.url())
    m = a.mark()
    a.send("sub mgrok:routes")
    a.wait_line(lambda s: s == "subscribed mgrok:routes", m)
    k = key(7001)
    e = int(b.call("claim %s n2 s2 5000" % k).split()[1])
    a.wait_line(lambda s: s == "msg mgrok:routes claim %s n2 %d" % (k, e), m)
    # a refresh publishes nothing; a release does
    assert b.call("claim %s n2 s2 5000" % k) == "ok %d" % e
    assert b.call("release %s n2 %d" % (k, e)) == "release 1"
    a.wait_line(lambda s: s == "msg mgrok:routes release %s" % k, m)
    with a.cond:
        msgs = [s for s in a.lines[m:] if s.startswith("msg ")]
    assert msgs == ["msg mgrok:routes claim %s n2 %d" % (k, e),
                    "msg mgrok:routes release %s" % k]
    st = a.stats()
    assert st["sub_up"] == 1 and st["up"] == 1


def test_redis_restart(mg, drives):
    """redis-server killed with SIGKILL: a command in flight fails with
    `connection lost`, new ones are refused at once with the reason; after
    a restart (empty) on the same port the store reconnects by itself, the
    scripts work again and the subscription is back."""
    r = Redis(mg)
    a = drives(r.url(1))
    b = drives(r.url(1))
    m = a.mark()
    a.send("sub mgrok:routes")
    a.wait_line(lambda s: s == "subscribed mgrok:routes", m)
    e0 = int(a.call("claim %s n1 s1 30000" % key(1)).split()[1])

    a.send("cmd BLPOP nothing 10")  # in flight when Redis dies
    time.sleep(0.2)
    m = a.mark()
    r.kill9()
    res = a.result()
    assert res.startswith("error connection lost: "), res
    down = a.wait_line(lambda s: s.startswith("down "), m)
    res = a.call("claim %s n1 s1 30000" % key(2))
    assert res.startswith("error store down: "), res
    time.sleep(1.5)  # some failed attempts: the back-off grows
    res = a.call("claim %s n1 s1 30000" % key(2))
    assert res.startswith("error store down: connect: "), (res, down)

    m, mb = a.mark(), b.mark()
    t0 = time.monotonic()
    r.start()  # same port, empty
    a.wait_up(m, timeout=15.0)
    b.wait_up(mb, timeout=15.0)
    took = time.monotonic() - t0
    assert took < 12.0, took  # back-off capped at 10 s (+20 % jitter)
    a.wait_line(lambda s: s == "subscribed mgrok:routes", m, timeout=15.0)
    # Redis came back empty: the owner re-asserts its route through the
    # scripts loaded on the new connection; the record is new, and its epoch
    # still greater than any before the restart (the counter starts at
    # Redis's clock in microseconds)
    res = a.call("claim %s n1 s1 30000" % key(1))
    assert res.startswith("ok "), res
    e1 = int(res.split()[1])
    assert e1 > e0 > 1000000 * 1000000000, (e0, e1)
    assert a.call("cmd GET mgrok:epoch") == "reply str %d" % e1
    # scripts flushed under the store's feet: EVALSHA gets NOSCRIPT, EVAL
    # is sent and the caller sees the script's answer
    assert a.call("cmd SCRIPT FLUSH") == "reply status OK"
    assert a.call("claim %s n1 s1 30000" % key(1)) == "ok %d" % e1
    # pub/sub after the restart
    e = int(b.call("claim %s n2 s2 30000" % key(3)).split()[1])
    a.wait_line(lambda s: s == "msg mgrok:routes claim %s n2 %d" % (key(3), e), m)
    st = a.stats()
    assert st["reconnects"] >= 1 and st["up"] == 1 and st["sub_up"] == 1, st
    assert st["errors"] >= 1, st


def test_command_timeout_redoes_connection(mg, drives):
    r = Redis(mg)
    a = drives(r.url(), 500)  # 0.5 s command timeout
    m = a.mark()
    t0 = time.monotonic()
    assert a.call("cmd BLPOP nothing 5", timeout=5.0) == "error timeout"
    assert 0.4 < time.monotonic() - t0 < 2.5
    a.wait_line(lambda s: s.startswith("down a command timed out"), m)
    a.wait_up(m)
    assert a.call("cmd PING") == "reply status PONG"
    st = a.stats()
    assert st["timeouts"] == 1 and st["reconnects"] == 1, st
    assert st["rtt_us_last"] > 0 and st["rtt_us_avg"] > 0, st


def test_inflight_limit_and_closing(mg, drives):
    r = Redis(mg)
    a = drives(r.url(), 5000, 2)  # at most 2 commands in flight
    a.send("cmd BLPOP q1 1")
    a.send("cmd BLPOP q2 1")
    assert a.call("cmd PING") == "error limit reached"
    assert a.stats()["in_flight"] == 2
    assert a.result(5) == "reply nil"
    assert a.result(5) == "reply nil"
    assert a.call("cmd PING") == "reply status PONG"
    # commands that would change the connection's mode are refused
    for c in ("SUBSCRIBE x", "psubscribe x*", "Monitor", "UNSUBSCRIBE"):
        assert a.call("cmd " + c) == "error invalid argument", c
    assert a.call("cmd ECHO subscribe") == "reply str subscribe"
    # rstore_free answers what is in flight with "closing", then nothing
    a.send("cmd BLPOP q3 5")
    a.send("quit")
    assert a.result() == "error closing"
    assert a.result() == "closed"
    assert a.p.wait(timeout=5) == 0
    assert_nothing_after_closed(a)


def test_auth_and_database(mg, drives):
    r = Redis(mg, password="s3cr3t")
    a = drives(r.url(2))
    assert a.call("cmd SET k v2") == "reply status OK"
    b = drives(r.url(0))
    assert b.call("cmd GET k") == "reply nil"
    assert b.call("cmd SELECT 2") == "reply status OK"
    assert b.call("cmd GET k") == "reply str v2"
    m = a.mark()
    a.send("sub mgrok:routes")
    a.wait_line(lambda s: s == "subscribed mgrok:routes", m)
    assert b.call("cmd PUBLISH mgrok:routes hello") == "reply int 1"
    a.wait_line(lambda s: s == "msg mgrok:routes hello", m)
    # one subscription per channel; others while the connection is up
    assert a.call("sub mgrok:routes") == "error in use"
    a.send("sub c1\nsub c2")
    a.wait_line(lambda s: s == "subscribed c2", m)
    a.wait_line(lambda s: s == "subscribed c1", m)
    # and a fresh store subscribing to two at once, while its AUTH is out
    d = drives(r.url(0))
    md = d.mark()
    d.send("sub d1\nsub d2")
    d.wait_line(lambda s: s == "subscribed d1", md)
    d.wait_line(lambda s: s == "subscribed d2", md)
    assert b.call("cmd PUBLISH d2 hi") == "reply int 1"
    d.wait_line(lambda s: s == "msg d2 hi", md)
    assert wait_for(lambda: d.stats()["sub_up"] == 1, 5.0)
    # a wrong password: down with Redis's reason, never up
    c = drives(r.url(0, password="wrong"), up=False)
    line = c.wait_line(lambda s: s.startswith("down "))
    assert "setup refused: WRONGPASS" in line, line
    assert c.call("cmd PING").startswith("error store down: setup refused")


def test_free_inside_callbacks(mg, drives):
    """rstore_free called from inside an answer, the down hook and a pub/sub
    message: what is in flight is answered "closing" (or "connection lost"
    when it was), nothing after, no crash (the ASan build checks memory)."""
    r = Redis(mg)
    a = drives(r.url())
    # from an answer, with two more commands pipelined behind it
    a.send("free-after PING\ncmd BLPOP q 5\ncmd PING")
    assert [a.result() for _ in range(4)] == [
        "reply status PONG", "error closing", "error closing", "closed"]
    assert a.p.wait(timeout=5) == 0
    assert_nothing_after_closed(a)

    # from a pub/sub message
    b = drives(r.url())
    c = drives(r.url())
    m = b.mark()
    b.send("sub chan")
    b.wait_line(lambda s: s == "subscribed chan", m)
    assert b.call("free-on msg") == "armed"
    assert c.call("cmd PUBLISH chan x") == "reply int 1"
    b.wait_line(lambda s: s == "msg chan x", m)
    assert b.result() == "closed"
    assert b.p.wait(timeout=5) == 0
    assert_nothing_after_closed(b)

    # from the down hook, a command in flight
    d = drives(r.url())
    assert d.call("free-on down") == "armed"
    d.send("cmd BLPOP q 10")
    time.sleep(0.2)
    m = d.mark()
    r.kill9()
    res = d.result()
    assert res.startswith("error connection lost: "), res
    d.wait_line(lambda s: s.startswith("down "), m)
    assert d.result() == "closed"
    assert d.p.wait(timeout=5) == 0
    assert_nothing_after_closed(d)


def test_silent_server_connect_timeout(drives):
    """A listener that never answers (the kernel accepts, nobody reads): the
    setup times out, down says so, and the store keeps trying."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(64)
    try:
        port = ls.getsockname()[1]
        t0 = time.monotonic()
        a = drives("redis://127.0.0.1:%d/0" % port, 300, up=False)
        a.wait_line(lambda s: s == "down setup timeout", 0, timeout=5.0)
        assert time.monotonic() - t0 < 3.0
        assert a.call("cmd PING") == "error store down: setup timeout"
        # the next attempt, after the back-off (0.5 s +-20 %), times out too
        with a.cond:
            n = len([s for s in a.lines if s.startswith("down ")])
        a.wait_line(lambda s: len([x for x in a.lines if x.startswith("down ")]) > n,
                    0, timeout=5.0)
        assert a.stats()["up"] == 0
    finally:
        ls.close()


class PausingProxy:
    """A TCP proxy on loopback in front of Redis that a test can pause: while
    paused it forwards nothing either way (a partition: connections stay
    open, bytes go nowhere), and new connections wait too."""

    def __init__(self, target_port):
        self.target = target_port
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.port = self.ls.getsockname()[1]
        self.running = threading.Event()
        self.running.set()
        self.closed = False
        self.socks = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        self.running.wait()
        try:
            u = socket.create_connection(("127.0.0.1", self.target), timeout=5)
        except OSError:
            c.close()
            return
        self.socks += [c, u]
        for a, b in ((c, u), (u, c)):
            threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, a, b):
        a.settimeout(None)
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                self.running.wait()
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def pause(self):
        self.running.clear()

    def resume(self):
        self.running.set()

    def close(self):
        self.closed = True
        self.running.set()
        for s in [self.ls] + self.socks:
            try:
                s.close()
            except OSError:
                pass


def test_partition_fencing_and_rejoin(mg, drives):
    """A node cut off from Redis (a paused proxy): its commands time out, it
    goes down and keeps trying; its route expires and another node claims
    it with a new epoch; when the partition heals the node reconnects by
    itself, and its late refresh and release are refused by the epoch."""
    r = Redis(mg)
    px = PausingProxy(r.port)
    try:
        a = drives("redis://127.0.0.1:%d/0" % px.port, 400)  # cut off later
        b = drives(r.url())  # always reaches Redis
        k = "mgrok:route:host:part.example.com"
        e1 = int(a.call("claim %s n1 s1 800" % k).split()[1])
        m = a.mark()
        px.pause()
        assert a.call("refresh %s n1 %d 800" % (k, e1), timeout=5.0) == "error timeout"
        a.wait_line(lambda s: s == "down a command timed out", m)
        # while cut off: reconnecting fails (setup timeout), claims are refused
        a.wait_line(lambda s: s == "down setup timeout", m, timeout=5.0)
        assert a.call("claim %s n1 s1 800" % k).startswith("error store down: ")
        # its record expires; the other node takes the route
        assert wait_for(lambda: b.call("claim %s n2 s2 30000" % k).startswith("ok "), 5.0)
        e2 = int(b.call("claim %s n2 s2 30000" % k).split()[1])
        assert e2 > e1
        # the partition heals: n1 comes back by itself, and is fenced
        m = a.mark()
        px.resume()
        a.wait_up(m, timeout=15.0)
        assert a.call("refresh %s n1 %d 800" % (k, e1)) == "refresh 0"
        assert a.call("release %s n1 %d" % (k, e1)) == "release 0"
        assert a.call("claim %s n1 s1 800" % k) == "conflict n2 s2 %d" % e2
        assert b.call("refresh %s n2 %d 30000" % (k, e2)) == "refresh 1"
        st = a.stats()
        assert st["timeouts"] >= 1 and st["reconnects"] >= 1 and st["up"] == 1, st
    finally:
        px.close()
