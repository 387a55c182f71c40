"""The agent's --proxy-protocol v1|v2: Debian's haproxy, with accept-proxy,
is the local service of a TCP tunnel and logs the visitor's real address
(the one the server saw) for both versions; a v2 header carries the
connection's unique id. haproxy passes the bytes on to an echo service, so
the visitor's data goes through unchanged after the header."""

import re
import shutil
import socket

import pytest

from helpers import HOST, pick_free_port, wait_for

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
        assert line.group(1).startswith("mgrok-"), line.group(0)


def test_proxy_protocol_refused_for_http_in_a_file(mg, tmp_path):
    cfg = tmp_path / "agent.yml"
    cfg.write_text("server: 127.0.0.1:9\ntoken: t\ntunnels:\n  web:\n    type: http\n"
                   "    local: 3000\n    proxy_protocol: v2\n")
    import subprocess
    r = subprocess.run([mg.bin, "config", "check", "--client", str(cfg)],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 1 and "proxy_protocol is for tcp and tls tunnels" in \
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
