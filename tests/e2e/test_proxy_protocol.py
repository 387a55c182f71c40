"""The agent's --proxy-protocol v1|v2: Debian's haproxy, with accept-proxy,
is the local service of a TCP tunnel and logs the visitor's real address
(the one the server saw) for both versions; a v2 header carries the
connection's unique id. haproxy passes the bytes on to an echo service, so
the visitor's data goes through unchanged after the header. nginx with
`listen ... proxy_protocol` echoes the address it was given. The v2 TLVs
(the server's metadata, NewStreamEx2) are decoded here by a parser written
from the spec, through TLS (SNI, ALPN) and TCP tunnels of a named token;
UDP tunnels get a v2 header in front of every datagram."""

import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import threading

import pytest

from helpers import HOST, make_pki, pick_free_port, pick_port_range, wait_for

HAPROXY = shutil.which("haproxy") or (
    "/usr/sbin/haproxy" if shutil.which("/usr/sbin/haproxy") else None)
pytestmark = pytest.mark.skipif(HAPROXY is None, reason="Debian's haproxy is not installed "
                                "(scripts/deps.sh installs it)")


def haproxy_accept_proxy(mg, tmp_path, backend_port):
    port = pick_free_port()
    cfg = tmp_path / ("haproxy-%d.cfg" % port)
    cfg.write_text(f"""
global
    log stdout format raw local0 info
defaults
    mode tcp
    log global
    timeout connect 5s
    timeout client 20s
    timeout server 20s
frontend fe
    bind 127.0.0.1:{port} accept-proxy
    log-format "visitor=%ci:%cp frontend=%fi:%fp uid=%ID bytes=%B"
    unique-id-format "%[fc_pp_unique_id]"
    default_backend be
backend be
    server echo 127.0.0.1:{backend_port}
""")
    p = mg.spawn("haproxy", [HAPROXY, "-db", "-f", str(cfg)])

    def up():
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return True
        except OSError:
            return not p.alive() and "dead"
    assert wait_for(up, 10) is True, "haproxy did not start\n%s" % p.log()
    return p, port


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_local_service_sees_the_visitor(mg, tmp_path, version):
    srv = mg.server()
    echo = mg.echo_service()
    hap, hport = haproxy_accept_proxy(mg, tmp_path, echo.port)
    c = mg.tcp_client(hport, srv, extra=["--proxy-protocol", version, "--inspect-addr", "off"])
    pub = mg.wait_forward(c)[0][2]
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    s.bind(("127.0.0.9", 0))
    vport = s.getsockname()[1]
    s.connect((HOST, pub))
    s.sendall(b"hello through haproxy")
    got = b""
    while len(got) < 21:
        d = s.recv(100)
        assert d, got
        got += d
    assert got == b"hello through haproxy"
    s.close()
    line = wait_for(lambda: re.search(r"visitor=127\.0\.0\.9:%d frontend=127\.0\.0\.1:%d uid=(\S*)"
                                      % (vport, pub), hap.stdout()), 10)
    assert line, "haproxy did not log the visitor 127.0.0.9:%d\n%s" % (vport, hap.log())
    if version == "v2":
        # the server's connection id (NewStreamEx2): 128 bits in hex
        assert re.fullmatch(r"[0-9a-f]{32}", line.group(1)), line.group(0)


def test_proxy_protocol_refused_for_http_in_a_file(mg, tmp_path):
    cfg = tmp_path / "agent.yml"
    cfg.write_text("server: 127.0.0.1:9\ntoken: t\ntunnels:\n  web:\n    type: http\n"
                   "    local: 3000\n    proxy_protocol: v2\n")
    import subprocess
    r = subprocess.run([mg.bin, "config", "check", "--client", str(cfg)],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 1 and "proxy_protocol is for tcp, tls and udp tunnels" in \
        r.stdout + r.stderr, r


def test_server_behind_a_load_balancer(mg, tmp_path):
    """haproxy with send-proxy-v2 in front of a TCP tunnel's public port:
    the server trusts 127.0.0.1 (--trusted-proxies), takes the visitor's
    address from the header, and passes it on: the local service (haproxy
    accept-proxy, fed by the agent's --proxy-protocol v1) logs the visitor
    127.0.0.9, not the balancer. Anyone else connecting is refused, and so
    is a trusted peer without a header."""
    srv = mg.server(extra=["--trusted-proxies", "127.0.0.1/32"])
    echo = mg.echo_service()
    inner, iport = haproxy_accept_proxy(mg, tmp_path, echo.port)
    c = mg.tcp_client(iport, srv, extra=["--proxy-protocol", "v1", "--inspect-addr", "off"])
    pub = mg.wait_forward(c)[0][2]
    # the balancer in front of the public port
    fport = pick_free_port()
    cfg = tmp_path / "lb.cfg"
    cfg.write_text(f"""
defaults
    mode tcp
    timeout connect 5s
    timeout client 20s
    timeout server 20s
frontend lb
    bind 127.0.0.1:{fport}
    default_backend tunnel
backend tunnel
    server mgrok 127.0.0.1:{pub} send-proxy-v2
""")
    lb = mg.spawn("haproxy-lb", [HAPROXY, "-db", "-f", str(cfg)])
    assert wait_for(lambda: _open(fport) or (not lb.alive() and "dead"), 10) is True, lb.log()

    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    s.bind(("127.0.0.9", 0))
    vport = s.getsockname()[1]
    s.connect((HOST, fport))
    s.sendall(b"via the balancer")
    got = b""
    while len(got) < 16:
        d = s.recv(100)
        assert d, got
        got += d
    s.close()
    assert got == b"via the balancer"
    assert wait_for(lambda: re.search(r"visitor=127\.0\.0\.9:%d " % vport, inner.stdout()), 10), \
        inner.log()
    # an untrusted peer is refused; a trusted one without a header too
    d = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    d.settimeout(5)
    d.bind(("127.0.0.2", 0))
    try:  # reset at once: connect itself may see it
        d.connect((HOST, pub))
        d.sendall(b"hi")
        assert d.recv(10) == b""
    except OSError:
        pass
    d.close()
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.settimeout(5)
    try:
        t.connect((HOST, pub))
        t.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert t.recv(10) == b""
    except OSError:
        pass
    t.close()
    assert wait_for(lambda: re.search(r"load balancer 127\.0\.0\.1:\d+: connection refused: "
                                      r"\S.*PROXY", srv.stderr()), 5), srv.stderr()[-2000:]


def _open(port):
    try:
        socket.create_connection((HOST, port), timeout=1).close()
        return True
    except OSError:
        return False


# ---------------------------------------------------------------- v2 TLVs

PP2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
PP2_ALPN, PP2_AUTHORITY, PP2_UNIQUE_ID = 0x01, 0x02, 0x05
PP2_MGROK_TOKEN, PP2_MGROK_SUBJECT = 0xE0, 0xE1
DOMAIN = "pp.test"


def parse_pp2(b):
    """A PROXY v2 header at the start of b, decoded from the spec
    (haproxy's proxy-protocol.txt), not with mgrok's codec: (its length,
    {cmd, family, transport, src, dst, tlvs: [(type, value)]}), or None
    while b is shorter than the header."""
    if len(b) < 16:
        return None
    assert b[:12] == PP2_SIG, b[:16]
    ver_cmd, fam, ln = b[12], b[13], struct.unpack(">H", b[14:16])[0]
    if len(b) < 16 + ln:
        return None
    assert ver_cmd >> 4 == 2, hex(ver_cmd)
    body = b[16:16 + ln]
    src = dst = None
    if fam >> 4 == 1:
        src = (socket.inet_ntop(socket.AF_INET, body[0:4]), struct.unpack(">H", body[8:10])[0])
        dst = (socket.inet_ntop(socket.AF_INET, body[4:8]), struct.unpack(">H", body[10:12])[0])
        off = 12
    elif fam >> 4 == 2:
        src = (socket.inet_ntop(socket.AF_INET6, body[0:16]),
               struct.unpack(">H", body[32:34])[0])
        dst = (socket.inet_ntop(socket.AF_INET6, body[16:32]),
               struct.unpack(">H", body[34:36])[0])
        off = 36
    else:
        off = 0
    tlvs = []
    while off < ln:
        assert ln - off >= 3, body[off:]
        t, n = body[off], struct.unpack(">H", body[off + 1:off + 3])[0]
        assert off + 3 + n <= ln, (t, n, ln - off)
        tlvs.append((t, body[off + 3:off + 3 + n]))
        off += 3 + n
    return 16 + ln, {"cmd": ver_cmd & 15, "family": fam >> 4, "transport": fam & 15,
                     "src": src, "dst": dst, "tlvs": tlvs}


def tlv(h, t):
    vs = [v for (ty, v) in h["tlvs"] if ty == t]
    assert len(vs) <= 1, (t, h["tlvs"])
    return vs[0] if vs else None


class HeaderService:
    """A TCP local service that reads a PROXY v2 header and then `after`
    bytes (the visitor's first ones), records both, and closes."""

    def __init__(self, after):
        self.after = after
        self.got = []
        self.errors = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((HOST, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
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
            try:
                c.settimeout(10)
                buf = b""
                while True:
                    r = parse_pp2(buf)
                    if r and len(buf) >= r[0] + self.after:
                        break
                    d = c.recv(4096)
                    assert d, "closed after %r" % buf
                    buf += d
                self.got.append((r[1], buf[r[0]:]))
            except Exception as e:  # for the test to see
                self.errors.append(repr(e))
            finally:
                c.close()

    def close(self):
        self._stop.set()
        self.sock.close()
        self._t.join(timeout=2)


def named_server(mg, tmp_path):
    """A server from a file with the named token alice, an HTTPS port for
    TLS tunnels under DOMAIN; returns (proc, https_port)."""
    base = pick_port_range(20)
    https_port = pick_free_port()
    pki = make_pki(mg, "pki-pp", "*.%s,%s" % (DOMAIN, DOMAIN))
    cfg = tmp_path / "server.yml"
    cfg.write_text(f"""
addr: "127.0.0.1:0"
bind_addr: 127.0.0.1
start_port: {base}
end_port: {base + 19}
domain: {DOMAIN}
https_addr: "127.0.0.1:{https_port}"
https_cert: {pki.server_pem}
https_key: {pki.server_key}
log_level: debug
tokens:
  - name: alice
    secret: alice-secret
""")
    p = mg.spawn("server", [mg.bin, "server", "--config", str(cfg)])
    m = wait_for(lambda: re.search(r"listening on 127\.0\.0\.1:(\d+)", p.stderr())
                 or (not p.alive() and "dead"), 10)
    assert m and m != "dead", p.log()
    p.port = int(m.group(1))
    assert wait_for(lambda: "https listening on port %d" % https_port in p.stderr(), 10), p.log()
    return p, https_port


def test_v2_tlvs_through_a_tls_tunnel(mg, tmp_path):
    """SNI and ALPN from the ClientHello the server peeked at, a unique id
    per connection and the token's name reach the local service as v2 TLVs;
    the ClientHello follows the header untouched."""
    srv, https_port = named_server(mg, tmp_path)
    svc = HeaderService(after=3)
    mg.services.append(svc)
    host = "site." + DOMAIN
    c = mg.proxy_client("tls", svc.port, srv, token="alice-secret",
                        extra=["--hostname", host, "--proxy-protocol", "v2",
                               "--inspect-addr", "off"])
    assert wait_for(lambda: "Forwarding " in c.stdout() or not c.alive(), 10) and c.alive(), \
        mg.logs()
    vports = []
    for _ in range(2):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.settimeout(10)
        raw.bind(("127.0.0.2", 0))
        vports.append(raw.getsockname()[1])
        raw.connect((HOST, https_port))
        try:  # the service reads the hello's first bytes and closes
            ctx.wrap_socket(raw, server_hostname=host).close()
        except (ssl.SSLError, OSError):
            pass
        raw.close()
    assert wait_for(lambda: len(svc.got) + len(svc.errors) >= 2, 10), mg.logs()
    assert not svc.errors, svc.errors
    uids = []
    for (h, first), vport in zip(svc.got, vports):
        assert h["cmd"] == 1 and h["family"] == 1 and h["transport"] == 1, h
        assert h["src"] == ("127.0.0.2", vport), h
        assert tlv(h, PP2_AUTHORITY) == host.encode(), h
        assert tlv(h, PP2_ALPN) == b"\x02h2\x08http/1.1", h
        assert tlv(h, PP2_MGROK_TOKEN) == b"alice", h
        assert tlv(h, PP2_MGROK_SUBJECT) is None, h
        uid = tlv(h, PP2_UNIQUE_ID)
        assert uid and re.fullmatch(rb"[0-9a-f]{32}", uid), h
        uids.append(uid)
        assert first[:3] == b"\x16\x03\x01", first  # the ClientHello record
    assert uids[0] != uids[1], uids


def test_v2_token_name_through_a_tcp_tunnel(mg, tmp_path):
    srv, _ = named_server(mg, tmp_path)
    svc = HeaderService(after=5)
    mg.services.append(svc)
    c = mg.tcp_client(svc.port, srv, token="alice-secret",
                      extra=["--proxy-protocol", "v2", "--inspect-addr", "off"])
    pub = mg.wait_forward(c)[0][2]
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    s.bind(("127.0.0.2", 0))
    vport = s.getsockname()[1]
    s.connect((HOST, pub))
    s.sendall(b"hello")
    assert wait_for(lambda: svc.got or svc.errors, 10), mg.logs()
    s.close()
    assert not svc.errors, svc.errors
    h, first = svc.got[0]
    assert h["src"] == ("127.0.0.2", vport) and h["dst"] == ("127.0.0.1", pub), h
    assert tlv(h, PP2_MGROK_TOKEN) == b"alice", h
    assert re.fullmatch(rb"[0-9a-f]{32}", tlv(h, PP2_UNIQUE_ID) or b""), h
    assert tlv(h, PP2_AUTHORITY) is None and tlv(h, PP2_ALPN) is None, h
    assert first == b"hello"


def test_v2_certificate_subject(mg):
    """An agent that logged in with its client certificate alone (MTLS):
    the local service gets the certificate's subject (0xE1), no token
    name."""
    pki = make_pki(mg, "pki-mtls")
    srv = mg.server(extra=["--tls", "--tls-cert", pki.server_pem, "--tls-key", pki.server_key,
                           "--tls-client-ca", pki.ca_pem])
    svc = HeaderService(after=2)
    mg.services.append(svc)
    c = mg._client([mg.bin, "tcp", "%s:%d" % (HOST, svc.port), "--server",
                    "%s:%d" % (HOST, srv.port), "--tls-ca", pki.ca_pem, "--tls-cert",
                    pki.client_pem, "--tls-key", pki.client_key, "--proxy-protocol", "v2",
                    "--inspect-addr", "off"], None, None)
    pub = mg.wait_forward(c)[0][2]
    assert "authenticated (mtls, cert:" in srv.stderr(), srv.log()
    s = socket.create_connection((HOST, pub), timeout=10)
    s.sendall(b"hi")
    assert wait_for(lambda: svc.got or svc.errors, 10), mg.logs()
    s.close()
    assert not svc.errors, svc.errors
    h, first = svc.got[0]
    subj = tlv(h, PP2_MGROK_SUBJECT)
    assert subj and subj.startswith(b"CN=mgrok-client"), h
    assert tlv(h, PP2_MGROK_TOKEN) is None, h
    assert first == b"hi"


# ---------------------------------------------------------------- nginx

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


def nginx_proxy_protocol(mg, tmp_path):
    """nginx as the current user, in the foreground, everything under
    tmp_path, answering each request with the address of its PROXY header."""
    assert NGINX, "nginx is not installed (scripts/deps.sh installs it)"
    port = pick_free_port()
    d = tmp_path / "nginx"
    d.mkdir()
    conf = d / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
events {{ worker_connections 64; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port} proxy_protocol;
        location / {{
            default_type text/plain;
            return 200 "$proxy_protocol_addr:$proxy_protocol_port\\n";
        }}
    }}
}}
""")
    p = mg.spawn("nginx", [NGINX, "-p", str(d), "-c", str(conf), "-e", str(d / "error.log"),
                           "-g", "daemon off; pid %s;" % (d / "nginx.pid")])

    def up():
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return True
        except OSError:
            return not p.alive() and "dead"
    err = lambda: (d / "error.log").read_text() if (d / "error.log").exists() else ""
    assert wait_for(up, 10) is True, "nginx did not start\n%s\n%s" % (p.log(), err())
    return p, port


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_nginx_sees_the_visitor(mg, tmp_path, version):
    srv = mg.server()
    ngx, nport = nginx_proxy_protocol(mg, tmp_path)
    c = mg.tcp_client(nport, srv, extra=["--proxy-protocol", version, "--inspect-addr", "off"])
    pub = mg.wait_forward(c)[0][2]
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    s.bind(("127.0.0.2", 0))
    vport = s.getsockname()[1]
    s.connect((HOST, pub))
    s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
    got = b""
    while True:
        d = s.recv(4096)
        if not d:
            break
        got += d
    s.close()
    assert got.startswith(b"HTTP/1.1 200"), (got, ngx.log())
    assert got.split(b"\r\n\r\n", 1)[1] == b"127.0.0.2:%d\n" % vport, got


# ---------------------------------------------------------------- UDP


class PPUdpService:
    """A UDP local service: each datagram must start with a PROXY v2
    header (parsed here); it records (header, payload) and answers the
    payload alone."""

    def __init__(self):
        self.got = []
        self.errors = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()

    def _loop(self):
        while not self._stop.is_set():
            try:
                d, a = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                r = parse_pp2(d)
                assert r, d
                self.got.append((r[1], d[r[0]:]))
                self.sock.sendto(d[r[0]:], a)
            except Exception as e:
                self.errors.append(repr(e))

    def close(self):
        self._stop.set()
        self.sock.close()
        self._t.join(timeout=2)


def test_udp_v2_header_per_datagram(mg):
    srv = mg.server()
    svc = PPUdpService()
    mg.services.append(svc)
    c = mg.udp_client(svc.port, srv, extra=["--proxy-protocol", "v2", "--inspect-addr", "off"])
    pub = mg.wait_forward(c)[0][2]
    s = mg.track(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    s.bind(("127.0.0.2", 0))
    vport = s.getsockname()[1]
    s.settimeout(5)
    for payload in (b"first datagram", b"second"):
        s.sendto(payload, (HOST, pub))
        d, _ = s.recvfrom(65536)
        assert d == payload, (d, svc.errors)
    assert not svc.errors, svc.errors
    assert len(svc.got) == 2, svc.got
    uids = set()
    for (h, payload), want in zip(svc.got, (b"first datagram", b"second")):
        assert payload == want
        assert h["cmd"] == 1 and h["family"] == 1 and h["transport"] == 2, h  # INET, DGRAM
        assert h["src"] == ("127.0.0.2", vport) and h["dst"] == ("127.0.0.1", pub), h
        uids.add(tlv(h, PP2_UNIQUE_ID))
    assert len(uids) == 1 and None not in uids, uids  # one flow, one id


def test_udp_v1_refused(mg, tmp_path):
    cfg = tmp_path / "agent.yml"
    cfg.write_text("server: 127.0.0.1:9\ntoken: t\ntunnels:\n  dns:\n    type: udp\n"
                   "    local: 5353\n    proxy_protocol: v1\n")
    r = subprocess.run([mg.bin, "config", "check", "--client", str(cfg)],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 1 and "proxy_protocol v1" in r.stdout + r.stderr and \
        "udp tunnel takes v2" in r.stdout + r.stderr, r
    cfg.write_text(cfg.read_text().replace("v1", "v2"))
    r = subprocess.run([mg.bin, "config", "check", "--client", str(cfg)],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r
    r = subprocess.run([mg.bin, "udp", "5353", "--server", "127.0.0.1:9", "--token", "t",
                        "--proxy-protocol", "v1"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 2 and "--proxy-protocol: v1" in r.stderr and \
        "udp tunnel takes v2" in r.stderr, r


# ---------------------------------------------------------------- the wire

def _parse_any_newstream(buf, _orig=__import__("smux").parse_newstream):
    """smux.parse_newstream, plus NewStreamEx2 (0x0B): NewStreamEx's fields
    and meta_len u16 | meta, the TLVs as a list under "meta"."""
    if not buf or buf[0] != 0x0B:
        return _orig(buf)
    r = _orig(b"\x06" + bytes(buf[1:]))
    if r is None or len(buf) < r[0] + 2:
        return None
    n, f = r
    ml = struct.unpack(">H", buf[n:n + 2])[0]
    if len(buf) < n + 2 + ml:
        return None
    meta, tlvs, off = bytes(buf[n + 2:n + 2 + ml]), [], 0
    while off < ml:
        t, ln = meta[off], struct.unpack(">H", meta[off + 1:off + 3])[0]
        tlvs.append((t, meta[off + 3:off + 3 + ln]))
        off += 3 + ln
    assert off == ml, meta
    return n + 2 + ml, dict(f, type=0x0B, meta=tlvs)


def test_newstreamex2_only_with_the_cap_and_v2(mg, monkeypatch):
    """At the wire, with the Python client of tests/e2e/smux.py: NewStreamEx2
    goes only to a session whose caps have STREAM_META (bit 4), and only for
    a tunnel registered with PROXY protocol 2; everything else gets
    NewStreamEx as before. A UDP registration asking for v1 is refused
    (RegisterErr code 7)."""
    import smux
    monkeypatch.setattr(smux, "parse_newstream", _parse_any_newstream)

    def regex(ptype, name, pp):
        opts = struct.pack(">BHB", 0x06, 1, pp) if pp else b""
        return struct.pack(">BBHHB", 0x08, ptype, 0, 9, len(name)) + name + opts

    def reply(pc, name):
        m = pc.wait_ctrl(lambda m: m[0] in (smux.T_REGISTER_OK, smux.T_REGISTER_ERR) and
                         name in m, 5)
        assert m, pc.closed
        if m[0] == smux.T_REGISTER_ERR:
            return ("err", m[1], m[3 + m[2]:].decode())
        return ("ok", struct.unpack(">H", m[2:4])[0], None)

    srv = mg.server()
    seen = {}
    for caps, tag in ((0x17, b"m"), (0x07, b"x")):
        pc = smux.PyClient(srv.port, version=2)
        mg.track(pc.sock)
        pc.start()
        _, r = pc.login_hmac(mg.token.encode(), os.urandom(16), os.urandom(16), caps=caps)
        assert r and r[0] == smux.T_AUTHOK, r
        assert struct.unpack(">I", r[1:5])[0] == caps, r  # the intersection
        for pp in (0, 1, 2):
            name = b"%s-pp%d" % (tag, pp)
            pc.send_ctrl(regex(1, name, pp))
            kind, port, _ = reply(pc, name)
            assert kind == "ok", (name, port)
            s = socket.create_connection((HOST, port), timeout=5)
            s.sendall(b"x")
            assert wait_for(lambda: any(h["name"] == name for h in pc.headers), 5), \
                (pc.headers, pc.errors)
            s.close()
            seen[name] = [h for h in pc.headers if h["name"] == name][0]
        pc.send_ctrl(regex(2, tag + b"-udp1", 1))
        kind, code, msg = reply(pc, tag + b"-udp1")
        assert kind == "err" and code == 7 and "PROXY protocol v1" in msg, (code, msg)
        assert not pc.errors, pc.errors
    for name, h in seen.items():
        if name == b"m-pp2":
            assert h["type"] == 0x0B, h
            assert [t for t, _ in h["meta"]] == [PP2_UNIQUE_ID], h  # unnamed token
            assert h["af"] == 4 and h["addr"] == b"\x7f\x00\x00\x01", h
        else:
            assert h["type"] == smux.T_NEWSTREAM_EX, (name, h)


def test_newstreamex2_http_host(mg, monkeypatch):
    """An HTTP tunnel registered with 0x06 = 2 by a client that passes the
    metadata on (our agent does not: HTTP services get X-Forwarded-For)
    gets the request's Host as AUTHORITY."""
    import smux
    monkeypatch.setattr(smux, "parse_newstream", _parse_any_newstream)
    http_port = pick_free_port()
    srv = mg.server(extra=["--domain", DOMAIN, "--http-addr", "%s:%d" % (HOST, http_port)])
    assert wait_for(lambda: "http listening on port %d" % http_port in srv.stderr(), 10), \
        srv.log()
    pc = smux.PyClient(srv.port, version=2)
    mg.track(pc.sock)
    pc.start()
    _, r = pc.login_hmac(mg.token.encode(), os.urandom(16), os.urandom(16), caps=0x17)
    assert r and r[0] == smux.T_AUTHOK, r
    opts = struct.pack(">BH", 0x01, 3) + b"web" + struct.pack(">BHB", 0x06, 1, 2)
    pc.send_ctrl(struct.pack(">BBHHB", 0x08, 3, 0, 80, 3) + b"web" + opts)
    m = pc.wait_ctrl(lambda m: m[0] in (smux.T_REGISTER_OK, smux.T_REGISTER_ERR), 5)
    assert m and m[0] == smux.T_REGISTER_OK, m
    s = socket.create_connection((HOST, http_port), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: web.%s:%d\r\n\r\n" % (DOMAIN.encode(), http_port))
    assert wait_for(lambda: pc.headers, 5), (pc.headers, pc.errors)
    s.close()
    h = pc.headers[0]
    assert h["type"] == 0x0B, h
    meta = dict(h["meta"])
    assert meta.get(PP2_AUTHORITY) == b"web." + DOMAIN.encode(), h
    assert PP2_UNIQUE_ID in meta and PP2_ALPN not in meta, h
