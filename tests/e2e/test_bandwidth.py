"""Bandwidth limits at the server (issue 14): the agent's --bandwidth (per
tunnel, RegisterEx 0x04) and a token's limits.bandwidth (shared by all the
token's tunnels), paced on the public side, each way; a reload that lowers
a token's limit slows a connection already open; UDP over the limit drops
datagrams and counts them.

Rates are decimal: 1MB/s is 1,000,000 bytes a second (conf_parse_bytes and
ratelim_parse_rate read "MB" as 10^6, "MiB" as 2^20). A bucket starts full
with a tenth of a second of its rate (at least 16 KiB), so 5 MB at 1 MB/s
take about 4.9 s."""

import os
import re
import socket
import ssl
import threading
import time

from helpers import HOST, connect, make_pki, pick_free_port, pick_port_range, wait_for
from test_admin import admin_port, api, metric, parse_metrics, scrape

LISTEN_RE = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
DOMAIN = "bw.test"
MB = 1000 * 1000
TOTAL = 5 * MB


def bw_server(mg, tmp_path, lim4="4MB/s"):
    base = pick_port_range(20)
    http_port = pick_free_port()
    cfg = tmp_path / "server.yml"
    cfg.write_text(f"""
addr: "127.0.0.1:0"
bind_addr: 127.0.0.1
start_port: {base}
end_port: {base + 19}
domain: {DOMAIN}
http_addr: "127.0.0.1:{http_port}"
log_level: debug
admin_addr: "127.0.0.1:0"
tokens:
  - name: free
    secret: free-secret
  - name: lim1
    secret: lim1-secret
    limits:
      bandwidth: {{in: 1MB/s, out: 1MB/s}}
  - name: fast
    secret: fast-secret
    limits:
      bandwidth: {{in: 12500MB/s, out: 12500MB/s}}
  - name: udpout
    secret: udpout-secret
    limits:
      bandwidth: {{in: 10MB/s, out: 20KB/s}}
  - name: lim4
    secret: lim4-secret
    limits:
      bandwidth: {{in: {lim4}, out: {lim4}}}
""")
    p = mg.spawn("server", [mg.bin, "server", "--config", str(cfg)])
    m = wait_for(lambda: LISTEN_RE.search(p.stderr()) or (not p.alive() and "dead"), 10)
    assert m and m != "dead", p.log()
    p.port = int(m.group(1))
    p.admin = admin_port(p)
    p.cfg = cfg
    p.http_port = http_port
    return p


# ---------------------------------------------------------------- services

def sink_handler(c, idx):
    """Read TOTAL bytes, then answer b"K" (the upload's end, seen here)."""
    got = 0
    while got < TOTAL:
        d = c.recv(1 << 16)
        if not d:
            return
        got += len(d)
    c.sendall(b"K")
    c.recv(1)


def source_handler(c, idx, total=TOTAL):
    """Send total bytes and close."""
    chunk = b"d" * 65536
    left = total
    while left > 0:
        n = min(left, len(chunk))
        c.sendall(chunk[:n])
        left -= n


def endless_handler(c, idx):
    """Send until the visitor goes away (up to 200 MB)."""
    chunk = b"e" * 65536
    try:
        for _ in range(200 * MB // len(chunk)):
            c.sendall(chunk)
    except OSError:
        pass


def http_handler(c, idx):
    """One response of TOTAL bytes to one request, then close."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = c.recv(4096)
        if not d:
            return
        buf += d
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
              % TOTAL)
    source_handler(c, idx)


# ---------------------------------------------------------------- visitors

def timed_upload(port):
    """Send TOTAL bytes through the tunnel to the sink; seconds until the
    sink had them all."""
    s = connect(port, timeout=30)
    s.settimeout(30)
    chunk = b"u" * 65536
    t0 = time.monotonic()
    left = TOTAL
    while left > 0:
        n = min(left, len(chunk))
        s.sendall(chunk[:n])
        left -= n
    assert s.recv(1) == b"K"
    dt = time.monotonic() - t0
    s.close()
    return dt


def timed_download(port, request=None, extra=0, total=TOTAL):
    """Receive total bytes (plus extra: a response head) through the
    tunnel; seconds from the connection to the last byte."""
    s = connect(port, timeout=30)
    s.settimeout(30)
    t0 = time.monotonic()
    if request:
        s.sendall(request)
    got = 0
    while got < total + extra:
        d = s.recv(1 << 16)
        if not d:
            break
        got += len(d)
    dt = time.monotonic() - t0
    s.close()
    assert got >= total, got
    return dt


def tunnel_json(srv, ttype=None):
    st, j, _ = api(srv.admin, "/api/v1/tunnels")
    assert st == 200, j
    ts = [t for t in j["tunnels"] if ttype is None or t["type"] == ttype]
    assert len(ts) == 1, j
    return ts[0]


def in_range(dt, lo=4.5, hi=6.0):
    return lo <= dt <= hi


# ---------------------------------------------------------------- tests

def test_agent_bandwidth_tcp_both_ways(mg, tmp_path):
    """--bandwidth 1MB/s on a TCP tunnel: 5 MB take 4.5 to 6 s each way;
    the limit is in the API, and the waits are counted."""
    srv = bw_server(mg, tmp_path)
    sink = mg.service(sink_handler)
    up = mg.tcp_client(sink.port, srv, token="free-secret",
                       extra=["--bandwidth", "1MB/s", "--inspect-addr", "off"])
    port = mg.wait_forward(up)[0][2]
    assert tunnel_json(srv)["bandwidth"] == {"in": MB, "out": MB}
    dt = timed_upload(port)
    print("upload 5 MB at 1MB/s: %.2f s" % dt)
    assert in_range(dt), dt

    src = mg.service(source_handler)
    down = mg.tcp_client(src.port, srv, token="free-secret",
                         extra=["--bandwidth", "1MB/s", "--inspect-addr", "off"])
    dport = mg.wait_forward(down)[0][2]
    dt = timed_download(dport)
    print("download 5 MB at 1MB/s: %.2f s" % dt)
    assert in_range(dt), dt
    m = parse_metrics(scrape(srv.admin))
    assert metric(m, "mgrok_bandwidth_throttled_total", direction="in") > 0
    assert metric(m, "mgrok_bandwidth_throttled_total", direction="out") > 0


def test_far_above_the_link_is_fast(mg, tmp_path):
    """A token's limit of 100 Gbit/s (12500MB/s) and the agent's 4GB/s (the
    most its u32 option carries): the lower is in force and nothing waits."""
    srv = bw_server(mg, tmp_path)
    src = mg.service(source_handler)
    c = mg.tcp_client(src.port, srv, token="fast-secret",
                      extra=["--bandwidth", "4GB/s", "--inspect-addr", "off"])
    port = mg.wait_forward(c)[0][2]
    assert tunnel_json(srv)["bandwidth"] == {"in": 4000000000, "out": 4000000000}
    dt = timed_download(port)
    assert dt < 2.0, dt
    m = parse_metrics(scrape(srv.admin))
    assert metric(m, "mgrok_bandwidth_throttled_total", direction="out") == 0


def test_token_bandwidth_tcp_and_http(mg, tmp_path):
    """A token's limits.bandwidth of 1MB/s: a TCP upload and an HTTP
    download each take 4.5 to 6 s for 5 MB; the agent's own higher figure
    does not raise it (the lower one rules)."""
    srv = bw_server(mg, tmp_path)
    sink = mg.service(sink_handler)
    c = mg.tcp_client(sink.port, srv, token="lim1-secret",
                      extra=["--bandwidth", "5MB/s", "--inspect-addr", "off"])
    port = mg.wait_forward(c)[0][2]
    assert tunnel_json(srv)["bandwidth"] == {"in": MB, "out": MB}
    dt = timed_upload(port)
    print("token 1MB/s, TCP upload 5 MB: %.2f s" % dt)
    assert in_range(dt), dt
    c.stop()

    web = mg.service(http_handler)
    h = mg.proxy_client("http", web.port, srv, token="lim1-secret",
                        extra=["--subdomain", "big", "--inspect-addr", "off"])
    assert wait_for(lambda: "big.%s" % DOMAIN in h.stdout(), 10), h.log()
    req = b"GET /big HTTP/1.1\r\nHost: big.%s\r\nConnection: close\r\n\r\n" % DOMAIN.encode()
    dt = timed_download(srv.http_port, request=req, extra=60)
    print("token 1MB/s, HTTP download 5 MB: %.2f s" % dt)
    assert in_range(dt), dt
    assert tunnel_json(srv, "http")["bandwidth"] == {"in": MB, "out": MB}


def http_sink_handler(c, idx):
    """Read one request with a body of TOTAL bytes, answer 200."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = c.recv(65536)
        if not d:
            return
        buf += d
    got = len(buf.split(b"\r\n\r\n", 1)[1])
    while got < TOTAL:
        d = c.recv(65536)
        if not d:
            return
        got += len(d)
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")


def test_token_bandwidth_http_upload(mg, tmp_path):
    """The token's 1MB/s on what an HTTP visitor sends: a 5 MB POST takes
    4.5 to 6 s to reach the service."""
    srv = bw_server(mg, tmp_path)
    web = mg.service(http_sink_handler)
    h = mg.proxy_client("http", web.port, srv, token="lim1-secret",
                        extra=["--subdomain", "up", "--inspect-addr", "off"])
    assert wait_for(lambda: "up.%s" % DOMAIN in h.stdout(), 10), h.log()
    s = connect(srv.http_port, timeout=30)
    s.settimeout(30)
    t0 = time.monotonic()
    s.sendall(b"POST /up HTTP/1.1\r\nHost: up.%s\r\nContent-Length: %d\r\n"
              b"Connection: close\r\n\r\n" % (DOMAIN.encode(), TOTAL))
    chunk = b"p" * 65536
    left = TOTAL
    while left > 0:
        n = min(left, len(chunk))
        s.sendall(chunk[:n])
        left -= n
    resp = b""
    while True:
        d = s.recv(4096)
        if not d:
            break
        resp += d
    dt = time.monotonic() - t0
    s.close()
    assert resp.startswith(b"HTTP/1.1 200") and resp.endswith(b"ok"), resp
    print("token 1MB/s, HTTP upload 5 MB: %.2f s" % dt)
    assert in_range(dt), dt
    m = parse_metrics(scrape(srv.admin))
    assert metric(m, "mgrok_bandwidth_throttled_total", direction="in") > 0


def test_agent_bandwidth_https_upload_and_download(mg, tmp_path):
    """--bandwidth 1MB/s on an HTTP tunnel reached over HTTPS (TLS ended at
    the server): a 5 MB POST and a 5 MB response each take 4.5 to 6 s."""
    pki = make_pki(mg, "pki-bw", "*.%s,%s" % (DOMAIN, DOMAIN))
    https_port = pick_free_port()
    srv = mg.server(token="free-secret", extra=[
        "--domain", DOMAIN, "--http-addr", "%s:%d" % (HOST, pick_free_port()),
        "--https-addr", "%s:%d" % (HOST, https_port),
        "--https-cert", pki.server_pem, "--https-key", pki.server_key])
    assert wait_for(lambda: "https listening on port %d" % https_port in srv.stderr(), 10)
    ctx = ssl.create_default_context(cafile=pki.ca_pem)

    def tls_conn(host):
        t = ctx.wrap_socket(connect(https_port, timeout=30), server_hostname=host)
        t.settimeout(30)
        return t

    up = mg.service(http_sink_handler)
    c = mg.proxy_client("http", up.port, srv, token="free-secret",
                        extra=["--subdomain", "sup", "--bandwidth", "1MB/s",
                               "--inspect-addr", "off"])
    assert wait_for(lambda: "sup.%s" % DOMAIN in c.stdout(), 10), c.log()
    t = tls_conn("sup.%s" % DOMAIN)
    t0 = time.monotonic()
    t.sendall(b"POST /up HTTP/1.1\r\nHost: sup.%s\r\nContent-Length: %d\r\n"
              b"Connection: close\r\n\r\n" % (DOMAIN.encode(), TOTAL))
    t.sendall(b"p" * TOTAL)
    resp = b""
    while not resp.endswith(b"ok"):
        d = t.recv(4096)
        if not d:
            break
        resp += d
    dt = time.monotonic() - t0
    t.close()
    assert resp.startswith(b"HTTP/1.1 200"), resp
    print("HTTPS upload 5 MB at 1MB/s: %.2f s" % dt)
    assert in_range(dt), dt

    web = mg.service(http_handler)
    d = mg.proxy_client("http", web.port, srv, token="free-secret",
                        extra=["--subdomain", "sdown", "--bandwidth", "1MB/s",
                               "--inspect-addr", "off"])
    assert wait_for(lambda: "sdown.%s" % DOMAIN in d.stdout(), 10), d.log()
    t = tls_conn("sdown.%s" % DOMAIN)
    t0 = time.monotonic()
    t.sendall(b"GET /big HTTP/1.1\r\nHost: sdown.%s\r\nConnection: close\r\n\r\n"
              % DOMAIN.encode())
    got = 0
    while got < TOTAL:
        b = t.recv(1 << 16)
        if not b:
            break
        got += len(b)
    dt = time.monotonic() - t0
    t.close()
    assert got >= TOTAL, got
    print("HTTPS download 5 MB at 1MB/s: %.2f s" % dt)
    assert in_range(dt), dt


def test_token_bandwidth_is_shared_by_its_tunnels(mg, tmp_path):
    """Two tunnels of the 1MB/s token download 2.5 MB each at once: the
    token's rate is for both together, so both end after about 5 s (each
    alone would take 2.5 s)."""
    half = TOTAL // 2
    srv = bw_server(mg, tmp_path)
    src = mg.service(lambda c, idx: source_handler(c, idx, half))
    ports = []
    for _ in range(2):
        c = mg.tcp_client(src.port, srv, token="lim1-secret", extra=["--inspect-addr", "off"])
        ports.append(mg.wait_forward(c)[0][2])
    res = [None, None]

    def run(i):
        res[i] = timed_download(ports[i], total=half)
    t0 = time.monotonic()
    ts = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    dt = time.monotonic() - t0
    print("token 1MB/s, two tunnels x 2.5 MB at once: %.2f s (%.2f, %.2f)"
          % (dt, res[0], res[1]))
    assert in_range(dt), (dt, res)
    assert min(res) >= 3.5, res


class Reader:
    """Reads a socket in a thread, keeping (time, bytes so far)."""

    def __init__(self, s):
        self.s = s
        self.samples = [(time.monotonic(), 0)]
        self.total = 0
        self.stop = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        self.s.settimeout(1)
        while not self.stop:
            try:
                d = self.s.recv(1 << 16)
            except socket.timeout:
                continue
            except OSError:
                return
            if not d:
                return
            self.total += len(d)
            self.samples.append((time.monotonic(), self.total))

    def at(self, t):
        """Bytes received by time t."""
        v = 0
        for ts, n in self.samples:
            if ts > t:
                break
            v = n
        return v

    def rate(self, t0, t1):
        return (self.at(t1) - self.at(t0)) / (t1 - t0)


def test_reload_lowers_an_open_connections_rate(mg, tmp_path):
    """A download at the token's 4MB/s; a reload lowers it to 1MB/s: the
    same connection slows to about 1 MB/s at once."""
    srv = bw_server(mg, tmp_path)
    src = mg.service(endless_handler)
    c = mg.tcp_client(src.port, srv, token="lim4-secret", extra=["--inspect-addr", "off"])
    port = mg.wait_forward(c)[0][2]
    s = connect(port, timeout=10)
    r = Reader(s)
    try:
        t0 = time.monotonic()
        time.sleep(2.6)
        before = r.rate(t0 + 0.5, t0 + 2.5)
        text = srv.cfg.read_text().replace("{in: 4MB/s, out: 4MB/s}", "{in: 1MB/s, out: 1MB/s}")
        assert text != srv.cfg.read_text()
        tmp = str(srv.cfg) + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, str(srv.cfg))
        assert wait_for(lambda: tunnel_json(srv)["bandwidth"]["out"] == MB, 10, interval=0.02), \
            srv.stderr()[-3000:]
        t1 = time.monotonic()
        time.sleep(2.6)
        after = r.rate(t1 + 0.5, t1 + 2.5)
    finally:
        r.stop = True
        s.close()
    print("rate before the reload %.2f MB/s, after %.2f MB/s" % (before / MB, after / MB))
    assert 3.3 * MB <= before <= 4.6 * MB, before
    assert 0.7 * MB <= after <= 1.3 * MB, after


def test_udp_over_the_limit_is_dropped(mg, tmp_path):
    """A UDP tunnel at 20KB/s: a burst of 300 datagrams of 1000 bytes
    mostly does not pass (16 KiB of burst and the rate do); the drops are
    counted with the reason "bandwidth"."""
    srv = bw_server(mg, tmp_path)
    svc = mg.udp_service(mode="discard")
    c = mg.udp_client(svc.port, srv, token="free-secret",
                      extra=["--bandwidth", "20KB/s", "--inspect-addr", "off"])
    port = mg.wait_forward(c)[0][2]
    u = mg.udp_sock()
    for i in range(300):
        u.sendto(b"%04d" % i + b"x" * 996, (HOST, port))
    time.sleep(1.0)
    got = len(svc.received)
    assert 10 <= got <= 60, got
    m = parse_metrics(scrape(srv.admin))
    drops = metric(m, "mgrok_udp_drops_total", direction="in", reason="bandwidth")
    assert drops is not None and drops >= 300 - got - 5, (drops, got)


def test_udp_token_limit_out_drops_replies(mg, tmp_path):
    """A token with a high "in" and a low "out" limit: all 300 datagrams
    reach the service, most of its answers are dropped at the server."""
    srv = bw_server(mg, tmp_path)
    svc = mg.udp_service(mode="tag")
    c = mg.udp_client(svc.port, srv, token="udpout-secret", extra=["--inspect-addr", "off"])
    port = mg.wait_forward(c)[0][2]
    assert tunnel_json(srv)["bandwidth"] == {"in": 10 * MB, "out": 20000}
    u = mg.udp_sock()
    u.settimeout(0.2)
    for i in range(300):
        u.sendto(b"%04d" % i + b"x" * 996, (HOST, port))
        if i % 50 == 49:
            time.sleep(0.01)
    replies = 0
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        try:
            u.recvfrom(65536)
            replies += 1
        except socket.timeout:
            pass
    assert wait_for(lambda: len(svc.received) == 300, 5), len(svc.received)
    assert 10 <= replies <= 60, replies
    m = parse_metrics(scrape(srv.admin))
    drops = metric(m, "mgrok_udp_drops_total", direction="out", reason="bandwidth")
    assert drops is not None and drops >= 300 - replies - 5, (drops, replies)
