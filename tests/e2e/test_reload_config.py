"""Hot reload from config files (issue 12): a saved file is applied live on
both sides, without a signal, whether the editor rewrote it in place,
renamed a new file over it, or a ConfigMap swapped a symlink. Unchanged
tunnels keep their address and open connections; a broken file changes
nothing; a server's port range narrows, a token is added, a certificate is
replaced."""

import os
import re
import socket
import ssl
import time

from helpers import (HOST, Client, Server, connect, make_pki, pick_port_range,
                     recv_exact, udp_exchange, wait_for)


def _save(path, text, how="rename"):
    """Write path as an editor would: a new file renamed over it."""
    if how == "rename":
        tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".swp")
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.rename(tmp, path)
    else:
        with open(path, "w") as f:
            f.write(text)


def _server_from_file(mg, path, extra=()):
    p = Server(mg._name("server"), [mg.bin, "server", "--config", path,
                                    "--log-level", "debug"] + list(extra),
               dict(os.environ), mg.workdir)
    mg.procs.append(p)
    port = wait_for(lambda: (re.search(r"listening on 127\.0\.0\.1:(\d+)", p.stderr())
                             or (not p.alive() and "dead")), 10)
    assert port and port != "dead", p.log()
    p.port = int(port.group(1))
    return p


def _agent_file(server_port, token, tunnels):
    lines = ["version: 1", "server: 127.0.0.1:%d" % server_port, "token: %s" % token,
             "tunnels:"]
    for name, t in tunnels.items():
        lines.append("  %s:" % name)
        for k, v in t.items():
            lines.append("    %s: %s" % (k, v))
    return "\n".join(lines) + "\n"


def _start(mg, path):
    return mg._client([mg.bin, "start", "--config", path], mg.state_dir(), None)


def _ports(client):
    return {f[3][1] if f[3] else None: f[2] for f in client.forwards()}


def _fw_by_name(client):
    """{name: [(scheme, port), ...]} from the agent's Forwarding lines."""
    out = {}
    for line in client.stdout().splitlines():
        m = re.match(r"Forwarding (\w+)://[^\s:]+:(\d+) -> \S+ \((.*)\)$", line)
        if m:
            out.setdefault(m.group(3), []).append((m.group(1), int(m.group(2))))
    return out


def test_agent_file_reload_adds_removes_changes(mg):
    """An http, a tcp, a udp and a tls tunnel in one file; a save that
    removes one, changes one and adds one: the others keep their address
    and a connection held open across the reload keeps flowing."""
    from test_http import _http_server, http_service, read_http_response as _rr  # noqa
    srv = _http_server(mg, https=True)
    web = http_service(mg, "web")
    e1, e2, e3 = mg.echo_service(), mg.echo_service(), mg.echo_service()
    u1, u2 = mg.udp_service("tag"), mg.udp_service("tag")
    path = os.path.join(mg.workdir, "agent.yml")
    tunnels = {
        "site": {"type": "http", "local": "127.0.0.1:%d" % web.port, "subdomain": "site"},
        "sec": {"type": "tls", "local": "127.0.0.1:%d" % e3.port, "hostname": "sec.tun.test"},
        "keep": {"type": "tcp", "local": "127.0.0.1:%d" % e1.port},
        "drop": {"type": "tcp", "local": "127.0.0.1:%d" % e2.port},
        "dns": {"type": "udp", "local": "127.0.0.1:%d" % u1.port},
    }
    _save(path, _agent_file(srv.port, mg.token, tunnels))
    a = _start(mg, path)
    assert wait_for(lambda: set(_fw_by_name(a)) >= set(tunnels), 15), mg.logs()
    fw = _fw_by_name(a)
    keep_port, drop_port = fw["keep"][0][1], fw["drop"][0][1]
    held = connect(keep_port)
    held.sendall(b"before")
    assert recv_exact(held, 6) == b"before"

    def get_site():
        s = connect(srv.http_port)
        s.sendall(b"GET /x HTTP/1.1\r\nHost: site.tun.test\r\nConnection: close\r\n\r\n")
        st, _, _, body = _rr(s)
        s.close()
        return st, body
    assert get_site() == (200, b"web GET /x\n")

    # drop one, change one (its local port), add one; saved by rename
    tunnels.pop("drop")
    tunnels["dns"] = {"type": "udp", "local": "127.0.0.1:%d" % u2.port}
    tunnels["added"] = {"type": "tcp", "local": "127.0.0.1:%d" % e3.port}
    _save(path, _agent_file(srv.port, mg.token, tunnels))
    assert wait_for(lambda: "reload: tunnels 1 added, 1 removed, 1 changed, 3 unchanged"
                    in a.stderr(), 15), a.stderr()[-3000:]
    assert wait_for(lambda: "added" in _fw_by_name(a), 10), a.stdout()
    added_port = _fw_by_name(a)["added"][0][1]
    s = connect(added_port)
    s.sendall(b"new")
    assert recv_exact(s, 3) == b"new"
    s.close()
    # the held connection of the unchanged tunnel kept flowing, the HTTP
    # tunnel still answers at its name, the unchanged ones printed nothing new
    held.sendall(b"after")
    assert recv_exact(held, 5) == b"after"
    assert get_site() == (200, b"web GET /x\n")
    fw2 = _fw_by_name(a)
    assert fw2["keep"] == fw["keep"] and fw2["site"] == fw["site"] and fw2["sec"] == fw["sec"]
    # the removed tunnel was unregistered at the server (its port free
    # again: the added tunnel may well have it now)
    assert 'proxy "drop" unregistered' in srv.proc.stderr(), srv.proc.stderr()[-2000:]

    def refused():
        try:
            t = socket.create_connection((HOST, drop_port), timeout=2)
        except OSError:
            return True
        t.close()
        return False
    if added_port != drop_port:
        assert wait_for(refused, 10), "the removed tunnel's port still accepts"
    # the changed UDP tunnel now reaches the new service
    udp_port = fw2["dns"][-1][1]
    sock = mg.udp_sock()
    r = udp_exchange(sock, udp_port, b"hi", timeout=3)
    assert r is not None and r.endswith(b"|hi") and u2.received, (r, mg.logs())
    assert srv.proc.stderr().count("authenticated (") == 1, "the session was dropped"

    # a broken file changes nothing
    _save(path, "version: 1\ntunnels: [oops\n")
    assert wait_for(lambda: "reload refused" in a.stderr(), 15), a.stderr()[-2000:]
    held.sendall(b"still")
    assert recv_exact(held, 5) == b"still"
    held.close()
    assert get_site()[0] == 200
    assert a.alive()


def test_server_file_reload_symlink_swap(mg):
    """The server's file behind a ConfigMap-style symlink: the swap adds a
    named token (it works at once) and narrows the port range (new tunnels
    obey it; open ones keep their ports)."""
    base_port = pick_port_range(40)
    d = os.path.join(mg.workdir, "cm")
    os.makedirs(os.path.join(d, "v1"))
    os.makedirs(os.path.join(d, "v2"))

    def server_yml(tokens, start, end):
        return ("version: 1\naddr: 127.0.0.1:0\nbind_addr: 127.0.0.1\n"
                "start_port: %d\nend_port: %d\ntokens:\n" % (start, end)
                + "".join("  - name: %s\n    secret: %s\n" % t for t in tokens))
    with open(os.path.join(d, "v1", "server.yml"), "w") as f:
        f.write(server_yml([("alice", "alice-secret")], base_port, base_port + 39))
    with open(os.path.join(d, "v2", "server.yml"), "w") as f:
        f.write(server_yml([("alice", "alice-secret"), ("bob", "bob-secret")],
                           base_port + 30, base_port + 39))
    os.symlink("v1", os.path.join(d, "..data"))
    path = os.path.join(d, "server.yml")
    os.symlink("..data/server.yml", path)
    server = _server_from_file(mg, path)
    svc = mg.echo_service()
    a = mg.tcp_client(svc.port, server, token="alice-secret")
    a_port = mg.wait_forward(a)[0][2]
    assert base_port <= a_port < base_port + 30
    b = mg.tcp_client(svc.port, server, token="bob-secret")
    assert b.wait(20) not in (None, 0), "bob was accepted before the swap"
    # the atomic swap
    os.symlink("v2", os.path.join(d, "..data_new"))
    os.rename(os.path.join(d, "..data_new"), os.path.join(d, "..data"))
    assert wait_for(lambda: "reload: tokens 1 added, 0 removed" in server.stderr(), 15), \
        server.stderr()[-3000:]
    assert "public ports %d-%d" % (base_port + 30, base_port + 39) in server.stderr()
    b2 = mg.tcp_client(svc.port, server, token="bob-secret")
    b_port = mg.wait_forward(b2)[0][2]
    assert base_port + 30 <= b_port <= base_port + 39, b_port
    # alice's tunnel kept its port, outside the new range
    s = connect(a_port)
    s.sendall(b"alice")
    assert recv_exact(s, 5) == b"alice"
    s.close()
    assert "authenticated (hmac, alice" in server.stderr() or "alice" in server.stderr()


def test_server_certificate_replaced_on_reload(mg):
    pki1 = make_pki(mg, "pki-one")
    pki2 = make_pki(mg, "pki-two")
    path = os.path.join(mg.workdir, "server.yml")

    def yml(pki):
        return ("version: 1\naddr: 127.0.0.1:0\nbind_addr: 127.0.0.1\nauth_token: %s\n"
                "enable_tls: true\ntls_cert_file: %s\ntls_key_file: %s\n"
                % (mg.token, pki.server_pem, pki.server_key))
    _save(path, yml(pki1))
    server = _server_from_file(mg, path)

    def peer_cert():
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with ctx.wrap_socket(connect(server.port), server_hostname="localhost") as t:
            return t.getpeercert(binary_form=True)
    first = peer_cert()
    _save(path, yml(pki2), how="inplace")
    assert wait_for(lambda: "reload applied" in server.stderr(), 15), server.stderr()[-2000:]
    second = peer_cert()
    assert first != second, "a new connection still sees the old certificate"
    with open(pki2.server_pem) as f:
        pem = f.read()
    want = ssl.PEM_cert_to_DER_cert(pem[pem.index("-----BEGIN CERTIFICATE-----"):])
    assert second == want


def test_start_agent_identity_is_its_file(mg):
    """`mgrok start --config F` is one agent per file (and names): killed,
    its file edited, restarted, it gets its ports back; an agent started
    from another file runs beside it."""
    server = mg.server()
    e1, e2 = mg.echo_service(), mg.echo_service()
    state = mg.state_dir("files")
    p1 = os.path.join(mg.workdir, "one.yml")
    p2 = os.path.join(mg.workdir, "two.yml")
    _save(p1, _agent_file(server.port, mg.token, {"web": {"type": "tcp", "local":
                                                          "127.0.0.1:%d" % e1.port}}))
    _save(p2, _agent_file(server.port, mg.token, {"db": {"type": "tcp", "local":
                                                         "127.0.0.1:%d" % e2.port}}))
    a = mg._client([mg.bin, "start", "--config", p1], state, None)
    b = mg._client([mg.bin, "start", "--config", p2], state, None)
    pa = mg.wait_forward(a)[0][2]
    pb = mg.wait_forward(b)[0][2]
    time.sleep(1)
    assert a.alive() and b.alive(), mg.logs()
    a.kill9()
    # the tunnel's local port changes while the agent is down
    _save(p1, _agent_file(server.port, mg.token, {"web": {"type": "tcp", "local":
                                                          "127.0.0.1:%d" % e2.port}}))
    a2 = mg._client([mg.bin, "start", "--config", p1], state, None)
    assert mg.wait_forward(a2)[0][2] == pa, mg.logs()
    s = connect(pa)
    s.sendall(b"x")
    assert recv_exact(s, 1) == b"x"
    s.close()
    assert b.alive() and mg.wait_forward(b)[0][2] == pb


def test_server_http_listener_moves_on_reload(mg):
    from helpers import pick_free_port
    p1, p2 = pick_free_port(), pick_free_port()
    path = os.path.join(mg.workdir, "server.yml")

    def yml(port):
        return ("version: 1\naddr: 127.0.0.1:0\nbind_addr: 127.0.0.1\nauth_token: %s\n"
                "domain: tun.test\nhttp_addr: 127.0.0.1:%d\n" % (mg.token, port))
    _save(path, yml(p1))
    server = _server_from_file(mg, path)
    assert wait_for(lambda: "http listening on port %d" % p1 in server.stderr(), 10)
    _save(path, yml(p2))
    assert wait_for(lambda: "http listening on port %d" % p2 in server.stderr(), 15), \
        server.stderr()[-2000:]
    s = connect(p2)
    s.sendall(b"GET / HTTP/1.1\r\nHost: none.tun.test\r\nConnection: close\r\n\r\n")
    s.settimeout(10)
    assert s.recv(100).startswith(b"HTTP/1.1 404"), "the new HTTP port does not serve"
    s.close()
    try:
        socket.create_connection((HOST, p1), timeout=2).close()
        still = True
    except OSError:
        still = False
    assert not still, "the old HTTP port still accepts after the move"
    # a port that cannot be bound: the reload is refused, the current one stays
    blocker = socket.socket()
    blocker.bind((HOST, 0))
    blocker.listen(1)
    _save(path, yml(blocker.getsockname()[1]))
    assert wait_for(lambda: "reload refused" in server.stderr(), 15), server.stderr()[-2000:]
    s = connect(p2)
    s.sendall(b"GET / HTTP/1.1\r\nHost: none.tun.test\r\nConnection: close\r\n\r\n")
    assert s.recv(100).startswith(b"HTTP/1.1 404")
    s.close()
    blocker.close()
