"""Process, port and socket helpers for the mgrok end-to-end tests.

Standard library only.  Every wait is bounded in time; every process that is
started here is remembered and ended by PID in MgrokEnv.cleanup().
"""

import errno
import hashlib
import os
import random
import re
import signal
import socket
import struct
import subprocess
import threading
import time

HOST = "127.0.0.1"
FORWARD_RE = re.compile(r"(tcp|udp|https?|tls)://([^\s:/]+):(\d+)")
LOCAL_RE = re.compile(r"->\s*\[?([^\s\]]+?)\]?:(\d+)")
LISTEN_RE = re.compile(r"listening on 127\.0\.0\.1:(\d+)")


# ---------------------------------------------------------------- waiting

def wait_for(pred, timeout, interval=0.05, what="condition"):
    """Poll pred() until it returns a truthy value; return it, or None on timeout."""
    deadline = time.monotonic() + timeout
    n = 0
    max_n = int(timeout / max(interval, 0.001)) + 10
    while n < max_n:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)
        n += 1
    return None


# ---------------------------------------------------------------- ports

_used_ports = set()
_port_lock = threading.Lock()


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except Exception:
        return 32768


def port_is_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((HOST, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _worker_share(lo, hi):
    """Under pytest-xdist (make e2e runs two workers), each worker picks
    ports from its own share of [lo, hi), so that two tests running at
    once never pick the same block between a check and a bind."""
    wid = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if not wid.startswith("gw") or count <= 1:
        return lo, hi
    k = int(wid[2:]) % count
    span = (hi - lo) // count
    return lo + k * span, lo + (k + 1) * span


def pick_port_range(n=50):
    """A random block of n free ports below the ephemeral range (20000 up)."""
    hi = min(_ephemeral_low(), 60000) - n - 10
    if hi <= 20000:
        hi = 60000 - n
    lo, hi = _worker_share(20000, hi)
    with _port_lock:
        for attempt in range(400):
            if attempt == 200:
                # a long run hands out more ports than the range holds:
                # those of tests that ended are free again (the bind
                # check below still sees the ones in use)
                _used_ports.clear()
            base = random.randrange(lo, hi)
            block = range(base, base + n)
            if any(p in _used_ports for p in block):
                continue
            if all(port_is_free(p) for p in block):
                _used_ports.update(block)
                return base
    raise RuntimeError("could not find %d free consecutive ports" % n)


def pick_free_port():
    return pick_port_range(1)


# ---------------------------------------------------------------- sockets

def connect(port, timeout=5.0, host=HOST):
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exact(sock, n, timeout=10.0):
    """Read exactly n bytes within timeout; raise AssertionError with what we got."""
    buf = bytearray()
    deadline = time.monotonic() + timeout
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("timeout: got %d of %d bytes" % (len(buf), n))
        sock.settimeout(left)
        try:
            chunk = sock.recv(min(n - len(buf), 1 << 20))
        except socket.timeout:
            raise AssertionError("timeout: got %d of %d bytes" % (len(buf), n))
        if not chunk:
            raise AssertionError("EOF after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def recv_until_eof(sock, timeout=10.0, limit=1 << 30):
    """Read until EOF; returns (data, how) with how in 'eof', 'reset', 'timeout'."""
    buf = bytearray()
    deadline = time.monotonic() + timeout
    while len(buf) <= limit:
        left = deadline - time.monotonic()
        if left <= 0:
            return bytes(buf), "timeout"
        sock.settimeout(left)
        try:
            chunk = sock.recv(1 << 20)
        except socket.timeout:
            return bytes(buf), "timeout"
        except ConnectionResetError:
            return bytes(buf), "reset"
        except OSError as e:
            if e.errno in (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED):
                return bytes(buf), "reset"
            raise
        if not chunk:
            return bytes(buf), "eof"
        buf += chunk
    return bytes(buf), "limit"


def wait_closed(sock, timeout=5.0):
    """Wait for the peer to close (EOF or reset), discarding data.
    Returns 'eof', 'reset' or 'timeout'."""
    _, how = recv_until_eof(sock, timeout=timeout, limit=64 << 20)
    return how


def echo_roundtrip(port, payload, timeout=10.0):
    s = connect(port, timeout=timeout)
    try:
        s.sendall(payload)
        return recv_exact(s, len(payload), timeout=timeout)
    finally:
        s.close()


def pattern_chunks(total, chunk=1 << 20, seed=None):
    """Yield `total` bytes as chunks: one random 1 MiB block, each copy
    prefixed by a counter so that reordering or duplication is visible."""
    base = (random.Random(seed).randbytes(chunk) if seed is not None
            else os.urandom(chunk))
    sent = 0
    i = 0
    while sent < total:
        n = min(chunk, total - sent)
        c = struct.pack(">Q", i) + base[8:]
        yield c[:n]
        sent += n
        i += 1


# ---------------------------------------------------------------- local services

class LocalService:
    """A TCP service on 127.0.0.1:0 that runs handler(conn, index) in a
    thread per accepted connection."""

    def __init__(self, handler, backlog=512):
        self.handler = handler
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, 0))
        self.sock.listen(backlog)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.errors = []
        self.conns = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = []
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()

    def _loop(self):
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.settimeout(60)
            with self._lock:
                idx = self.accepted
                self.accepted += 1
                self.conns.append(c)
            t = threading.Thread(target=self._run, args=(c, idx), daemon=True)
            t.start()
            self._threads.append(t)

    def _run(self, c, idx):
        try:
            self.handler(c, idx)
        except Exception as e:  # recorded for the test to inspect
            self.errors.append("conn %d: %r" % (idx, e))
        finally:
            try:
                c.close()
            except OSError:
                pass

    def close(self):
        self._stop.set()
        try:
            self.sock.close()
        except OSError:
            pass
        with self._lock:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._t.join(timeout=2)


def echo_handler(c, idx):
    while True:
        try:
            d = c.recv(256 * 1024)
        except (ConnectionResetError, socket.timeout):
            return
        if not d:
            try:
                c.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            return
        c.sendall(d)


# ---------------------------------------------------------------- UDP

UDP_CLIENT_SUMMARY_RE = re.compile(
    r"udp://[^\s:]+:(\d+) -> (\S+): (\d+) flows \((\d+) active\); "
    r"in (\d+) datagrams, (\d+) bytes, (\d+) dropped; "
    r"out (\d+) datagrams, (\d+) bytes, (\d+) dropped")
UDP_SERVER_SUMMARY_RE = re.compile(
    r'udp "([^"]*)" port (\d+): (\d+) flows; in (\d+) datagrams (\d+) bytes '
    r'(\d+) dropped; out (\d+) datagrams (\d+) bytes (\d+) dropped')
_SUMMARY_KEYS = ("flows", "in_pkts", "in_bytes", "in_drops",
                 "out_pkts", "out_bytes", "out_drops")


def udp_client_summary(text, port):
    """The client's exit line for udp://...:port as a dict, or None."""
    for m in UDP_CLIENT_SUMMARY_RE.finditer(text):
        if int(m.group(1)) == port:
            g = [int(x) for x in m.groups()[2:]]
            d = dict(zip(("flows", "active", "in_pkts", "in_bytes", "in_drops",
                          "out_pkts", "out_bytes", "out_drops"), g))
            d["local"] = m.group(2)
            return d
    return None


def udp_server_summary(text, port):
    """The server's exit line for the UDP proxy on port as a dict, or None
    (the last one if it was logged more than once)."""
    res = None
    for m in UDP_SERVER_SUMMARY_RE.finditer(text):
        if int(m.group(2)) == port:
            res = dict(zip(_SUMMARY_KEYS, [int(x) for x in m.groups()[2:]]))
            res["name"] = m.group(1)
    return res


def udp_socket(bufsize=None):
    """A UDP socket bound to 127.0.0.1:0."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if bufsize:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, bufsize)
    s.bind((HOST, 0))
    return s


def udp_recv(sock, timeout):
    """One datagram (data, addr) within timeout, or (None, None)."""
    sock.settimeout(max(timeout, 0.001))
    try:
        return sock.recvfrom(65536)
    except (socket.timeout, BlockingIOError):
        return None, None
    except ConnectionRefusedError:
        return None, "refused"


def udp_exchange(sock, port, payload, timeout=2.0, host=HOST):
    """sendto + one reply within timeout; returns the reply bytes or None."""
    sock.sendto(payload, (host, port))
    data, _ = udp_recv(sock, timeout)
    return data


def udp_free_port():
    """A UDP port on 127.0.0.1 that nothing is bound to right now."""
    while True:
        p = pick_free_port()
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind((HOST, p))
            return p
        except OSError:
            continue
        finally:
            s.close()


def proc_net_udp(local_port=None, remote_port=None):
    """IPv4 UDP sockets from /proc/net/udp as dicts (local_port, remote_port,
    drops), optionally filtered on 127.0.0.1 local/remote ports."""
    res = []
    try:
        with open("/proc/net/udp") as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return res
    for line in lines:
        fs = line.split()
        if len(fs) < 13:
            continue
        la, lp = fs[1].split(":")
        ra, rp = fs[2].split(":")
        lp, rp = int(lp, 16), int(rp, 16)
        if local_port is not None and lp != local_port:
            continue
        if remote_port is not None and rp != remote_port:
            continue
        res.append({"local_port": lp, "remote_port": rp, "drops": int(fs[-1])})
    return res


class UdpService:
    """A UDP service on 127.0.0.1 run by a thread.

    mode "tag": answer b"HOST:PORT|" + payload (the sender as seen here);
    "echo": answer the payload unchanged; "discard": never answer.
    Datagrams starting with discard_prefix are only counted.  Every other
    datagram is recorded in self.received as (addr, payload)."""

    def __init__(self, mode="tag", port=0, discard_prefix=None):
        self.mode = mode
        self.discard_prefix = discard_prefix
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        except OSError:
            pass
        self.sock.bind((HOST, port))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received = []
        self.discarded = 0
        self.errors = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()

    def _loop(self):
        pre = self.discard_prefix
        while not self._stop.is_set():
            try:
                d, a = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            except ConnectionRefusedError:
                continue
            except OSError:
                return
            if pre is not None and d.startswith(pre):
                self.discarded += 1
                continue
            with self._lock:
                self.received.append((a, d))
            try:
                if self.mode == "tag":
                    self.sock.sendto(b"%s:%d|" % (a[0].encode(), a[1]) + d, a)
                elif self.mode == "echo":
                    self.sock.sendto(d, a)
            except OSError as e:
                self.errors.append("sendto %r: %r" % (a, e))

    def sources(self):
        with self._lock:
            return [a for a, _ in self.received]

    def close(self):
        self._stop.set()
        try:
            self.sock.close()
        except OSError:
            pass
        self._t.join(timeout=2)


PIN_RE = re.compile(r"--tls-pin (sha256:[0-9A-Fa-f]{64})")


class Pki:
    """One `mgrok certs` directory: ca_pem, server_pem, client_pem and their
    *_key, the command's output (stdout) and the pin it printed."""

    def __init__(self, d, stdout=""):
        self.dir = d
        self.stdout = stdout
        for n in ("ca", "server", "client"):
            setattr(self, n + "_pem", os.path.join(d, n + ".pem"))
            setattr(self, n + "_key", os.path.join(d, n + ".key"))
        m = PIN_RE.search(stdout)
        self.pin = m.group(1) if m else None


def make_pki(mg, name, hosts="localhost,127.0.0.1", extra=()):
    """`mgrok certs --out WORKDIR/name --hosts hosts`; fails the test if it fails."""
    d = os.path.join(mg.workdir, name)
    r = subprocess.run([mg.bin, "certs", "--out", d, "--hosts", hosts] + list(extra),
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    out = r.stdout.decode(errors="replace")
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 0, "mgrok certs --out %s --hosts %s failed (rc %d):\n%s\n%s" % (
        d, hosts, r.returncode, out, err)
    return Pki(d, out + err)


class NativeUdpTag:
    """tests/e2e/udptag.c as a process: a UDP tag service (as UdpService's
    "tag" mode) fast enough that a flood through mgrok does not overflow its
    socket, so drops are mgrok's to make. .port; stop() -> (discarded,
    answered): datagrams with the prefix counted, others answered."""

    def __init__(self, binary, prefix=b"F", max_s=60):
        self.p = subprocess.Popen([binary, prefix.decode(), str(max_s)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = self.p.stdout.readline().decode()  # EOF if it failed to start
        if not line.startswith("port "):
            self.close()
            raise RuntimeError("udptag did not start: %r %r" % (line, self.p.stderr.read()))
        self.port = int(line.split()[1])
        self.result = None

    def stop(self):
        if self.result is None:
            self.p.send_signal(signal.SIGTERM)
            out, _ = self.p.communicate(timeout=5)
            f = out.decode().split()
            self.result = (int(f[1]), int(f[3])) if len(f) >= 4 else (0, 0)
        return self.result

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(timeout=5)


# ---------------------------------------------------------------- processes

class Proc:
    def __init__(self, name, argv, env, workdir):
        self.name = name
        self.argv = argv
        self.out_path = os.path.join(workdir, name + ".stdout")
        self.err_path = os.path.join(workdir, name + ".stderr")
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._out,
                                  stderr=self._err, env=env, close_fds=True)
        self.pid = self.p.pid

    def stdout(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def poll(self):
        return self.p.poll()

    def alive(self):
        return self.p.poll() is None

    def wait(self, timeout):
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def signal(self, sig):
        if self.p.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill9(self):
        self.signal(signal.SIGKILL)
        self.wait(5)

    def stop(self, grace=3.0):
        if self.p.poll() is None:
            self.signal(signal.SIGTERM)
            if self.wait(grace) is None:
                self.signal(signal.SIGKILL)
                self.wait(5)
        for f in (self._out, self._err):
            try:
                f.close()
            except OSError:
                pass

    def log(self, tail=6000):
        out, err = self.stdout(), self.stderr()
        return ("---- %s (pid %d, rc %s): %s\n-- stdout:\n%s\n-- stderr:\n%s\n"
                % (self.name, self.pid, self.p.poll(), " ".join(self.argv),
                   out[-tail:], err[-tail:]))


class Server(Proc):
    port = None
    start_port = None
    end_port = None


class Client(Proc):
    def forwards(self):
        """[(scheme, host, port, local)] in the order printed on stdout."""
        res = []
        for line in self.stdout().splitlines():
            m = FORWARD_RE.search(line)
            if m:
                lm = LOCAL_RE.search(line[m.end():])
                local = (lm.group(1), int(lm.group(2))) if lm else None
                res.append((m.group(1), m.group(2), int(m.group(3)), local))
        return res


class MgrokEnv:
    """Starts mgrok servers and clients for one test and ends them all."""

    def __init__(self, binary, workdir):
        self.bin = binary
        self.workdir = str(workdir)
        self.procs = []
        self.services = []
        self.sockets = []
        self.token = "tok-" + os.urandom(8).hex()
        self._n = 0

    # -- bookkeeping
    def _name(self, kind):
        self._n += 1
        return "%02d-%s" % (self._n, kind)

    def state_dir(self, tag=None):
        d = os.path.join(self.workdir, "state-" + (tag or os.urandom(4).hex()))
        os.makedirs(d, exist_ok=True)
        return d

    def service(self, handler):
        s = LocalService(handler)
        self.services.append(s)
        return s

    def echo_service(self):
        return self.service(echo_handler)

    def udp_service(self, mode="tag", port=0, discard_prefix=None):
        s = UdpService(mode, port, discard_prefix)
        self.services.append(s)
        return s

    def native_udp_tag(self, binary, prefix=b"F"):
        s = NativeUdpTag(binary, prefix)
        self.services.append(s)
        return s

    def udp_sock(self, bufsize=None):
        return self.track(udp_socket(bufsize))

    def track(self, sock):
        self.sockets.append(sock)
        return sock

    def logs(self):
        return "\n".join(p.log() for p in self.procs)

    SANITIZER_RE = re.compile(r"ERROR: \w+Sanitizer|runtime error:")

    def sanitizer_reports(self):
        """[(process name, line)] for ASan/LSan/UBSan reports on stderr."""
        return [(p.name, line) for p in self.procs
                for line in p.stderr().splitlines() if self.SANITIZER_RE.search(line)]

    def cleanup(self):
        for s in self.sockets:
            try:
                s.close()
            except OSError:
                pass
        # SIGTERM everything at once, then one shared grace period, then SIGKILL
        for p in reversed(self.procs):
            p.signal(signal.SIGTERM)
        deadline = time.monotonic() + 3.0
        for p in reversed(self.procs):
            p.wait(max(0.05, deadline - time.monotonic()))
        for p in reversed(self.procs):
            p.stop(grace=0.05)
        for s in self.services:
            s.close()

    # -- processes
    def server(self, start_port=None, n_ports=50, addr_port=0, token=None,
               extra=(), wait=True, bind_timeout=10.0, prefix=()):
        if start_port is None:
            start_port = pick_port_range(n_ports)
        tokens = token if isinstance(token, (list, tuple)) else [token or self.token]
        argv = list(prefix) + [self.bin, "server", "--addr", "%s:%d" % (HOST, addr_port),
                "--bind-addr", HOST, "--start-port", str(start_port),
                "--end-port", str(start_port + n_ports - 1)]
        for t in tokens:
            argv += ["--token", t]
        argv += ["--log-level", "debug"] + list(extra)
        env = dict(os.environ)
        env.pop("MGROK_TOKEN", None)
        p = Server(self._name("server"), argv, env, self.workdir)
        p.start_port, p.end_port = start_port, start_port + n_ports - 1
        self.procs.append(p)
        if wait:
            def got():
                m = LISTEN_RE.search(p.stderr())
                return int(m.group(1)) if m else None
            port = wait_for(lambda: got() or (not p.alive() and -1), bind_timeout)
            if not port or port == -1:
                state = ("it exited with rc %s" % p.poll()) if not p.alive() else (
                    "nothing within %.0fs" % bind_timeout)
                raise AssertionError("server did not log 'listening on 127.0.0.1:PORT' "
                                     "(%s)\n%s" % (state, self.logs()))
            p.port = port
        return p

    def client_env(self, state_dir, token_env=None):
        env = dict(os.environ)
        env.pop("MGROK_TOKEN", None)
        # the agent reads proxies from the environment: tests set their own
        for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY",
                  "no_proxy"):
            env.pop(v, None)
        env["XDG_STATE_HOME"] = state_dir
        if token_env is not None:
            env["MGROK_TOKEN"] = token_env
        return env

    def tcp_client(self, local_port, server, remote_port=None, token=None,
                   state_dir=None, extra=(), token_env=None, local_host="127.0.0.1"):
        sp = server.port if hasattr(server, "port") else int(server)
        argv = [self.bin, "tcp", "%s:%d" % (local_host, local_port),
                "--server", "%s:%d" % (HOST, sp)]
        if token_env is None:
            argv += ["--token", token or self.token]
        if remote_port is not None:
            argv += ["--remote-port", str(remote_port)]
        argv += list(extra)
        return self._client(argv, state_dir, token_env)

    def multi_client(self, local_ports, server, token=None, state_dir=None, extra=()):
        argv = [self.bin, "client"]
        for lp in local_ports:
            argv += ["--local", "127.0.0.1:%d" % lp]
        argv += ["--server", "%s:%d" % (HOST, server.port),
                 "--token", token or self.token] + list(extra)
        return self._client(argv, state_dir, None)

    def udp_client(self, local_port, server, remote_port=None, token=None,
                   state_dir=None, extra=(), local_host="127.0.0.1"):
        sp = server.port if hasattr(server, "port") else int(server)
        argv = [self.bin, "udp", "%s:%d" % (local_host, local_port),
                "--server", "%s:%d" % (HOST, sp), "--token", token or self.token]
        if remote_port is not None:
            argv += ["--remote-port", str(remote_port)]
        argv += list(extra)
        return self._client(argv, state_dir, None)

    def locals_client(self, specs, server, token=None, state_dir=None, extra=()):
        """`mgrok client --local SPEC ...` with SPEC strings as given
        (e.g. "udp:127.0.0.1:5353", "127.0.0.1:8080")."""
        argv = [self.bin, "client"]
        for spec in specs:
            argv += ["--local", spec]
        argv += ["--server", "%s:%d" % (HOST, server.port),
                 "--token", token or self.token] + list(extra)
        return self._client(argv, state_dir, None)

    def proxy_client(self, kind, local_port, server, token=None, state_dir=None,
                     extra=(), local_host="127.0.0.1"):
        """`mgrok KIND HOST:PORT` (kind: tcp, udp, http, tls) with extra options."""
        sp = server.port if hasattr(server, "port") else int(server)
        argv = [self.bin, kind, "%s:%d" % (local_host, local_port),
                "--server", "%s:%d" % (HOST, sp), "--token", token or self.token]
        argv += list(extra)
        return self._client(argv, state_dir, None)

    def spawn(self, kind, argv, env=None):
        """Any other process (e.g. openssl s_server), ended in cleanup()."""
        p = Proc(self._name(kind), list(argv), env or dict(os.environ), self.workdir)
        self.procs.append(p)
        return p

    def _client(self, argv, state_dir, token_env):
        env = self.client_env(state_dir or self.state_dir(), token_env)
        p = Client(self._name("client"), argv, env, self.workdir)
        p.state_dir = env["XDG_STATE_HOME"]
        self.procs.append(p)
        return p

    def wait_forward(self, client, count=1, timeout=10.0):
        """Wait until the client printed `count` forwarding lines; return them."""
        def got():
            f = client.forwards()
            if len(f) >= count:
                return f
            if not client.alive():
                return "dead"
            return None
        r = wait_for(got, timeout)
        if r is None or r == "dead":
            raise AssertionError(
                "client did not print %d 'tcp://HOST:PORT' line(s) within %.0fs (%s)\n%s"
                % (count, timeout, "it exited" if r == "dead" else "still running",
                   self.logs()))
        return r

    def tunnel(self, server=None, service=None, **kw):
        """server + echo service + tcp client; returns (server, client, public_port)."""
        server = server or self.server()
        service = service or self.echo_service()
        c = self.tcp_client(service.port, server, **kw)
        fw = self.wait_forward(c)
        _, host, port, _ = fw[0]
        assert host in ("127.0.0.1", "localhost") or host, fw
        return server, c, port


def read_http_response(sock, timeout=10.0, method="GET"):
    """One HTTP response from sock: (status, reason, headers, body).
    headers is a list of (name, value); body is read by its framing
    (Content-Length, chunked, or up to EOF).  Bounded by timeout."""
    import http.client
    sock.settimeout(timeout)
    r = http.client.HTTPResponse(sock, method=method)
    try:
        r.begin()
        body = r.read()
    except socket.timeout:
        raise AssertionError("timeout (%.0fs) reading an HTTP response" % timeout)
    return r.status, r.reason, r.getheaders(), body


def header(headers, name, default=None):
    """The first value of header `name` (case-insensitive) in a list of pairs."""
    for k, v in headers:
        if k.lower() == name.lower():
            return v
    return default


def sha256(data):
    return hashlib.sha256(data).hexdigest()
