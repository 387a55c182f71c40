"""The stream proxy over TLS (docs/protocol.md section 6, ALPN mgrok-stream/1):
`mgrok connect` to a local echo service through the server; refusals (a
destination outside --stream-allow, a bad CRC, no client certificate); the
section 6 test vector on the wire; and one port serving tunnel sessions and
stream-proxy connections at once."""

import hashlib
import os
import re
import socket
import ssl
import struct
import threading
import zlib

from helpers import HOST, Client, connect, make_pki, recv_exact, wait_for

LISTEN_RE = re.compile(r"Listening on 127\.0\.0\.1:(\d+) ->")


def _server(mg, pki, allow):
    argv = ["--tls-cert", pki.server_pem, "--tls-key", pki.server_key,
            "--tls-client-ca", pki.ca_pem]
    for a in allow:
        argv += ["--stream-allow", a]
    s = mg.server(extra=argv)
    wait_for(lambda: "stream proxy on" in s.stderr(), 10)
    assert "stream proxy on" in s.stderr(), mg.logs()
    return s


def _connect(mg, server, to, pki):
    argv = [mg.bin, "connect", "--server", "%s:%d" % (HOST, server.port),
            "--to", to, "--listen", "%s:0" % HOST, "--tls-ca", pki.ca_pem,
            "--tls-cert", pki.client_pem, "--tls-key", pki.client_key,
            "--log-level", "debug"]
    c = Client(mg._name("connect"), argv, mg.client_env(mg.state_dir()), mg.workdir)
    mg.procs.append(c)
    m = wait_for(lambda: LISTEN_RE.search(c.stdout()) or (not c.alive() and "dead"), 10)
    assert m and m != "dead", "mgrok connect did not listen\n" + mg.logs()
    return int(m.group(1))


def _header(host, port, crc_xor=0):
    h = bytearray(274)
    h[0:5] = b"0.1.0"
    hb, pb = host.encode(), str(port).encode()
    h[8] = len(hb)
    h[9:9 + len(hb)] = hb
    h[264] = len(pb)
    h[265:265 + len(pb)] = pb
    h[270:274] = struct.pack(">I", zlib.crc32(bytes(h[:270])) ^ crc_xor)
    return bytes(h)


def _tls(pki, port, cert=True, alpn="mgrok-stream/1"):
    ctx = ssl.create_default_context(cafile=pki.ca_pem)
    if cert:
        ctx.load_cert_chain(pki.client_pem, pki.client_key)
    if alpn:
        ctx.set_alpn_protocols([alpn])
    raw = socket.create_connection((HOST, port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def _closed_without_data(s, timeout=12.0):
    s.settimeout(timeout)
    try:
        return s.recv(16) == b""
    except (ConnectionResetError, ssl.SSLError, OSError):
        return True


def test_section6_vector():
    h = _header("127.0.0.1", 8080)
    assert h[270:274] == bytes.fromhex("27247BD5")


def test_connect_echo_both_ways(mg):
    pki = make_pki(mg, "pki")
    svc = mg.echo_service()
    server = _server(mg, pki, ["%s:%d" % (HOST, svc.port)])
    lport = _connect(mg, server, "%s:%d" % (HOST, svc.port), pki)
    data = os.urandom(8 << 20)
    s = connect(lport)
    got = bytearray()

    def reader():
        got.extend(recv_exact(s, len(data), timeout=30))

    t = threading.Thread(target=reader)
    t.start()
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    t.join(40)
    assert hashlib.sha256(bytes(got)).digest() == hashlib.sha256(data).digest(), \
        "echo differs (%d of %d bytes)\n%s" % (len(got), len(data), mg.logs())
    s.close()
    assert re.search(r"stream \d+ \(127\.0\.0\.1:\d+, CN=mgrok-client\): connected to "
                     r"127\.0\.0\.1:%d" % svc.port, server.stderr()), mg.logs()


def test_destination_not_allowed(mg):
    pki = make_pki(mg, "pki")
    svc = mg.echo_service()
    other = mg.echo_service()
    server = _server(mg, pki, ["%s:%d" % (HOST, svc.port)])
    lport = _connect(mg, server, "%s:%d" % (HOST, other.port), pki)
    s = connect(lport)
    s.sendall(b"hello")
    assert _closed_without_data(s), "a refused destination still echoed"
    assert wait_for(lambda: "not allowed by --stream-allow" in server.stderr(), 5), \
        mg.logs()
    s.close()  # as a program that sees the end does
    # the user of `mgrok connect` is told too (issue 11, item 14)
    conn = [p for p in mg.procs if p.name.endswith("connect")][0]
    want = ("the server closed the stream-proxy connection to %s:%d without a byte "
            "from it: the destination is probably not in the server's --stream-allow "
            "list" % (HOST, other.port))
    assert wait_for(lambda: want in conn.stderr(), 5), mg.logs()


def test_bad_crc_and_bad_version_refused(mg):
    pki = make_pki(mg, "pki")
    svc = mg.echo_service()
    server = _server(mg, pki, ["%s:*" % HOST])
    s = _tls(pki, server.port)
    s.sendall(_header(HOST, svc.port, crc_xor=1) + b"data")
    assert _closed_without_data(s)
    assert wait_for(lambda: "header checksum mismatch" in server.stderr(), 5), mg.logs()
    bad = bytearray(_header(HOST, svc.port))
    bad[0:5] = b"9.9.9"
    bad[270:274] = struct.pack(">I", zlib.crc32(bytes(bad[:270])))
    s = _tls(pki, server.port)
    s.sendall(bytes(bad))
    assert _closed_without_data(s)
    assert wait_for(lambda: "malformed header" in server.stderr(), 5), mg.logs()
    # a good header on a raw TLS connection works: the section 6 layout
    s = _tls(pki, server.port)
    s.sendall(_header(HOST, svc.port) + b"ping")
    assert recv_exact(s, 4, timeout=10) == b"ping"


def test_no_client_certificate_refused(mg):
    pki = make_pki(mg, "pki")
    svc = mg.echo_service()
    server = _server(mg, pki, ["%s:%d" % (HOST, svc.port)])
    try:
        s = _tls(pki, server.port, cert=False)
        s.sendall(_header(HOST, svc.port) + b"x")
        assert _closed_without_data(s)
    except (ssl.SSLError, ConnectionResetError, OSError):
        pass  # refused during the handshake: fine too
    assert wait_for(lambda: "client sent no certificate" in server.stderr() or
                    "requires a client certificate" in server.stderr(), 5), mg.logs()


def test_one_port_tunnel_and_stream_proxy(mg):
    pki = make_pki(mg, "pki")
    svc = mg.echo_service()
    server = _server(mg, pki, ["%s:%d" % (HOST, svc.port)])
    c = mg.tcp_client(svc.port, server, extra=["--tls-ca", pki.ca_pem,
                                             "--tls-cert", pki.client_pem,
                                             "--tls-key", pki.client_key])
    fw = wait_for(lambda: c.forwards(), 10)
    assert fw, "TLS tunnel did not come up\n" + mg.logs()
    lport = _connect(mg, server, "%s:%d" % (HOST, svc.port), pki)
    for i in range(5):
        a = connect(fw[0][2])
        b = connect(lport)
        a.sendall(b"tunnel%d" % i)
        b.sendall(b"stream%d" % i)
        assert recv_exact(a, 7, timeout=10) == b"tunnel%d" % i
        assert recv_exact(b, 7, timeout=10) == b"stream%d" % i
        a.close()
        b.close()
    log = server.stderr()
    assert "connected (TLS" in log and "connected to 127.0.0.1:%d" % svc.port in log, log
