"""The server behind load balancers (--trusted-proxies) on its HTTP, HTTPS
and UDP listeners (the TCP tunnels' ports: test_proxy_protocol.py).

Debian's haproxy stands in front: in HTTP mode with `option forwardfor`
(its X-Forwarded-For names the visitor), and in TCP mode with
`send-proxy-v2` / `send-proxy` before the plain and the TLS listener. The
visitor's address it carries is what the rules (the agent's --deny-cidr),
the log lines and the X-Forwarded-For sent to the local service use; a
visitor's own X-Forwarded-For is believed only from a trusted proxy;
anyone else is refused. UDP: a trusted balancer's datagrams carry a PROXY
v2 header naming the visitor."""

import re
import shutil
import socket
import ssl
import struct

import pytest

from helpers import HOST, make_pki, pick_free_port, wait_for
from test_admin import Sse, admin_port, metric, parse_metrics, scrape
from test_http import _hdr, _http_client, _http_server, http_service

HAPROXY = shutil.which("haproxy") or (
    "/usr/sbin/haproxy" if shutil.which("/usr/sbin/haproxy") else None)
pytestmark = pytest.mark.skipif(HAPROXY is None, reason="Debian's haproxy is not installed "
                                "(scripts/deps.sh installs it)")


def _open(port):
    try:
        socket.create_connection((HOST, port), timeout=1).close()
        return True
    except OSError:
        return False


def _request(port, host, source, path="/", xff=None, tls_ctx=None):
    """One GET from source (a local address) to 127.0.0.1:port; the status
    code, or None when the connection was refused or reset."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.bind((source, 0))
        s.connect((HOST, port))
        if tls_ctx is not None:
            s = tls_ctx.wrap_socket(s, server_hostname=host)
        req = "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n" % (path, host)
        if xff:
            req += "X-Forwarded-For: %s\r\n" % xff
        s.sendall((req + "\r\n").encode())
        got = b""
        while b"\r\n" not in got:
            d = s.recv(4096)
            if not d:
                break
            got += d
        m = re.match(rb"HTTP/1\.[01] (\d{3})", got)
        return int(m.group(1)) if m else None
    except OSError:
        return None
    finally:
        s.close()


def test_http_and_https_listeners_behind_haproxy(mg, tmp_path):
    srv = _http_server(mg, https=True, extra=["--trusted-proxies", "127.0.0.1/32",
                                              "--admin-addr", "127.0.0.1:0"])
    admin = admin_port(srv.proc)
    svc = http_service(mg, "lb")
    _, host = _http_client(mg, srv, svc.port, subdomain="lb",
                           extra=["--deny-cidr", "127.0.0.3/32", "--inspect-addr", "off"])
    p_http, p_pp, p_tls = pick_free_port(), pick_free_port(), pick_free_port()
    cfg = tmp_path / "lb.cfg"
    cfg.write_text(f"""
defaults
    timeout connect 5s
    timeout client 20s
    timeout server 20s
frontend http_mode
    mode http
    bind 127.0.0.1:{p_http}
    option forwardfor
    default_backend be_http
backend be_http
    mode http
    server mgrok 127.0.0.1:{srv.http_port}
frontend tcp_pp2
    mode tcp
    bind 127.0.0.1:{p_pp}
    default_backend be_pp2
backend be_pp2
    mode tcp
    server mgrok 127.0.0.1:{srv.http_port} send-proxy-v2
frontend tcp_tls
    mode tcp
    bind 127.0.0.1:{p_tls}
    default_backend be_tls
backend be_tls
    mode tcp
    server mgrok 127.0.0.1:{srv.https_port} send-proxy
""")
    lb = mg.spawn("haproxy-lb", [HAPROXY, "-db", "-f", str(cfg)])
    assert wait_for(lambda: all(_open(p) for p in (p_http, p_pp, p_tls))
                    or (not lb.alive() and "dead"), 10) is True, lb.log()

    # 1. haproxy in HTTP mode: its X-Forwarded-For (the last entry) is the
    # visitor; the visitor's own claim stays before it, as haproxy sent it
    assert _request(p_http, host, "127.0.0.2", "/a", xff="6.6.6.6") == 200
    xff = ", ".join(_hdr(svc.last(), "X-Forwarded-For"))
    assert xff.endswith("127.0.0.2") and "6.6.6.6" in xff, svc.last()["headers"]
    assert _request(p_http, host, "127.0.0.3", "/b") == 403
    # the access log names the visitor, not the balancer
    assert wait_for(lambda: re.search(r"http 127\.0\.0\.2:0 lb\.\S+ GET /a 200",
                                      srv.proc.stderr()), 5), srv.proc.stderr()[-2000:]

    # 2. a PROXY v2 header before plain HTTP: the visitor's address comes
    # from it, and the visitor's own X-Forwarded-For is dropped
    assert _request(p_pp, host, "127.0.0.2", "/c", xff="6.6.6.6") == 200
    assert _hdr(svc.last(), "X-Forwarded-For") == ["127.0.0.2"], svc.last()["headers"]
    assert _request(p_pp, host, "127.0.0.3", "/d") == 403

    # 3. a PROXY v1 header before the TLS listener (terminated here)
    ctx = ssl.create_default_context(cafile=srv.pki.ca_pem)
    assert _request(p_tls, host, "127.0.0.2", "/e", xff="6.6.6.6", tls_ctx=ctx) == 200
    q = svc.last()
    assert _hdr(q, "X-Forwarded-For") == ["127.0.0.2"], q["headers"]
    assert _hdr(q, "X-Forwarded-Proto") == ["https"], q["headers"]
    assert _request(p_tls, host, "127.0.0.3", "/f", tls_ctx=ctx) == 403

    # 4. anyone else is refused at once, on both listeners; a trusted peer
    # whose PROXY header is malformed too
    assert _request(srv.http_port, host, "127.0.0.2", "/g") is None
    assert _request(srv.https_port, host, "127.0.0.2", "/h", tls_ctx=ctx) is None
    t = socket.create_connection((HOST, srv.http_port), timeout=5)
    t.sendall(b"PROXY TCP4 1.2.3.4 nonsense\r\n")
    try:
        assert t.recv(100) == b""
    except OSError:
        pass
    t.close()
    assert wait_for(lambda: "http load balancer 127.0.0.1" in srv.proc.stderr(), 5), \
        srv.proc.stderr()[-2000:]
    m = parse_metrics(scrape(admin))
    assert metric(m, "mgrok_connections_refused_total", reason="untrusted_source") == 2, m
    assert metric(m, "mgrok_connections_refused_total", reason="bad_proxy_header") == 1
    assert metric(m, "mgrok_connections_refused_total", reason="not_allowed_source") == 3
    # and each is an event naming its reason (at most one a second per
    # reason: the later ones are counted in "suppressed")
    sse = Sse(admin, "/api/v1/events?since=0")
    try:
        for reason, addr in (("untrusted_source", "127.0.0.2:"), ("not_allowed_source", "127.0.0.3:"),
                             ("bad_proxy_header", "127.0.0.1:")):
            e = sse.wait(lambda e: e[0] == "visitor_refused" and e[1]["reason"] == reason)
            assert e and e[1]["remote_addr"].startswith(addr), sse.events
        e = sse.wait(lambda e: e[0] == "visitor_refused" and e[1]["reason"] == "not_allowed_source")
        assert e[1]["name"] and "denied sources" in e[1]["detail"], e
    finally:
        sse.close()


def _pp2_dgram(src, sport, dst, dport, payload):
    """A PROXY v2 header (PROXY, INET, DGRAM) and the payload."""
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x12]) + struct.pack("!H", len(body))
            + body + payload)


def test_udp_port_behind_a_balancer(mg):
    """A balancer (a Python socket on the trusted 127.0.0.1) gives each
    visitor its own source port and puts a PROXY v2 header on the datagrams;
    the server takes the visitor from it: the agent's --deny-cidr refuses
    10.9.8.7 but serves 10.9.8.8, and replies go back to the balancer bare.
    A datagram from anyone else, and a new flow without a header, are
    dropped and counted."""
    srv = mg.server(extra=["--trusted-proxies", "127.0.0.1/32", "--admin-addr", "127.0.0.1:0"])
    admin = admin_port(srv)
    echo = mg.udp_service(mode="echo")
    c = mg.udp_client(echo.port, srv, extra=["--deny-cidr", "10.9.8.7/32",
                                              "--inspect-addr", "off"])
    pub = mg.wait_forward(c)[0][2]

    ok = mg.udp_sock()
    ok.settimeout(3)
    got = None
    for i in range(20):  # the first datagrams may race the tunnel's start
        ok.sendto(_pp2_dgram("10.9.8.8", 4000, "127.0.0.1", pub, b"hello %d" % i), (HOST, pub))
        try:
            got = ok.recv(100)
            break
        except socket.timeout:
            continue
    assert got is not None and got.startswith(b"hello "), got
    # a later datagram of the flow needs no header
    ok.sendto(b"bare", (HOST, pub))
    assert ok.recv(100) == b"bare"

    denied = mg.udp_sock()
    denied.settimeout(1)
    denied.sendto(_pp2_dgram("10.9.8.7", 4000, "127.0.0.1", pub, b"no"), (HOST, pub))
    with pytest.raises(socket.timeout):
        denied.recv(100)
    headless = mg.udp_sock()
    headless.settimeout(1)
    headless.sendto(b"who am i", (HOST, pub))
    with pytest.raises(socket.timeout):
        headless.recv(100)
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    mg.track(stranger)
    stranger.bind(("127.0.0.2", 0))
    stranger.settimeout(1)
    stranger.sendto(_pp2_dgram("10.9.8.8", 4001, "127.0.0.1", pub, b"x"), (HOST, pub))
    with pytest.raises(socket.timeout):
        stranger.recv(100)

    def drops():
        m = parse_metrics(scrape(admin))
        return [metric(m, "mgrok_udp_drops_total", direction="in", reason=r)
                for r in ("policy", "bad_proxy_header", "untrusted_source")]
    assert wait_for(lambda: drops() == [1, 1, 1], 5), drops()
