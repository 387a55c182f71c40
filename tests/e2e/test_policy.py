"""Per-token policy enforced (issue 14, first step): the server file's
tokens with their own ports, subdomain patterns, tunnel types and tunnel
counts; every allowed and refused registration with the message the agent
prints; a token whose secret is being rotated (both secrets work); an
expired token refused at authentication."""

import re

from helpers import HOST, pick_free_port, pick_port_range, wait_for
from test_admin import admin_port, metric, parse_metrics, scrape

LISTEN_RE = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
DOMAIN = "pol.test"


def policy_server(mg, tmp_path):
    base = pick_port_range(50)
    http_port = pick_free_port()
    cfg = tmp_path / "server.yml"
    cfg.write_text(f"""
addr: "127.0.0.1:0"
bind_addr: 127.0.0.1
start_port: {base}
end_port: {base + 49}
domain: {DOMAIN}
http_addr: "127.0.0.1:{http_port}"
log_level: debug
admin_addr: "127.0.0.1:0"
tokens:
  - name: alice
    secret: alice-secret
    allow:
      ports: ["{base}-{base + 9}", {base + 20}]
      types: [tcp, udp]
    limits:
      tunnels: 2
  - name: bob
    secret: bob-secret
    allow:
      subdomains: ["bob-*"]
      types: [http]
  - name: carol
    secret: [carol-old, carol-new]
  - name: dave
    secret: dave-secret
    expires: 2020-01-01
  - name: erin
    secret: erin-secret
    allow:
      cidrs: [127.0.0.0/8]
      deny_cidrs: [127.0.0.3/32]
  - name: frank
    secret: frank-secret
    limits:
      new_connections: 3/s
      http_requests: 5/s
  - name: gina
    secret: gina-secret
    limits:
      visitors: 2
""")
    p = mg.spawn("server", [mg.bin, "server", "--config", str(cfg)])
    m = wait_for(lambda: LISTEN_RE.search(p.stderr()) or (not p.alive() and "dead"), 10)
    assert m and m != "dead", p.log()
    p.port = int(m.group(1))
    p.admin = admin_port(p)
    p.cfg = cfg
    return p, base, http_port


def refused(c, timeout=10):
    """The agent's 'cannot register' line once it exited 1."""
    assert c.wait(timeout) == 1, c.log()
    m = re.search(r"cannot register [^:]*: (.*) \(code (\d+)\)", c.stdout() + c.stderr())
    assert m, c.log()
    return m.group(1), int(m.group(2))


def test_token_ports_types_and_tunnel_count(mg, tmp_path):
    srv, base, _ = policy_server(mg, tmp_path)
    svc = mg.echo_service()
    ok = mg.tcp_client(svc.port, srv, token="alice-secret", remote_port=base + 5,
                       extra=["--inspect-addr", "off"])
    assert mg.wait_forward(ok)[0][2] == base + 5
    out = mg.tcp_client(svc.port, srv, token="alice-secret", remote_port=base + 15,
                        extra=["--inspect-addr", "off"])
    msg, code = refused(out)
    assert msg == "port %d is outside alice's ports %d-%d, %d" % (
        base + 15, base, base + 9, base + 20) and code == 5, msg
    # any port: one of hers
    u = mg.udp_client(svc.port, srv, token="alice-secret", extra=["--inspect-addr", "off"])
    uport = mg.wait_forward(u)[0][2]
    assert base <= uport <= base + 9 or uport == base + 20, uport
    # a third tunnel at once is over her count
    third = mg.tcp_client(svc.port, srv, token="alice-secret", remote_port=base + 20,
                          extra=["--inspect-addr", "off"])
    msg, code = refused(third)
    assert msg == "alice may have at most 2 tunnels at once" and code == 6, msg
    # not her type
    h = mg.proxy_client("http", svc.port, srv, token="alice-secret",
                        extra=["--subdomain", "alice-web", "--inspect-addr", "off"])
    msg, code = refused(h)
    assert msg == "type http is not among alice's types tcp, udp", msg
    # the refusals are in the server's log, with the rule, and counted
    assert "is outside alice's ports" in srv.stderr()
    m = parse_metrics(scrape(srv.admin))
    assert metric(m, "mgrok_registrations_refused_total", code="not_allowed") == 2
    assert metric(m, "mgrok_registrations_refused_total", code="limit") == 1


def test_token_subdomain_patterns(mg, tmp_path):
    srv, base, http_port = policy_server(mg, tmp_path)
    svc = mg.echo_service()
    ok = mg.proxy_client("http", svc.port, srv, token="bob-secret",
                         extra=["--subdomain", "bob-shop", "--inspect-addr", "off"])
    assert wait_for(lambda: "bob-shop.%s" % DOMAIN in ok.stdout(), 10), ok.log()
    bad = mg.proxy_client("http", svc.port, srv, token="bob-secret",
                          extra=["--subdomain", "shop", "--inspect-addr", "off"])
    msg, code = refused(bad)
    assert "shop" in msg and "bob-*" in msg and code == 5, msg
    t = mg.tcp_client(svc.port, srv, token="bob-secret", extra=["--inspect-addr", "off"])
    msg, _ = refused(t)
    assert msg == "type tcp is not among bob's types http", msg


def test_rotated_secret_and_expired_token(mg, tmp_path):
    srv, base, _ = policy_server(mg, tmp_path)
    svc = mg.echo_service()
    for secret in ("carol-old", "carol-new"):
        c = mg.tcp_client(svc.port, srv, token=secret, extra=["--inspect-addr", "off"])
        mg.wait_forward(c)
    d = mg.tcp_client(svc.port, srv, token="dave-secret", extra=["--inspect-addr", "off"])
    assert d.wait(10) == 1, d.log()
    assert "token dave expired on 2020-01-01" in d.stdout() + d.stderr(), d.log()
    assert "token dave expired on 2020-01-01" in srv.stderr()
    m = parse_metrics(scrape(srv.admin))
    assert metric(m, "mgrok_auth_failures_total", reason="expired") == 1


def _echo_from(port, source, payload=b"ping"):
    """Connect from source to the tunnel's port; the echo, or None when the
    server refused (reset or closed without a byte)."""
    import socket
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.bind((source, 0))
        s.connect((HOST, port))
        s.sendall(payload)
        got = s.recv(100)
        return got or None
    except OSError:
        return None
    finally:
        s.close()


def test_token_source_lists(mg, tmp_path):
    """erin's tunnels take visitors from 127.0.0.0/8 but not 127.0.0.3: the
    server refuses before any byte reaches the agent, for TCP, HTTP (403)
    and UDP (dropped), and counts it."""
    import socket
    from test_http import _get
    srv, base, http_port = policy_server(mg, tmp_path)
    svc = mg.echo_service()
    c = mg.tcp_client(svc.port, srv, token="erin-secret", extra=["--inspect-addr", "off"])
    port = mg.wait_forward(c)[0][2]
    assert _echo_from(port, "127.0.0.2") == b"ping"
    assert _echo_from(port, "127.0.0.3") is None
    # HTTP: 403 for the denied source
    from test_http import http_service
    hs = http_service(mg, "erin")
    h = mg.proxy_client("http", hs.port, srv, token="erin-secret",
                        extra=["--subdomain", "erin", "--inspect-addr", "off"])
    assert wait_for(lambda: "erin.%s" % DOMAIN in h.stdout(), 10), h.log()

    def get_from(source):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5)
        s.bind((source, 0))
        s.connect((HOST, http_port))
        s.sendall(b"GET /x HTTP/1.1\r\nHost: erin.%s\r\nConnection: close\r\n\r\n"
                  % DOMAIN.encode())
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
        s.close()
        return int(data.split(b" ", 2)[1])
    assert get_from("127.0.0.2") == 200
    assert get_from("127.0.0.3") == 403
    assert len([r for r in hs.requests if r["path"] == "/x"]) == 1
    # UDP: datagrams from the denied source are dropped at the server
    us = mg.udp_service("tag")
    u = mg.udp_client(us.port, srv, token="erin-secret", extra=["--inspect-addr", "off"])
    uport = mg.wait_forward(u)[0][2]
    for source, want in (("127.0.0.2", True), ("127.0.0.3", False)):
        d = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        d.bind((source, 0))
        d.settimeout(1.5)
        d.sendto(b"hello", (HOST, uport))
        try:
            got = d.recv(100)
        except socket.timeout:
            got = None
        d.close()
        assert bool(got) == want, (source, got)
    m = parse_metrics(scrape(srv.admin))
    # one TCP connection, one HTTP request and one new UDP flow (its datagram
    # is also a drop)
    assert metric(m, "mgrok_connections_refused_total", reason="not_allowed_source") == 3
    assert metric(m, "mgrok_udp_drops_total", direction="in", reason="policy") == 1


def test_token_rates(mg, tmp_path):
    """frank's tunnels take 3 new connections and 5 HTTP requests a second
    from one source: the next is reset, or answered 429 with Retry-After;
    another source has its own allowance."""
    import socket
    srv, base, http_port = policy_server(mg, tmp_path)
    svc = mg.echo_service()
    c = mg.tcp_client(svc.port, srv, token="frank-secret", extra=["--inspect-addr", "off"])
    port = mg.wait_forward(c)[0][2]
    got = [_echo_from(port, "127.0.0.5") for _ in range(4)]
    assert got[:3] == [b"ping"] * 3 and got[3] is None, got
    assert _echo_from(port, "127.0.0.6") == b"ping"

    from test_http import http_service
    hs = http_service(mg, "frank")
    h = mg.proxy_client("http", hs.port, srv, token="frank-secret",
                        extra=["--subdomain", "frank", "--inspect-addr", "off"])
    assert wait_for(lambda: "frank.%s" % DOMAIN in h.stdout(), 10), h.log()
    s = socket.create_connection((HOST, http_port), timeout=5)
    codes, retry = [], None
    for i in range(6):
        s.sendall(b"GET /r%d HTTP/1.1\r\nHost: frank.%s\r\n\r\n" % (i, DOMAIN.encode()))
        head = b""
        while b"\r\n\r\n" not in head:
            d = s.recv(65536)
            assert d, (codes, head)
            head += d
        hdr, rest = head.split(b"\r\n\r\n", 1)
        code = int(hdr.split(b" ", 2)[1])
        codes.append(code)
        length = int(re.search(rb"(?i)content-length: (\d+)", hdr).group(1))
        while len(rest) < length:
            rest += s.recv(65536)
        if code == 429:
            retry = re.search(rb"(?i)retry-after: (\d+)", hdr)
    s.close()
    assert codes == [200] * 5 + [429], codes
    assert retry and int(retry.group(1)) >= 1, retry
    m = parse_metrics(scrape(srv.admin))
    assert metric(m, "mgrok_connections_refused_total", reason="rate_limited") == 2


def test_token_visitors(mg, tmp_path):
    """gina's tunnels hold at most 2 public connections at once, across
    tunnels: a third is reset until one ends."""
    import socket
    srv, base, _ = policy_server(mg, tmp_path)
    svc = mg.echo_service()
    c1 = mg.tcp_client(svc.port, srv, token="gina-secret", extra=["--inspect-addr", "off"])
    p1 = mg.wait_forward(c1)[0][2]
    c2 = mg.tcp_client(svc.port, srv, token="gina-secret", extra=["--inspect-addr", "off"])
    p2 = mg.wait_forward(c2)[0][2]
    held = []
    for port in (p1, p2):
        s = socket.create_connection((HOST, port), timeout=5)
        s.sendall(b"x")
        assert s.recv(10) == b"x"
        held.append(s)
    assert _echo_from(p1, "127.0.0.1") is None
    held.pop().close()
    assert wait_for(lambda: _echo_from(p2, "127.0.0.1") == b"ping", 5)
    for s in held:
        s.close()
    m = parse_metrics(scrape(srv.admin))
    assert metric(m, "mgrok_connections_refused_total", reason="too_many_visitors") >= 1


def test_reload_closes_tunnels_the_new_policy_refuses(mg, tmp_path):
    """A reload that narrows alice's ports closes her tunnel outside them,
    naming the rule; the one inside stays and keeps serving."""
    import os
    srv, base, _ = policy_server(mg, tmp_path)
    svc = mg.echo_service()
    a = mg.tcp_client(svc.port, srv, token="alice-secret", remote_port=base + 5,
                      extra=["--inspect-addr", "off", "--no-reconnect"])
    mg.wait_forward(a)
    b = mg.tcp_client(svc.port, srv, token="alice-secret", remote_port=base + 20,
                      extra=["--inspect-addr", "off"])
    mg.wait_forward(b)
    text = srv.cfg.read_text().replace('ports: ["%d-%d", %d]' % (base, base + 9, base + 20),
                                       'ports: [%d]' % (base + 20))
    assert text != srv.cfg.read_text()
    tmp = str(srv.cfg) + ".new"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, str(srv.cfg))
    want = "closed: port %d is outside alice's ports %d" % (base + 5, base + 20)
    assert wait_for(lambda: want in srv.stderr(), 10), srv.stderr()[-3000:]
    assert _echo_from(base + 5, "127.0.0.1") is None
    assert _echo_from(base + 20, "127.0.0.1") == b"ping"


def test_agent_allow_cidr_within_the_tokens(mg, tmp_path):
    """The agent's --allow-cidr (RegisterEx 0x07) narrows who may visit,
    within the token's own lists: erin allows 127.0.0.0/8 but not
    127.0.0.3; her agent allows 127.0.0.2 and 127.0.0.3 only: .2 gets in,
    .3 is refused by the token, .4 by the agent's list. A bad CIDR is
    refused by the agent's own check before it connects."""
    srv, base, _ = policy_server(mg, tmp_path)
    svc = mg.echo_service()
    c = mg.tcp_client(svc.port, srv, token="erin-secret",
                      extra=["--allow-cidr", "127.0.0.2/32,127.0.0.3/32",
                             "--inspect-addr", "off"])
    port = mg.wait_forward(c)[0][2]
    assert _echo_from(port, "127.0.0.2") == b"ping"
    assert _echo_from(port, "127.0.0.3") is None
    assert _echo_from(port, "127.0.0.4") is None
    m = parse_metrics(scrape(srv.admin))
    assert metric(m, "mgrok_connections_refused_total", reason="not_allowed_source") == 2
    import subprocess
    r = subprocess.run([mg.bin, "tcp", "80", "--allow-cidr", "10.0.0.1/8", "--token", "x",
                        "--server", "127.0.0.1:9"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 2 and "--allow-cidr" in r.stderr and "10.0.0.1/8" in r.stderr, r


def test_agent_deny_cidr(mg, tmp_path):
    """The agent's --deny-cidr (RegisterEx 0x08, an extension) refuses
    visitors its --allow-cidr (or the token) would admit: 127.0.0.0/8
    allowed but 127.0.0.5 denied (an IPv6 entry parses beside it); the
    refusal is logged and counted by reason; a bad CIDR is refused by the
    agent's own check, naming it."""
    srv, base, _ = policy_server(mg, tmp_path)
    svc = mg.echo_service()
    c = mg.tcp_client(svc.port, srv, token="frank-secret",
                      extra=["--allow-cidr", "127.0.0.0/8",
                             "--deny-cidr", "127.0.0.5, ::1/128",
                             "--inspect-addr", "off"])
    port = mg.wait_forward(c)[0][2]
    assert _echo_from(port, "127.0.0.2") == b"ping"
    assert _echo_from(port, "127.0.0.5") is None
    assert _echo_from(port, "127.0.0.6") == b"ping"
    assert "visitor 127.0.0.5" in srv.stderr() and "denied sources" in srv.stderr()
    m = parse_metrics(scrape(srv.admin))
    assert metric(m, "mgrok_connections_refused_total", reason="not_allowed_source") == 1
    import subprocess
    r = subprocess.run([mg.bin, "tcp", "80", "--deny-cidr", "::1/64x", "--token", "x",
                        "--server", "127.0.0.1:9"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 2 and "--deny-cidr" in r.stderr and "::1/64x" in r.stderr, r


def _echo_v6(port, payload=b"ping"):
    import socket
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(("::1", port))
        s.sendall(payload)
        return s.recv(100) or None
    except OSError:
        return None
    finally:
        s.close()


def test_agent_source_lists_on_ipv6(mg):
    """Public ports on ::1: a tunnel whose --allow-cidr is ::1/128 takes a
    visitor from ::1; one that allows only 127.0.0.0/8, or denies ::1,
    refuses it."""
    srv = mg.server(extra=["--bind-addr", "::1"])
    svc = mg.echo_service()
    ports = []
    for flags in (["--allow-cidr", "::1/128"], ["--allow-cidr", "127.0.0.0/8"],
                  ["--allow-cidr", "::/0", "--deny-cidr", "::1"]):
        c = mg.tcp_client(svc.port, srv, extra=flags + ["--inspect-addr", "off"])
        m = wait_for(lambda: re.search(r"tcp://\[::1\]:(\d+)", c.stdout()), 10)
        assert m, c.log()
        ports.append(int(m.group(1)))
    assert _echo_v6(ports[0]) == b"ping"
    assert _echo_v6(ports[1]) is None
    assert _echo_v6(ports[2]) is None
    assert "visitor [::1]" in srv.stderr() and "not in the tunnel's allowed sources" in srv.stderr()
    assert "in the tunnel's denied sources" in srv.stderr()
