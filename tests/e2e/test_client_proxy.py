"""The agent reaches the server through a proxy (issue 15): Debian's
tinyproxy (HTTP CONNECT, with Basic credentials) and dante-server (SOCKS5),
with the plain protocol and with TLS to the server inside the proxied
connection; --proxy and the HTTPS_PROXY / ALL_PROXY / NO_PROXY variables
as curl reads them; a wrong password is a clear error and the agent stops.
SOCKS5's user/password method (RFC 1929) is checked against a small SOCKS5
server in this file, since dante's checks the system's own accounts."""

import re
import shutil
import socket
import struct
import threading

import pytest

from helpers import HOST, Client, echo_roundtrip, make_pki, pick_free_port, wait_for

TINYPROXY = shutil.which("tinyproxy")
DANTED = shutil.which("danted") or (
    "/usr/sbin/danted" if shutil.which("/usr/sbin/danted") else None)
pytestmark = pytest.mark.skipif(TINYPROXY is None or DANTED is None,
                                reason="tinyproxy and dante-server are not installed "
                                "(scripts/deps.sh installs them)")


def _listening(port):
    try:
        socket.create_connection((HOST, port), timeout=1).close()
        return True
    except OSError:
        return False


def tinyproxy(mg, tmp_path, auth=("alice", "s3cret")):
    port = pick_free_port()
    cfg = tmp_path / ("tinyproxy-%d.conf" % port)
    cfg.write_text(f"""
Port {port}
Listen 127.0.0.1
Timeout 60
LogLevel Connect
MaxClients 20
Allow 127.0.0.1
BasicAuth {auth[0]} {auth[1]}
""")
    p = mg.spawn("tinyproxy", [TINYPROXY, "-d", "-c", str(cfg)])
    assert wait_for(lambda: _listening(port) or (not p.alive() and "dead"), 10) is True, p.log()
    p.port = port
    return p


def dante(mg, tmp_path):
    port = pick_free_port()
    cfg = tmp_path / ("danted-%d.conf" % port)
    cfg.write_text(f"""
logoutput: stderr
internal: 127.0.0.1 port = {port}
external: 127.0.0.1
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 log: connect disconnect }}
socks pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 log: connect disconnect }}
""")
    p = mg.spawn("danted", [DANTED, "-f", str(cfg), "-N", "1"])
    assert wait_for(lambda: _listening(port) or (not p.alive() and "dead"), 10) is True, p.log()
    p.port = port
    return p


def agent(mg, local_port, srv, extra=(), env=None):
    """`mgrok tcp` with its own environment additions (the proxy
    variables)."""
    argv = [mg.bin, "tcp", "%s:%d" % (HOST, local_port), "--server",
            "%s:%d" % (HOST, srv.port), "--token", mg.token, "--inspect-addr", "off"] + list(extra)
    e = mg.client_env(mg.state_dir())
    e.update(env or {})
    p = Client(mg._name("client"), argv, e, mg.workdir)
    p.state_dir = e["XDG_STATE_HOME"]
    mg.procs.append(p)
    return p


def tls_server(mg):
    pki = make_pki(mg, "pki-proxy")
    srv = mg.server(extra=["--tls", "--tls-cert", pki.server_pem, "--tls-key", pki.server_key])
    return srv, ["--tls", "--tls-ca", pki.ca_pem]


def _served(mg, c):
    port = mg.wait_forward(c)[0][2]
    assert echo_roundtrip(port, b"through the proxy") == b"through the proxy"
    return port


def test_http_connect_proxy(mg, tmp_path):
    """tinyproxy with Basic credentials: --proxy, plain; then HTTPS_PROXY
    with TLS to the server; the proxy's log shows the CONNECTs."""
    tp = tinyproxy(mg, tmp_path)
    echo = mg.echo_service()
    srv = mg.server()
    c = agent(mg, echo.port, srv, ["--proxy", "http://alice:s3cret@127.0.0.1:%d" % tp.port])
    _served(mg, c)
    assert "reaching the server through http://alice@127.0.0.1:%d (--proxy)" % tp.port in c.stderr()
    assert "s3cret" not in c.stderr() + c.stdout()
    assert wait_for(lambda: re.search(r"CONNECT 127\.0\.0\.1:%d" % srv.port, tp.stdout() + tp.stderr()),
                    5), tp.log()

    tsrv, tls = tls_server(mg)
    c2 = agent(mg, echo.port, tsrv, tls, env={"HTTPS_PROXY": "http://alice:s3cret@127.0.0.1:%d"
                                              % tp.port})
    _served(mg, c2)
    assert "(HTTPS_PROXY)" in c2.stderr(), c2.log()
    assert wait_for(lambda: re.search(r"CONNECT 127\.0\.0\.1:%d" % tsrv.port,
                                      tp.stdout() + tp.stderr()), 5), tp.log()


def test_wrong_proxy_password_is_a_clear_error(mg, tmp_path):
    tp = tinyproxy(mg, tmp_path)
    srv = mg.server()
    c = agent(mg, 9, srv, ["--proxy", "http://alice:wrong@127.0.0.1:%d" % tp.port])
    assert c.wait(20) == 1, c.log()
    out = c.stderr()
    assert re.search(r"mgrok: cannot reach server 127\.0\.0\.1:%d: proxy http://alice@127\.0\.0\.1:%d: "
                     r"it refused the user name or password \(40[17] " % (srv.port, tp.port), out), out
    assert "wrong" not in out
    # no credentials at all: it says how to give them
    c2 = agent(mg, 9, srv, ["--proxy", "127.0.0.1:%d" % tp.port])
    assert c2.wait(20) == 1, c2.log()
    assert "give them in the URL, http://USER:PASS@HOST:PORT" in c2.stderr(), c2.log()


def test_socks5_proxy(mg, tmp_path):
    """dante: socks5h:// with --proxy, plain; ALL_PROXY with socks5:// and
    TLS to the server."""
    d = dante(mg, tmp_path)
    echo = mg.echo_service()
    srv = mg.server()
    c = agent(mg, echo.port, srv, ["--proxy", "socks5h://127.0.0.1:%d" % d.port])
    _served(mg, c)
    tsrv, tls = tls_server(mg)
    c2 = agent(mg, echo.port, tsrv, tls, env={"ALL_PROXY": "socks5://127.0.0.1:%d" % d.port})
    _served(mg, c2)
    assert "(ALL_PROXY)" in c2.stderr(), c2.log()
    # dante logged both connections to the servers
    assert wait_for(lambda: all(("127.0.0.1.%d" % p) in d.stderr() for p in (srv.port, tsrv.port)),
                    5), d.log()


def test_no_proxy_and_a_dead_proxy(mg):
    """NO_PROXY lists the server: HTTPS_PROXY (a closed port) is not used.
    A proxy that does not answer: the agent says so and retries."""
    echo = mg.echo_service()
    srv = mg.server()
    dead = pick_free_port()
    c = agent(mg, echo.port, srv, env={"https_proxy": "http://127.0.0.1:%d" % dead,
                                       "NO_PROXY": "localhost, 127.0.0.0/8"})
    _served(mg, c)
    assert "reaching the server through" not in c.stderr()
    c2 = agent(mg, echo.port, srv, env={"https_proxy": "http://127.0.0.1:%d" % dead})
    assert wait_for(lambda: re.search(r"cannot reach server 127\.0\.0\.1:%d: proxy "
                                      r"http://127\.0\.0\.1:%d: cannot connect" % (srv.port, dead),
                                      c2.stderr()), 10), c2.log()
    assert c2.alive()
    bad = agent(mg, echo.port, srv, env={"ALL_PROXY": "ftp://127.0.0.1:1"})
    assert bad.wait(10) == 1 and "ALL_PROXY: unknown proxy scheme \"ftp\"" in bad.stderr(), bad.log()


class Socks5Auth:
    """A SOCKS5 server with the user/password method only (RFC 1929): what
    dante does with system accounts, with a user of its own."""

    def __init__(self, user, password):
        self.user, self.password = user.encode(), password.encode()
        self.ls = socket.socket()
        self.ls.bind((HOST, 0))
        self.ls.listen(8)
        self.ls.settimeout(0.2)
        self.port = self.ls.getsockname()[1]
        self.auths = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()

    def _loop(self):
        while not self._stop.is_set():
            try:
                c, _ = self.ls.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    @staticmethod
    def _exact(s, n):
        b = b""
        while len(b) < n:
            d = s.recv(n - len(b))
            if not d:
                raise OSError("closed")
            b += d
        return b

    def _serve(self, c):
        c.settimeout(10)
        try:
            ver, n = self._exact(c, 2)
            methods = self._exact(c, n)
            if ver != 5 or 2 not in methods:
                c.sendall(b"\x05\xff")
                return
            c.sendall(b"\x05\x02")
            _, ul = self._exact(c, 2)
            user = self._exact(c, ul)
            pl = self._exact(c, 1)[0]
            pw = self._exact(c, pl)
            self.auths.append((user, pw))
            if (user, pw) != (self.user, self.password):
                c.sendall(b"\x01\x01")
                return
            c.sendall(b"\x01\x00")
            _, cmd, _, atyp = self._exact(c, 4)
            if atyp == 1:
                host = socket.inet_ntoa(self._exact(c, 4))
            elif atyp == 3:
                host = self._exact(c, self._exact(c, 1)[0]).decode()
            else:
                raise OSError("address type")
            port = struct.unpack("!H", self._exact(c, 2))[0]
            up = socket.create_connection((host, port), timeout=5)
            c.sendall(b"\x05\x00\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack("!H", 0))
            c.settimeout(None)
            up.settimeout(None)

            def pump(a, b):
                try:
                    while True:
                        d = a.recv(65536)
                        if not d:
                            break
                        b.sendall(d)
                except OSError:
                    pass
                for s in (a, b):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
            threading.Thread(target=pump, args=(up, c), daemon=True).start()
            pump(c, up)
        except (OSError, ValueError):
            pass

    def close(self):
        self._stop.set()
        self.ls.close()


def test_socks5_user_password(mg):
    s = Socks5Auth("bob", "p@ss:word")
    mg.services.append(s)
    echo = mg.echo_service()
    srv = mg.server()
    c = agent(mg, echo.port, srv, ["--proxy", "socks5h://bob:p%%40ss%%3Aword@127.0.0.1:%d" % s.port])
    _served(mg, c)
    assert (b"bob", b"p@ss:word") in s.auths
    bad = agent(mg, echo.port, srv, ["--proxy", "socks5://bob:nope@127.0.0.1:%d" % s.port])
    assert bad.wait(20) == 1, bad.log()
    assert re.search(r"proxy socks5://bob@127\.0\.0\.1:%d: it refused the user name or password"
                     % s.port, bad.stderr()), bad.log()
    none = agent(mg, echo.port, srv, ["--proxy", "socks5://127.0.0.1:%d" % s.port])
    assert none.wait(20) == 1, none.log()
    assert "socks5://USER:PASS@HOST:PORT" in none.stderr(), none.log()
