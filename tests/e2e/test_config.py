"""Config files (issue 12): the original mgrok's files run unchanged, strict
checks with line and column, secrets, precedence, `mgrok start`,
`mgrok config check|example`, the man page and `make install`."""

import os
import re
import shutil
import socket
import ssl
import subprocess
import textwrap

import pytest

from helpers import (HOST, LISTEN_RE, Client, Server, connect, echo_roundtrip,
                     make_pki, pick_free_port, pick_port_range, recv_exact,
                     udp_exchange, wait_for)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DOMAIN = "t.test"


# ---------------------------------------------------------------- helpers

def write(mg, name, text, mode=0o600):
    path = os.path.join(mg.workdir, name)
    with open(path, "w") as f:
        f.write(textwrap.dedent(text))
    os.chmod(path, mode)
    return path


def base_env(mg, extra=None):
    env = dict(os.environ)
    for k in ("MGROK_TOKEN", "MGROK_CONFIG", "MGROK_SERVER_CONFIG"):
        env.pop(k, None)
    env["XDG_STATE_HOME"] = mg.state_dir()
    # no default config file of the person running the tests
    env["XDG_CONFIG_HOME"] = os.path.join(mg.workdir, "no-xdg-config")
    env["MGROK_SERVER_CONFIG"] = os.path.join(mg.workdir, "no-server.yml")
    if extra:
        env.update(extra)
    return env


def run(mg, args, env=None, timeout=20):
    r = subprocess.run([mg.bin] + list(args), stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, env=base_env(mg, env))
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def start_server(mg, args, env=None, want=()):
    """`mgrok server ARGS`; waits for 'listening on 127.0.0.1:PORT' (and
    the lines of want)."""
    p = Server(mg._name("server"), [mg.bin, "server"] + list(args),
               base_env(mg, env), mg.workdir)
    mg.procs.append(p)

    def up():
        m = LISTEN_RE.search(p.stderr())
        if m and all(w in p.stderr() for w in want):
            return int(m.group(1))
        return not p.alive() and -1
    port = wait_for(up, 10)
    assert port and port != -1, "server did not start\n%s" % mg.logs()
    p.port = port
    return p


def start_agent(mg, args, env=None):
    p = Client(mg._name("client"), [mg.bin] + list(args), base_env(mg, env), mg.workdir)
    mg.procs.append(p)
    return p


def http_ok_handler(c, idx):
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = c.recv(4096)
        if not d:
            return
        buf += d
    path = buf.split(b" ")[1]
    body = b"local says " + path
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
              % len(body) + body)


def http_get(port, host, path="/"):
    s = connect(port, timeout=10)
    try:
        s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                   % (path, host)).encode())
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
        return data
    finally:
        s.close()


def errors_of(err):
    return [line[len("mgrok: "):] for line in err.splitlines() if line.startswith("mgrok: ")]


def assert_error(err, where, key, text):
    """An error line 'WHERE: KEY: ...TEXT...' (WHERE = file:line:col)."""
    pre = "%s: %s: " % (where, key)
    lines = [l for l in errors_of(err) if l.startswith(pre)]
    assert lines, "no error line starting with %r in:\n%s" % (pre, err)
    assert any(text in l for l in lines), "%r not in %r" % (text, lines)


# ---------------------------------------------------------------- the original mgrok's files

def test_original_mgrok_files_run_unchanged(mg):
    """A server file and a client file in the original mgrok's format (one
    TCP and one UDP proxy): they run as they are and the tunnels pass data."""
    base = pick_port_range(20)
    server_yml = write(mg, "server.yml", """\
        bind_addr: "127.0.0.1"
        bind_port: 0
        auth_token: "original-secret"
        port_range_start: %d
        port_range_end: %d
        enable_tls: false
        tls_cert_file: ""
        tls_key_file: ""
        """ % (base, base + 19))
    srv = start_server(mg, ["--config", server_yml])
    echo = mg.echo_service()
    udp = mg.udp_service("echo")
    client_yml = write(mg, "client.yml", """\
        server: "127.0.0.1:%d"
        token: "original-secret"
        proxies:
          ssh:
            type: tcp
            local_port: %d
            remote_port: %d
          dns:
            type: udp
            local_ip: 127.0.0.1
            local_port: %d
            remote_port: %d
        """ % (srv.port, echo.port, base + 3, udp.port, base + 4))
    rc, out, err = run(mg, ["config", "check", server_yml])
    assert rc == 0 and "server file" in out, (rc, out, err)
    rc, out, err = run(mg, ["config", "check", client_yml])
    assert rc == 0 and "client file" in out, (rc, out, err)
    # one identity for both runs: the second gets the leased ports back
    state = {"XDG_STATE_HOME": mg.state_dir("agent")}
    for cmd in (["start"], ["client"]):
        c = start_agent(mg, cmd + ["--config", client_yml], env=state)
        fw = mg.wait_forward(c, count=2)
        assert sorted((f[0], f[2]) for f in fw) == [("tcp", base + 3), ("udp", base + 4)], fw
        assert echo_roundtrip(base + 3, b"through the original file") == b"through the original file"
        s = mg.udp_sock()
        got = None
        for _ in range(10):
            got = udp_exchange(s, base + 4, b"dgram", timeout=1.0)
            if got:
                break
        assert got == b"dgram", mg.logs()
        c.stop()
    assert "proxy \"ssh\" (tcp)" in srv.stderr() or "ssh" in srv.stderr(), srv.stderr()


def test_bind_addr_is_also_the_public_host(mg):
    """bind_addr (the original's) binds the public ports: a TCP tunnel is
    reachable on it."""
    base = pick_port_range(5)
    yml = write(mg, "s.yml", """\
        version: 1
        bind_addr: 127.0.0.1
        bind_port: 0
        tokens: [a-token]
        start_port: %d
        end_port: %d
        """ % (base, base + 4))
    srv = start_server(mg, ["--config", yml])
    echo = mg.echo_service()
    c = mg.tcp_client(echo.port, srv, token="a-token")
    _, _, port, _ = mg.wait_forward(c)[0]
    assert base <= port <= base + 4
    assert echo_roundtrip(port, b"x" * 1000) == b"x" * 1000


# ---------------------------------------------------------------- strict checks

def test_every_error_class_with_line_and_column(mg):
    missing = os.path.join(mg.workdir, "nope", "ca.pem")
    yml = write(mg, "bad.yml", """\
        version: 1
        server: localhost:9000
        tokn: abc
        busy_poll: 5000000
        tls: maybe
        tunnels:
          web:
            type: http
            local: 3000
            subdomian: shop
          ssh:
            type: tcp
            local: 22
            remote_port: 10022
          ssh2:
            type: tcp
            local: 23
            remote_port: 10022
          ssh:
            type: tcp
            local: 24
          big:
            local: 25
            remote_port: 70000
          shape:
            local: [1, 2]
        tls_ca: %s
        log_level: {a: b}
        """ % missing)
    rc, out, err = run(mg, ["config", "check", yml])
    assert rc == 1, (rc, out, err)
    # unknown key, with the near miss
    assert_error(err, "%s:3:1" % yml, "tokn", "unknown key (did you mean token?)")
    assert_error(err, "%s:10:5" % yml, "tunnels.web.subdomian",
                 "unknown key (did you mean subdomain?)")
    # out of range
    assert_error(err, "%s:4:12" % yml, "busy_poll", "expected a number from 0 to 1000000")
    assert_error(err, "%s:24:18" % yml, "tunnels.big.remote_port", "port must be 1-65535")
    # wrong type
    assert_error(err, "%s:5:6" % yml, "tls", "expected true or false")
    assert_error(err, "%s:26:12" % yml, "tunnels.shape.local", "expected a single value, not a list")
    assert_error(err, "%s:28:12" % yml, "log_level", "expected a single value, not a mapping")
    # duplicate tunnel name, one remote port twice
    assert_error(err, "%s:19:3" % yml, "tunnels.ssh", "duplicate tunnel name (first at line 11)")
    assert_error(err, "%s:18:18" % yml, "tunnels.ssh2.remote_port",
                 "remote port 10022 is also tunnels.ssh's")
    # a missing file named by a key
    assert_error(err, "%s:27:9" % yml, "tls_ca", "No such file or directory")
    # (and the tunnel without a local service is one more)
    assert_error(err, "%s:25:3" % yml, "tunnels.shape", "needs local")
    assert "mgrok: %s: 11 errors" % yml in err, err


def test_server_file_errors(mg):
    yml = write(mg, "server.yml", """\
        version: 1
        auth_tokn: x
        port_range_start: 20000
        port_range_end: 100
        tls_cert_file: ~/definitely-not-here.pem
        tokens:
          - name: alice
            secret: a
          - name: alice
            secret: b
          - name: carol
        """)
    rc, out, err = run(mg, ["config", "check", "--server", yml], env={"HOME": mg.workdir})
    assert rc == 1, (rc, out, err)
    assert_error(err, "%s:2:1" % yml, "auth_tokn", "did you mean auth_token?")
    assert_error(err, "%s:4:17" % yml, "port_range_end", "must not be below")
    # ~ is expanded, and the error names the expanded path
    assert_error(err, "%s:5:16" % yml, "tls_cert_file",
                 "%s/definitely-not-here.pem: No such file" % mg.workdir)
    assert_error(err, "%s:10:13" % yml, "tokens[1].secret", "two tokens have this name")
    assert_error(err, "%s:11:5" % yml, "tokens[2]", "a token needs a secret")
    # the server refuses to start with it, naming the same problems
    rc, out, err2 = run(mg, ["server", "--config", yml, "--addr", "127.0.0.1:0"],
                        env={"HOME": mg.workdir})
    assert rc == 2 and "auth_tokn" in err2 and "listening" not in err2, err2


def test_syntax_error_and_version(mg):
    yml = write(mg, "broken.yml", "server: [unclosed\ntoken: x\n")
    rc, out, err = run(mg, ["config", "check", yml])
    assert rc == 1 and re.search(r"broken\.yml:\d+:\d+: ", err), err
    yml = write(mg, "v2.yml", "version: 2\nserver: h:1\n")
    rc, out, err = run(mg, ["config", "check", yml])
    assert rc == 1
    assert_error(err, "%s:1:10" % yml, "version", "this mgrok reads version 1")


def test_a_flag_overrides_the_file_and_a_list_flag_replaces_it(mg):
    srv = mg.server(token=["right-token"])
    echo = mg.echo_service()
    yml = write(mg, "c.yml", """\
        server: 127.0.0.1:%d
        token: wrong-token
        log_level: error
        """ % srv.port)
    c = start_agent(mg, ["tcp", "127.0.0.1:%d" % echo.port, "--config", yml,
                         "--token", "right-token", "--log-level", "debug"])
    _, _, port, _ = mg.wait_forward(c)[0]
    assert echo_roundtrip(port, b"flag wins") == b"flag wins"
    assert " DEBUG " in c.stderr() or "DEBUG" in c.stderr(), c.stderr()[-2000:]
    # server: the file's tokens are replaced by --token, not added to
    syml = write(mg, "s.yml", "tokens: [file-token]\nbind_addr: 127.0.0.1\n")
    srv2 = start_server(mg, ["--config", syml, "--addr", "127.0.0.1:0", "--token", "flag-token"])
    c2 = mg.tcp_client(echo.port, srv2, token="file-token", extra=["--no-reconnect"])
    assert c2.wait(15) not in (None, 0), mg.logs()
    c3 = mg.tcp_client(echo.port, srv2, token="flag-token")
    mg.wait_forward(c3)


# ---------------------------------------------------------------- secrets

def test_env_and_file_secrets(mg):
    alice = write(mg, "alice.token", "alice-from-file\n", mode=0o644)
    bob = write(mg, "bob.token", "bob-from-file\n", mode=0o600)
    syml = write(mg, "s.yml", """\
        bind_addr: 127.0.0.1
        addr: 127.0.0.1:0
        tokens:
          - name: alice
            secret: file:%s
          - name: carol
            secret: ${CAROL_TOKEN}
          - bob-unnamed
        """ % alice)
    srv = start_server(mg, ["--config", syml], env={"CAROL_TOKEN": "carol-from-env"})
    # a secret file others can read: a warning naming it
    assert re.search(r"mgrok: warning: %s:5:\d+: tokens\[0\]\.secret: %s holds a secret "
                     r"and others can read it" % (re.escape(syml), re.escape(alice)),
                     srv.stderr()), srv.stderr()
    assert "bob.token" not in srv.stderr()
    echo = mg.echo_service()
    for i, (form, env) in enumerate([("file:%s" % alice, None),
                                     ("${MY_TOKEN}", {"MY_TOKEN": "carol-from-env"}),
                                     ("bob-unnamed", None)]):
        cyml = write(mg, "c%d.yml" % i, 'server: 127.0.0.1:%d\ntoken: "%s"\n' % (srv.port, form))
        c = start_agent(mg, ["tcp", "127.0.0.1:%d" % echo.port, "--config", cyml], env=env)
        _, _, port, _ = mg.wait_forward(c)[0]
        assert echo_roundtrip(port, b"secret %d" % i) == b"secret %d" % i
    # basic auth: USER:file:PATH
    write(mg, "pw", "hunter2\n")
    cyml = write(mg, "bad.yml", """\
        token: ${NOT_SET_ANYWHERE}
        tunnels:
          web:
            type: http
            local: 3000
            basic_auth: admin:file:%s
          web2:
            type: http
            local: 3001
            basic_auth: admin:file:%s
        """ % (bob, os.path.join(mg.workdir, "nope")))
    rc, out, err = run(mg, ["config", "check", cyml])
    assert rc == 1
    assert_error(err, "%s:1:8" % cyml, "token", "${NOT_SET_ANYWHERE} is not set")
    assert_error(err, "%s:10:17" % cyml, "tunnels.web2.basic_auth", "No such file")
    assert "hunter2" not in err and "bob-from-file" not in err, err


# ---------------------------------------------------------------- mgrok start

def _tls_origin(mg):
    origin = make_pki(mg, "pki-origin", "secure.%s" % DOMAIN)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(origin.server_pem, origin.server_key)

    def handler(c, idx):
        t = ctx.wrap_socket(c, server_side=True)
        d = t.recv(100)
        t.sendall(b"tls origin got " + d)
        t.close()
    return origin, mg.service(handler)


def _full_server(mg):
    http_port, https_port = pick_free_port(), pick_free_port()
    base = pick_port_range(20)
    pki = make_pki(mg, "pki-server", "*.%s,%s" % (DOMAIN, DOMAIN))
    syml = write(mg, "server.yml", """\
        version: 1
        addr: 127.0.0.1:0
        bind_addr: 127.0.0.1
        start_port: %d
        end_port: %d
        lease_grace: 0
        tokens:
          - name: alice
            secret: start-token
        domain: %s
        http_addr: 127.0.0.1:%d
        https_addr: 127.0.0.1:%d
        https_cert: %s
        https_key: %s
        """ % (base, base + 19, DOMAIN, http_port, https_port, pki.server_pem,
               pki.server_key))
    srv = start_server(mg, ["--config", syml],
                       want=["http listening on port %d" % http_port,
                             "https listening on port %d" % https_port])
    return srv, base, http_port, https_port


def _agent_file(mg, name, srv, echo, udp, web, tls_port, base):
    return write(mg, name, """\
        version: 1
        server: 127.0.0.1:%d
        token: start-token
        tunnels:
          web:
            type: http
            local: http://127.0.0.1:%d
            subdomain: web
          db:
            type: tcp
            local: 127.0.0.1:%d
            remote_port: %d
          dns:
            type: udp
            local: 127.0.0.1:%d
            remote_port: %d
          secure:
            type: tls
            local: 127.0.0.1:%d
            hostname: secure.%s
        """ % (srv.port, web.port, echo.port, base + 5, udp.port, base + 6, tls_port, DOMAIN))


def test_start_runs_every_tunnel_type_and_named_ones(mg):
    srv, base, http_port, https_port = _full_server(mg)
    echo = mg.echo_service()
    udp = mg.udp_service("echo")
    web = mg.service(http_ok_handler)
    origin, tls_svc = _tls_origin(mg)
    yml = _agent_file(mg, "agent.yml", srv, echo, udp, web, tls_svc.port, base)
    rc, out, err = run(mg, ["config", "check", yml])
    assert rc == 0, err
    c = start_agent(mg, ["start", "--config", yml])
    assert wait_for(lambda: c.stdout().count("Forwarding") >= 5 or not c.alive(), 15), mg.logs()
    assert c.alive(), mg.logs()
    # http
    resp = http_get(http_port, "web.%s" % DOMAIN, "/hello")
    assert resp.startswith(b"HTTP/1.1 200") and resp.endswith(b"local says /hello"), resp
    # tcp
    assert echo_roundtrip(base + 5, b"tcp via start") == b"tcp via start"
    # udp
    s = mg.udp_sock()
    got = None
    for _ in range(10):
        got = udp_exchange(s, base + 6, b"udp via start", timeout=1.0)
        if got:
            break
    assert got == b"udp via start", mg.logs()
    # tls, routed by SNI and never decrypted
    ctx = ssl.create_default_context(cafile=origin.ca_pem)
    t = ctx.wrap_socket(connect(https_port, timeout=10), server_hostname="secure.%s" % DOMAIN)
    try:
        t.sendall(b"ping")
        assert recv_exact(t, len(b"tls origin got ping")) == b"tls origin got ping"
    finally:
        t.close()
    # one session carries all four
    assert len(re.findall(r"authenticated", srv.stderr())) == 1, srv.stderr()
    c.stop()

    # `start NAME`: only those; a second agent (another file) stays up too
    c2 = start_agent(mg, ["start", "db", "--config", yml])
    fw = mg.wait_forward(c2)
    yml2 = write(mg, "agent2.yml", open(yml).read())
    c3 = start_agent(mg, ["start", "dns", "--config", yml2])
    fw3 = mg.wait_forward(c3)
    assert [(f[0], f[2]) for f in fw] == [("tcp", base + 5)], fw
    assert [(f[0], f[2]) for f in fw3] == [("udp", base + 6)], fw3
    assert "Forwarding http" not in c2.stdout()
    assert echo_roundtrip(base + 5, b"only db") == b"only db"
    assert wait_for(lambda: not c2.alive() or not c3.alive(), 2) is None, mg.logs()
    assert c2.alive() and c3.alive(), mg.logs()

    # an unknown name names the known ones
    rc, out, err = run(mg, ["start", "db", "nosuch", "--config", yml])
    assert rc == 2, err
    assert 'no tunnel "nosuch" in %s (it has: web, db, dns, secure)' % yml in err, err


def test_start_needs_a_file_and_tunnel_flags_go_in_it(mg):
    rc, out, err = run(mg, ["start", "--token", "t"])
    assert rc == 2 and "start: no config file: give --config FILE" in err, err
    yml = write(mg, "a.yml", "token: t\ntunnels:\n  x:\n    local: 22\n")
    rc, out, err = run(mg, ["start", "--config", yml, "--subdomain", "s"])
    assert rc == 2 and "--subdomain: mgrok start takes its tunnels from the config file" in err, err


def test_default_config_locations(mg):
    """$XDG_CONFIG_HOME/mgrok/mgrok.yml for the agent, MGROK_SERVER_CONFIG
    (default /etc/mgrok/server.yml) for the server, when --config is not
    given."""
    syml = write(mg, "srv.yml", "addr: 127.0.0.1:0\nbind_addr: 127.0.0.1\nauth_token: dflt\n")
    srv = start_server(mg, [], env={"MGROK_SERVER_CONFIG": syml})
    echo = mg.echo_service()
    xdg = os.path.join(mg.workdir, "xdg")
    os.makedirs(os.path.join(xdg, "mgrok"))
    with open(os.path.join(xdg, "mgrok", "mgrok.yml"), "w") as f:
        f.write("server: 127.0.0.1:%d\ntoken: dflt\ntunnels:\n  e:\n    local: 127.0.0.1:%d\n"
                % (srv.port, echo.port))
    c = start_agent(mg, ["start"], env={"XDG_CONFIG_HOME": xdg})
    _, _, port, _ = mg.wait_forward(c)[0]
    assert echo_roundtrip(port, b"default file") == b"default file"
    # a plain agent takes the settings (server, token) but not the tunnels
    c2 = start_agent(mg, ["tcp", "127.0.0.1:%d" % echo.port], env={"XDG_CONFIG_HOME": xdg})
    fw = mg.wait_forward(c2)
    assert len(fw) == 1 and fw[0][3] == ("127.0.0.1", echo.port), fw


# ---------------------------------------------------------------- config check, example

@pytest.mark.parametrize("side", ["client", "server"])
def test_config_example_passes_check(mg, side):
    rc, out, err = run(mg, ["config", "example", side])
    assert rc == 0 and "version: 1" in out, (rc, err)
    path = write(mg, "example-%s.yml" % side, out)
    rc, o2, err = run(mg, ["config", "check", path])
    assert rc == 0 and ("%s file" % side) in o2, (o2, err)
    # and from stdin ("-")
    r = subprocess.run([mg.bin, "config", "check", "-"], input=out.encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20,
                       env=base_env(mg))
    assert r.returncode == 0 and b"-: ok (%s file)" % side.encode() in r.stdout, r
    # every flag of the side's --help is a key of the example
    cmd = "server" if side == "server" else "start"
    rc, help_out, _ = run(mg, [cmd, "--help"])
    flags = set(re.findall(r"^  --([a-z-]+)", help_out, re.M)) - {"config", "help"}
    assert flags
    for fl in flags:
        assert "(--%s)" % fl in out, "--%s has no key in the %s example" % (fl, side)


def test_config_check_usage(mg):
    rc, out, err = run(mg, ["config", "check"])
    assert rc == 2 and "usage: mgrok config" in err
    rc, out, err = run(mg, ["config", "check", os.path.join(mg.workdir, "absent.yml")])
    assert rc == 1 and "absent.yml: No such file or directory" in err, err


# ---------------------------------------------------------------- man page, install

def test_man_page_and_make_install(mg, tmp_path):
    rc, man_src, err = run(mg, ["man"])
    assert rc == 0 and man_src.startswith(".TH MGROK 1"), err
    bindir = os.path.dirname(mg.bin)
    build = os.path.relpath(bindir, ROOT)
    make = shutil.which("make")
    if make is None or build.startswith(".."):
        pytest.skip("make, or a binary outside the source tree")
    dest = str(tmp_path / "dest")
    # -o: never rebuild the binary under test, whatever its timestamps
    r = subprocess.run([make, "-C", ROOT, "-s", "install", "DESTDIR=" + dest, "PREFIX=/usr",
                        "BUILD=" + build, "-o", os.path.join(build, "mgrok")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    assert r.returncode == 0, r.stdout.decode(errors="replace")
    exe = os.path.join(dest, "usr", "bin", "mgrok")
    page = os.path.join(dest, "usr", "share", "man", "man1", "mgrok.1")
    assert os.access(exe, os.X_OK) and os.path.isfile(page)
    env = dict(os.environ, MANWIDTH="100", MAN_KEEP_FORMATTING="0")
    if shutil.which("man"):
        r = subprocess.run(["man", "-l", page], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60, env=env)
    elif shutil.which("groff"):
        r = subprocess.run(["groff", "-man", "-Tutf8", page], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
    else:
        pytest.skip("neither man nor groff")
    text = re.sub(r".\x08", "", r.stdout.decode(errors="replace"))
    assert r.returncode == 0, r.stderr
    for want in ("SERVER OPTIONS", "CLIENT OPTIONS", "CONFIGURATION FILE", "--start-port",
                 "port_range_start", "--basic-auth", "tunnels.NAME.basic_auth", "MGROK_CONFIG"):
        assert want in text, "%r not in the rendered man page" % want
    # every flag of every --help is in the page
    for cmd in ("server", "tcp", "udp", "http", "tls", "client", "start"):
        _, help_out, _ = run(mg, [cmd, "--help"])
        for fl in re.findall(r"^  (--[a-z-]+)", help_out, re.M):
            assert fl in text, "%s (mgrok %s) is not in the man page" % (fl, cmd)
