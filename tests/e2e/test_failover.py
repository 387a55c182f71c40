"""Failover across servers, from the agent (issue 15): `--server a,b`
tries the servers in turn: the first that answers at start, the next one
at once when the one it had is lost (without a back-off between servers of
one round); TLS checks each server against its own name."""

import re
import time

from helpers import HOST, echo_roundtrip, make_pki, pick_free_port, pick_port_range, wait_for


def _servers(*srvs):
    return ",".join("%s:%d" % (HOST, s.port) for s in srvs)


def _forward_port(c, n):
    """The port of the client's n-th Forwarding line (1-based)."""
    f = wait_for(lambda: len(c.forwards()) >= n and c.forwards(), 15)
    assert f, c.log()
    return f[n - 1][2]


def test_first_that_answers_then_the_next_on_loss(mg):
    echo = mg.echo_service()
    s1, s2 = mg.server(), mg.server()
    dead = pick_free_port()
    # a dead first server: the next one at once, no back-off
    t0 = time.monotonic()
    c = mg._client([mg.bin, "tcp", "%s:%d" % (HOST, echo.port), "--server",
                    "%s:%d,%s" % (HOST, dead, _servers(s1, s2)), "--token", mg.token,
                    "--inspect-addr", "off"], None, None)
    p1 = _forward_port(c, 1)
    assert time.monotonic() - t0 < 5, c.log()
    assert "trying the next server, %s:%d" % (HOST, s1.port) in c.stderr(), c.log()
    assert "reconnecting in" not in c.stderr(), c.log()
    assert echo_roundtrip(p1, b"via s1") == b"via s1"
    assert s1.start_port <= p1 <= s1.end_port

    # s1 killed: the agent serves on s2 (the next server, at once)
    s1.kill9()
    t1 = time.monotonic()
    p2 = _forward_port(c, 2)
    assert time.monotonic() - t1 < 5, c.log()
    assert s2.start_port <= p2 <= s2.end_port, (p2, s2.start_port)
    assert echo_roundtrip(p2, b"via s2") == b"via s2"
    assert re.search(r"trying the next server, %s:%d" % (re.escape(HOST), s2.port), c.stderr())


def _leaf_for_ip(mg, pki, ip):
    """A second server certificate from pki's CA naming only ip (openssl)."""
    import os
    import subprocess
    d = pki.dir
    key, csr, pem, ext = (os.path.join(d, n) for n in ("ip.key", "ip.csr", "ip.pem", "ip.ext"))
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:%s\n" % ip)
    for argv in (["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                  "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-subj", "/CN=%s" % ip,
                  "-out", csr],
                 ["openssl", "x509", "-req", "-in", csr, "-CA", pki.ca_pem, "-CAkey",
                  pki.ca_key, "-CAcreateserial", "-days", "2", "-out", pem, "-extfile", ext]):
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
    return pem, key


def test_tls_failover_checks_each_servers_name(mg):
    """One CA, two TLS servers: the first's certificate names only
    localhost, the second's only 127.0.0.1. `--server
    localhost:P1,127.0.0.1:P2` reaches both, each checked against its own
    name; the first's address under a name its certificate lacks is
    refused, saying so."""
    pki = make_pki(mg, "pki-fo", hosts="localhost")
    pem2, key2 = _leaf_for_ip(mg, pki, "127.0.0.1")
    s1 = mg.server(extra=["--tls", "--tls-cert", pki.server_pem, "--tls-key", pki.server_key])
    s2 = mg.server(extra=["--tls", "--tls-cert", pem2, "--tls-key", key2])
    echo = mg.echo_service()
    c = mg._client([mg.bin, "tcp", "%s:%d" % (HOST, echo.port), "--server",
                    "localhost:%d,127.0.0.1:%d" % (s1.port, s2.port), "--token", mg.token,
                    "--tls", "--tls-ca", pki.ca_pem, "--inspect-addr", "off"], None, None)
    assert echo_roundtrip(_forward_port(c, 1), b"a") == b"a"
    assert "authenticated to localhost:%d" % s1.port in c.stderr()
    s1.kill9()
    assert echo_roundtrip(_forward_port(c, 2), b"b") == b"b"
    assert "authenticated to 127.0.0.1:%d" % s2.port in c.stderr()
    bad = mg._client([mg.bin, "tcp", "%s:%d" % (HOST, echo.port), "--server",
                      "127.0.0.1:%d" % s2.port, "--token", mg.token, "--tls", "--tls-ca",
                      pki.ca_pem, "--tls-server-name", "localhost", "--inspect-addr", "off"],
                     None, None)
    assert bad.wait(20) == 1, bad.log()
    assert "localhost" in bad.stderr() and "certificate" in bad.stderr(), bad.log()


def test_server_list_in_the_file_and_bad_entries(mg, tmp_path):
    import subprocess
    cfg = tmp_path / "agent.yml"
    cfg.write_text("server:\n  - a.example:9000\n  - b.example\ntoken: t\n")
    r = subprocess.run([mg.bin, "config", "check", "--client", str(cfg)],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stdout + r.stderr
    cfg.write_text("server:\n  - a.example:9000\n  - \"[::1\"\ntoken: t\n")
    r = subprocess.run([mg.bin, "config", "check", "--client", str(cfg)],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 1 and "server[1]" in r.stdout + r.stderr, r.stdout + r.stderr
    r = subprocess.run([mg.bin, "tcp", "22", "--server", "a.example:9000,b.example:x",
                        "--token", "t"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 2 and "\"b.example:x\"" in r.stderr, r.stderr


def test_planned_restart_moves_the_agent_first(mg, tmp_path):
    """Make before break: two servers on 127.0.0.1 and 127.0.0.2 with the
    same tunnel port behind haproxy (`balance first`, redispatch on a
    refused connection). s1 stops with SIGTERM: it says Goodbye (code 8)
    and keeps taking visitors while the agent registers on s2; then the
    agent unregisters on s1 (its port closes: haproxy goes to s2) and
    leaves once its streams ended. A loop of 200 short connections
    through haproxy sees no error, and s1 exits on its own."""
    import shutil
    import signal
    import socket
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    echo = mg.echo_service()
    base = pick_port_range(20)
    port = base + 7
    s1 = mg.server(start_port=base, n_ports=20)
    s2 = mg.server(start_port=base, n_ports=20, extra=["--bind-addr", "127.0.0.2"])
    c = mg._client([mg.bin, "tcp", "%s:%d" % (HOST, echo.port), "--server", _servers(s1, s2),
                    "--token", mg.token, "--remote-port", str(port), "--inspect-addr", "off"],
                   None, None)
    assert _forward_port(c, 1) == port
    front = pick_free_port()
    cfg = tmp_path / "front.cfg"
    cfg.write_text(f"""
defaults
    mode tcp
    timeout connect 2s
    timeout client 20s
    timeout server 20s
    retries 3
    option redispatch 1
frontend fe
    bind 127.0.0.1:{front}
    default_backend be
backend be
    balance first
    server s1 127.0.0.1:{port}
    server s2 127.0.0.2:{port}
""")
    lb = mg.spawn("haproxy", [haproxy, "-db", "-f", str(cfg)])

    def up():
        try:
            return echo_roundtrip(front, b"up") == b"up"
        except OSError:
            return not lb.alive() and "dead"
    assert wait_for(up, 10) is True, lb.log()

    def one(i):
        s = socket.create_connection((HOST, front), timeout=10)
        try:
            msg = b"visitor %d" % i
            s.sendall(msg)
            got = b""
            while len(got) < len(msg):
                d = s.recv(100)
                if not d:
                    break
                got += d
            return got == msg
        except OSError:
            return False
        finally:
            s.close()

    failed = 0
    stopped_at = 50
    for i in range(200):
        if i == stopped_at:
            s1.signal(signal.SIGTERM)
        if not one(i):
            failed += 1
        time.sleep(0.02)
    assert failed == 0, "%d of 200 failed\n%s" % (failed, mg.logs())
    assert s1.wait(15) is not None, "s1 did not exit\n" + s1.log()
    err = c.stderr()
    assert "is going away" in err and "moving to %s:%d" % (HOST, s2.port) in err, err
    assert "left the server that goes away" in err, err
    assert c.alive()
    assert one(999)
