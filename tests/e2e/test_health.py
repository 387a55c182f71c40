"""Health checks run by the agent (issue 15): an http check against a
service that flips between 200 and 503, a tcp check against a service that
stops and comes back, a tls check against openssl s_server (and against a
service that speaks no TLS), a timeout, what the server is told
(HealthReport, logged; and as a raw peer sends it), the agent's /metrics,
/api/tunnels and events, reloads of a check, and `mgrok config check` on
bad health: mappings."""

import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import textwrap
import threading
import time
import urllib.request

import pytest

import smux
from helpers import HOST, make_pki, pick_free_port, wait_for

DOMAIN = "t.test"
# interval x fall, and slack for a loaded machine
INTERVAL = 0.2
FALL = 2
RISE = 2
WITHIN = INTERVAL * FALL + 3.0


class FlipService:
    """An HTTP service on 127.0.0.1 whose /healthz answers self.code; it
    records the health requests' headers."""

    def __init__(self):
        self.code = 200
        self.seen = []
        svc = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/healthz":
                    svc.seen.append(dict(self.headers))
                    code = svc.code
                else:
                    code = 200
                body = b"ok\n" if code < 400 else b"down\n"
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer((HOST, 0), H)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.t = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.t.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Listener:
    """A TCP listener on a given port (0: any) that accepts and closes;
    stop() and start() again on the same port."""

    def __init__(self, port=0, accept=True):
        self.port = port
        self.accept = accept
        self.sock = None
        self.start()

    def start(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((HOST, self.port))
        s.listen(64)
        self.port = s.getsockname()[1]
        self.sock = s
        self.stop_ev = threading.Event()
        if self.accept:
            s.settimeout(0.1)
            threading.Thread(target=self._loop, args=(s, self.stop_ev),
                             daemon=True).start()

    def _loop(self, s, ev):
        while not ev.is_set():
            try:
                c, _ = s.accept()
                c.close()
            except socket.timeout:
                continue
            except OSError:
                return

    def stop(self):
        self.stop_ev.set()
        self.sock.close()


def api(port, path):
    with urllib.request.urlopen("http://%s:%d%s" % (HOST, port, path), timeout=5) as r:
        return r.read().decode()


def health_of(iport):
    t = json.loads(api(iport, "/api/tunnels"))["tunnels"]
    assert len(t) == 1, t
    return t[0].get("health")


def gauge(iport):
    m = re.search(r'^mgrok_tunnel_health\{tunnel="[^"]*"\} (-?\d+)$',
                  api(iport, "/metrics"), re.M)
    return int(m.group(1)) if m else None


def checks(iport, result):
    m = re.search(r'^mgrok_health_checks_total\{tunnel="[^"]*",result="%s"\} (\d+)$'
                  % result, api(iport, "/metrics"), re.M)
    return int(m.group(1)) if m else 0


def count(proc, pat):
    return len(re.findall(pat, proc.stderr()))


def wait_line(mg, proc, pat, n, timeout, what):
    ok = wait_for(lambda: count(proc, pat) >= n, timeout)
    assert ok, "no %s (%r x%d) within %.1fs\n%s" % (what, pat, n, timeout, mg.logs())


def health_flags(kind, extra=()):
    return ["--health", kind, "--health-interval", "%gs" % INTERVAL,
            "--health-fall", str(FALL), "--health-rise", str(RISE)] + list(extra)


def http_server(mg):
    http_port = pick_free_port()
    p = mg.server(extra=["--domain", DOMAIN, "--http-addr", "%s:%d" % (HOST, http_port)])
    assert wait_for(lambda: ("http listening on port %d" % http_port) in p.stderr(), 10), \
        mg.logs()
    return p


def test_http_check_down_and_up(mg):
    svc = FlipService()
    mg.services.append(svc)
    srv = http_server(mg)
    iport = pick_free_port()
    c = mg.proxy_client("http", svc.port, srv, extra=[
        "--inspect-addr", "%s:%d" % (HOST, iport)] +
        health_flags("http", ["--health-path", "/healthz"]))
    up = r"tunnel \S+ health: up\n"
    down = r"tunnel \S+ health: down \(HTTP 503\)\n"
    wait_line(mg, srv, up, 1, 10, "first up report")
    assert count(c, r"tunnel \S+: health up \(2 in a row\)") == 1, c.stderr()
    h = health_of(iport)
    assert h["state"] == "up" and h["checks"] >= RISE, h
    assert gauge(iport) == 1
    # the request the service saw
    hdr = svc.seen[0]
    assert hdr.get("User-Agent") == "mgrok-health/1", hdr
    assert hdr.get("Host") == "localhost:%d" % svc.port or \
        hdr.get("Host") == "127.0.0.1:%d" % svc.port, hdr
    assert hdr.get("Connection") == "close", hdr

    # 503: down within interval x fall
    t0 = time.monotonic()
    svc.code = 503
    wait_line(mg, srv, down, 1, WITHIN, "down report")
    took = time.monotonic() - t0
    assert took <= WITHIN, took
    assert count(c, r"tunnel \S+: health down \(HTTP 503, 2 in a row\)") == 1, c.stderr()
    h = health_of(iport)
    assert h == {"state": "down", "reason": "HTTP 503", "checks": h["checks"]}, h
    assert gauge(iport) == 0
    assert checks(iport, "fail") >= FALL

    # back to 200: up after rise
    svc.code = 200
    wait_line(mg, srv, up, 2, WITHIN, "second up report")
    assert health_of(iport)["state"] == "up"
    assert gauge(iport) == 1
    assert checks(iport, "ok") >= 2 * RISE
    # one report per change, not per check
    time.sleep(4 * INTERVAL)
    assert count(srv, r"health: (up|down)") == 3, srv.stderr()
    # the agent's events
    ev = urllib.request.urlopen("http://%s:%d/api/events" % (HOST, iport), timeout=5)
    seen, deadline = [], time.monotonic() + 5
    while len(seen) < 3 and time.monotonic() < deadline:
        line = ev.readline().decode()
        if line.startswith("data:") and '"tunnel_health"' in line:
            seen.append(json.loads(line[5:]))
    ev.close()
    assert [(e["state"], e["reason"]) for e in seen] == \
        [("up", ""), ("down", "HTTP 503"), ("up", "")], seen


def test_tcp_check_refused_and_back(mg):
    lst = Listener()
    srv = mg.server()
    iport = pick_free_port()
    c = mg.tcp_client(lst.port, srv, extra=["--inspect-addr", "%s:%d" % (HOST, iport)] +
                      health_flags("tcp"))
    mg.wait_forward(c)
    wait_line(mg, srv, r"tunnel \S+ health: up\n", 1, 10, "up report")
    lst.stop()
    wait_line(mg, srv, r"tunnel \S+ health: down \(connection refused\)\n", 1, WITHIN,
              "down report")
    assert "health down (connection refused, 2 in a row)" in c.stderr()
    h = health_of(iport)
    assert h["state"] == "down" and h["reason"] == "connection refused", h
    assert gauge(iport) == 0
    lst.start()  # the same port again
    try:
        wait_line(mg, srv, r"tunnel \S+ health: up\n", 2, WITHIN, "up report")
        assert gauge(iport) == 1
    finally:
        lst.stop()
    # the server took the reports as part of the session
    assert "unexpected control message" not in srv.stderr()
    assert "malformed control message" not in srv.stderr()


def test_http_check_timeout(mg):
    # accepts (the backlog does) and never answers
    lst = Listener(accept=False)
    srv = mg.server()
    c = mg.tcp_client(lst.port, srv, extra=["--inspect-addr", "off"] + health_flags(
        "http", ["--health-timeout", "150ms"]))
    mg.wait_forward(c)
    try:
        wait_line(mg, srv, r"health: down \(timeout after 150 ms\)\n", 1,
                  WITHIN + 2 * 0.15, "timeout report")
    finally:
        lst.stop()


def test_tls_check(mg):
    openssl = shutil.which("openssl")
    if not openssl:
        pytest.skip("the openssl command is not installed")
    pki = make_pki(mg, "pki-local", "secure.test")
    oport = pick_free_port()
    so = mg.spawn("s_server", [openssl, "s_server", "-accept", "%s:%d" % (HOST, oport),
                               "-cert", pki.server_pem, "-key", pki.server_key,
                               "-www", "-quiet"])

    def listening():
        try:
            socket.create_connection((HOST, oport), timeout=1).close()
            return True
        except OSError:
            return not so.alive() and "dead"
    assert wait_for(listening, 10) is True, "openssl s_server did not start\n%s" % mg.logs()
    srv = mg.server()
    # a self-signed (here: private CA) certificate is fine: only the
    # handshake counts
    c = mg.tcp_client(oport, srv, extra=["--inspect-addr", "off"] + health_flags("tls"))
    mg.wait_forward(c)
    wait_line(mg, srv, r"tunnel \S+ health: up\n", 1, 10, "tls up report")
    so.stop()
    wait_line(mg, srv, r"tunnel \S+ health: down \(connection refused\)\n", 1, WITHIN,
              "tls down report")

    # a service that speaks no TLS
    svc = FlipService()
    mg.services.append(svc)
    c2 = mg.tcp_client(svc.port, srv, extra=["--inspect-addr", "off"] +
                       health_flags("tls"))
    mg.wait_forward(c2)
    wait_line(mg, srv, r"tunnel \S+ health: down \(TLS handshake failed: [^\n]+\)\n", 1,
              WITHIN + 2, "tls handshake failure report")


# ---------------------------------------------------------------- config

def run_check(mg, text):
    path = os.path.join(mg.workdir, "agent.yml")
    with open(path, "w") as f:
        f.write(textwrap.dedent(text))
    env = dict(os.environ)
    for k in ("MGROK_TOKEN", "MGROK_CONFIG"):
        env.pop(k, None)
    r = subprocess.run([mg.bin, "config", "check", path], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                       timeout=30)
    return r.returncode, r.stdout.decode() + r.stderr.decode(), path


def test_config_check(mg):
    rc, out, _ = run_check(mg, """\
        version: 1
        token: t
        tunnels:
          web:
            type: http
            local: 3000
            health: {type: http, path: /healthz, expect: 200-399, interval: 5s,
                     timeout: 2s, rise: 2, fall: 3}
          db:
            type: tcp
            local: 5432
            health: tcp
        """)
    assert rc == 0, out
    rc, out, path = run_check(mg, """\
        version: 1
        token: t
        tunnels:
          web:
            type: http
            local: 3000
            health:
              type: http
              pathh: /healthz
              interval: 1s
              timeout: 1s
          dns:
            type: udp
            local: 53
            health: {type: tcp}
          ssh:
            local: 22
            health: {type: ping, rise: 0, expect: 200-100}
        """)
    assert rc != 0, out
    assert ("%s:9:7: tunnels.web.health.pathh: unknown key (did you mean path?)"
            % path) in out, out
    assert ("%s:7:5: tunnels.web.health: timeout (1 s) must be shorter than interval "
            "(1 s)" % path) in out, out
    assert "tunnels.dns.health: health checks are for tcp, http and tls tunnels" in out, out
    assert "tunnels.ssh.health.type: expected tcp, http, tls or off" in out, out
    assert "tunnels.ssh.health.rise: expected a number from 1 to 100" in out, out
    assert "tunnels.ssh.health.expect: status codes are 100 to 599" in out, out


def test_flags_errors(mg):
    def run(*args):
        env = dict(os.environ)
        env.pop("MGROK_TOKEN", None)
        env["XDG_CONFIG_HOME"] = os.path.join(mg.workdir, "none")
        r = subprocess.run([mg.bin] + list(args) + ["--token", "t"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=env, timeout=30)
        return r.returncode, r.stderr.decode()
    rc, err = run("tcp", "22", "--health", "tcp", "--health-timeout", "5s")
    assert rc != 0 and "--health-timeout (5 s) must be shorter than --health-interval (5 s)" \
        in err, err
    rc, err = run("tcp", "22", "--health-path", "/x")
    assert rc != 0 and "need --health tcp|http|tls" in err, err
    rc, err = run("tcp", "22", "--health", "http", "--health-interval", "soon")
    assert rc != 0 and "--health-interval: expected a duration" in err, err


def test_reload_changes_and_removes_check(mg):
    """`mgrok start` with a file: a saved file that changes a tunnel's check
    restarts it (the tunnel itself stays registered); one that removes the
    check of a tunnel reported down reports it up."""
    lst = Listener()
    lst.stop()  # nothing listens: the check fails, the tunnel still registers
    srv = mg.server()
    path = os.path.join(mg.workdir, "agent.yml")

    def save(health):
        text = textwrap.dedent("""\
            version: 1
            server: 127.0.0.1:%d
            token: %s
            inspect_addr: "off"
            tunnels:
              svc:
                type: tcp
                local: 127.0.0.1:%d
            """ % (srv.port, mg.token, lst.port))
        if health:
            text += "    health: %s\n" % health
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.rename(tmp, path)
    save("{type: tcp, interval: 200ms, fall: 2, rise: 2}")
    a = mg._client([mg.bin, "start", "--config", path], mg.state_dir(), None)
    mg.wait_forward(a)
    wait_line(mg, srv, r"tunnel svc health: down \(connection refused\)\n", 1, 10,
              "down report")
    save("{type: tcp, interval: 300ms, fall: 3, rise: 1}")
    assert wait_for(lambda: 'tunnel "svc": health check changed' in a.stderr(), 10), \
        a.stderr()[-2000:]
    save(None)
    assert wait_for(lambda: 'tunnel "svc": health check removed' in a.stderr(), 10), \
        a.stderr()[-2000:]
    wait_line(mg, srv, r"tunnel svc health: up\n", 1, 5, "up report after removal")
    # the tunnel stayed registered throughout
    assert a.stdout().count("Forwarding tcp://") == 1, a.stdout()
    assert "unregistered" not in srv.stderr()


# ---------------------------------------------------------------- the wire

def _py_agent(mg, server, caps):
    pc = smux.PyClient(server.port, version=2)
    mg.track(pc.sock)
    pc.start()
    _, reply = pc.login_hmac(mg.token.encode(), os.urandom(16), os.urandom(16), caps=caps)
    assert reply is not None and reply[0] == smux.T_AUTHOK, (reply, mg.logs())
    got_caps = int.from_bytes(reply[1:5], "big")
    pc.send_ctrl(smux.register(0x01, 0, 9, b"py"))
    ok = pc.wait_ctrl(lambda m: m[0] in (smux.T_REGISTER_OK, smux.T_REGISTER_ERR), 5)
    assert ok is not None and ok[0] == smux.T_REGISTER_OK, (ok, mg.logs())
    return pc, got_caps


def test_wire_health_report(mg):
    """HealthReport (0x18) as a raw peer sends it: logged with the
    capability, a protocol error without it, and a malformed one closes."""
    srv = mg.server()
    pc, caps = _py_agent(mg, srv, 1 << 5)
    assert caps & (1 << 5), "AuthOK caps 0x%x lack HEALTH" % caps
    pc.send_ctrl(b"\x18\x00\x02pyHTTP 503\x1b[31m")
    wait_line(mg, srv, r"tunnel py health: down \(HTTP 503\\x1b\[31m\)\n", 1, 5,
              "escaped report")
    pc.send_ctrl(b"\x18\x01\x05ghost")
    wait_line(mg, srv, r'health report for unknown tunnel "ghost"', 1, 5, "unknown name")
    pc.send_ctrl(b"\x18\x02\x02py")  # state 2
    err = pc.wait_ctrl(lambda m: m[0] == smux.T_ERROR, 5)
    assert err is not None and b"malformed control message" in err, (err, mg.logs())

    pc2, caps = _py_agent(mg, srv, 0)
    assert not caps & (1 << 5)
    pc2.send_ctrl(b"\x18\x01\x02py")
    err = pc2.wait_ctrl(lambda m: m[0] == smux.T_ERROR, 5)
    assert err is not None and b"HealthReport without the HEALTH capability" in err, \
        (err, mg.logs())
