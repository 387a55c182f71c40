"""The stream proxy over DTLS (docs/protocol.md section 6): `mgrok connect --udp`
through a server with --stream-allow to a UDP echo service; refusals of a
destination outside the allow-list and of a client certificate from another
CA; idle flows closing (MGROK_DTLS_IDLE_S, the testing knob)."""

import os
import re

from helpers import HOST, make_pki, udp_free_port, udp_recv, wait_for

LISTEN_RE = re.compile(r"Listening on 127\.0\.0\.1:(\d+) \(udp\)")


def _server(mg, pki, allow, env_idle=None):
    old = os.environ.get("MGROK_DTLS_IDLE_S")
    if env_idle is not None:
        os.environ["MGROK_DTLS_IDLE_S"] = str(env_idle)
    try:
        argv = ["--tls", "--tls-cert", pki.server_pem, "--tls-key", pki.server_key,
                "--tls-client-ca", pki.ca_pem]
        for a in allow:
            argv += ["--stream-allow", a]
        s = mg.server(extra=argv)
    finally:
        if env_idle is not None:
            if old is None:
                os.environ.pop("MGROK_DTLS_IDLE_S", None)
            else:
                os.environ["MGROK_DTLS_IDLE_S"] = old
    wait_for(lambda: "stream proxy over DTLS" in s.stderr(), 10)
    assert "stream proxy over DTLS" in s.stderr(), mg.logs()
    return s


def _connect(mg, server, to_port, pki, client_pki=None, idle=None):
    cp = client_pki or pki
    argv = [mg.bin, "connect", "--server", "%s:%d" % (HOST, server.port),
            "--to", "%s:%d" % (HOST, to_port), "--listen", "%s:0" % HOST, "--udp",
            "--tls-ca", pki.ca_pem, "--tls-cert", cp.client_pem,
            "--tls-key", cp.client_key, "--log-level", "debug"]
    env = mg.client_env(mg.state_dir())
    if idle is not None:
        env["MGROK_DTLS_IDLE_S"] = str(idle)
    from helpers import Client
    c = Client(mg._name("connect"), argv, env, mg.workdir)
    mg.procs.append(c)
    port = wait_for(lambda: (LISTEN_RE.search(c.stdout()) or
                             (not c.alive() and "dead")), 10)
    assert port and port != "dead", "connect --udp did not listen\n" + mg.logs()
    return c, int(port.group(1))


def _payload(i):
    n = 1 + (i * 173) % 1200
    return bytes((i * 31 + k * 7) & 0xFF for k in range(n - 4)) + i.to_bytes(4, "big") \
        if n >= 4 else bytes([i & 0xFF]) * n


def test_dtls_echo_100_datagrams(mg):
    pki = make_pki(mg, "pki")
    svc = mg.udp_service(mode="echo")
    server = _server(mg, pki, ["%s:%d" % (HOST, svc.port)])
    _, lport = _connect(mg, server, svc.port, pki)
    s = mg.udp_sock()
    sizes = set()
    for i in range(100):
        p = _payload(i)
        sizes.add(len(p))
        got = None
        # one bounded retry per datagram: UDP may drop, even on loopback
        for _ in range(2):
            s.sendto(p, (HOST, lport))
            got, _ = udp_recv(s, 3.0)
            if got is not None:
                break
        assert got == p, "datagram %d (%d bytes): got %r\n%s" % (
            i, len(p), None if got is None else len(got), mg.logs())
    assert min(sizes) == 1 and max(sizes) >= 1100
    log = server.stderr()
    assert re.search(r"dtls stream \d+ \(127\.0\.0\.1:\d+, CN=mgrok-client\): "
                     r"connected to 127\.0\.0\.1:%d" % svc.port, log), log
    # one flow, one destination socket: the service saw one source
    assert len(set(svc.sources())) == 1, svc.sources()


def test_dtls_two_sources_two_connections(mg):
    pki = make_pki(mg, "pki")
    svc = mg.udp_service(mode="tag")
    server = _server(mg, pki, ["%s:%d" % (HOST, svc.port)])
    _, lport = _connect(mg, server, svc.port, pki)
    a, b = mg.udp_sock(), mg.udp_sock()
    seen = set()
    for s in (a, b, a, b):
        s.sendto(b"hello", (HOST, lport))
        got, _ = udp_recv(s, 5.0)
        assert got is not None and got.endswith(b"|hello"), mg.logs()
        seen.add(got.split(b"|")[0])
    assert len(seen) == 2, seen
    wait_for(lambda: len(re.findall(r"dtls stream \d+ .*: connected to",
                                    server.stderr())) == 2, 5)
    assert len(re.findall(r"dtls stream \d+ .*: connected to", server.stderr())) == 2


def test_dtls_destination_not_allowed(mg):
    pki = make_pki(mg, "pki")
    svc = mg.udp_service(mode="echo")
    other = mg.udp_service(mode="echo")
    server = _server(mg, pki, ["%s:%d" % (HOST, svc.port)])
    _, lport = _connect(mg, server, other.port, pki)
    s = mg.udp_sock()
    s.sendto(b"should not pass", (HOST, lport))
    got, _ = udp_recv(s, 2.0)
    assert got is None
    want = "refused: destination 127.0.0.1:%d is not allowed by --stream-allow" % other.port
    assert wait_for(lambda: want in server.stderr(), 5), mg.logs()
    assert other.received == []
    # the server is fine for others
    _, lport2 = _connect(mg, server, svc.port, pki)
    s.sendto(b"ok", (HOST, lport2))
    got, _ = udp_recv(s, 5.0)
    assert got == b"ok", mg.logs()


def test_dtls_client_cert_from_other_ca(mg):
    pki = make_pki(mg, "pki")
    rogue = make_pki(mg, "rogue")
    svc = mg.udp_service(mode="echo")
    server = _server(mg, pki, ["%s:%d" % (HOST, svc.port)])
    c, lport = _connect(mg, server, svc.port, pki, client_pki=rogue)
    s = mg.udp_sock()
    s.sendto(b"let me in", (HOST, lport))
    got, _ = udp_recv(s, 2.0)
    assert got is None
    assert wait_for(lambda: re.search(
        r"dtls stream \d+ \(127\.0\.0\.1:\d+, -\): refused: the client's "
        r"certificate is not signed by the CA in --tls-client-ca",
        server.stderr()), 5), mg.logs()
    assert wait_for(lambda: "DTLS with 127.0.0.1:%d" % server.port in c.stderr(),
                    12), mg.logs()
    assert svc.received == []


def test_dtls_idle_close(mg):
    pki = make_pki(mg, "pki")
    svc = mg.udp_service(mode="echo")
    server = _server(mg, pki, ["%s:%d" % (HOST, svc.port)], env_idle=2)
    c, lport = _connect(mg, server, svc.port, pki, idle=60)
    s = mg.udp_sock()
    s.sendto(b"x", (HOST, lport))
    got, _ = udp_recv(s, 5.0)
    assert got == b"x", mg.logs()
    # the server closes after 2 s idle and tells the client (close_notify)
    assert wait_for(lambda: "closed: idle for 2 s" in server.stderr(), 20), mg.logs()
    assert wait_for(lambda: "closed: the server closed the connection" in c.stderr(),
                    5), mg.logs()
    # the next datagram makes a new flow
    s.sendto(b"y", (HOST, lport))
    got, _ = udp_recv(s, 5.0)
    assert got == b"y", mg.logs()
