"""TLS tunnels (docs/tls.md): `mgrok certs`, TLS and mTLS bulk transfer,
certificate-only (MTLS) authentication, pins, name and CA mismatches, plain
clients against a TLS server, and SIGHUP certificate reloads."""

import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from helpers import (HOST, connect, echo_roundtrip, make_pki, pattern_chunks, recv_exact,
                     wait_for)

# ---------------------------------------------------------------- helpers

def _openssl():
    o = shutil.which("openssl")
    if not o:
        pytest.skip("the openssl command is not installed")
    return o


def _run(argv, timeout=30):
    return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout)


def _tls_server(mg, pki, client_ca=False, auth=None, cert=None, key=None, extra=()):
    argv = ["--tls", "--tls-cert", cert or pki.server_pem,
            "--tls-key", key or pki.server_key]
    if client_ca:
        argv += ["--tls-client-ca", pki.ca_pem]
    if auth:
        argv += ["--tls-client-auth", auth]
    return mg.server(extra=argv + list(extra))


def _client(mg, local_port, server, tls=(), token=True, extra=()):
    """`mgrok tcp` with TLS options; token=False leaves out --token (and
    MGROK_TOKEN) so that only a client certificate can authenticate."""
    if token:
        return mg.tcp_client(local_port, server, extra=list(tls) + list(extra))
    argv = [mg.bin, "tcp", "%s:%d" % (HOST, local_port),
            "--server", "%s:%d" % (HOST, server.port)] + list(tls) + list(extra)
    return mg._client(argv, None, None)


def _ca_opts(pki, mtls=False):
    o = ["--tls-ca", pki.ca_pem]
    if mtls:
        o += ["--tls-cert", pki.client_pem, "--tls-key", pki.client_key]
    return o


def _port_of(mg, client, timeout=10.0):
    return mg.wait_forward(client, timeout=timeout)[0][2]


def _expect_exit_fail(mg, client, what, timeout=30.0):
    """Wait (bounded) for the client to exit non-zero; return (rc, stderr)."""
    rc = client.wait(timeout)
    assert rc is not None, "%s: client still running after %.0fs\n%s" % (
        what, timeout, mg.logs())
    assert rc != 0, "%s: client exited 0\n%s" % (what, mg.logs())
    assert client.forwards() == [], "%s: a forwarding line was printed\n%s" % (
        what, mg.logs())
    return rc, client.stderr()


def _tls_error_lines(text):
    return [l for l in text.splitlines() if l.startswith("mgrok: TLS with ")]


def _bulk_each_way(mg, pki, server_kw, client_tls, total=64 << 20, limit=120):
    # limit bounds a stuck transfer; it is not a speed target
    """server + hashing service + client; total bytes up and down at once on
    one public connection, sha256 compared both ways."""
    res = {}

    def service(c, idx):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.settimeout(60)

        def sink():
            h = hashlib.sha256()
            n = 0
            buf = bytearray(1 << 20)
            while True:
                k = c.recv_into(buf)
                if not k:
                    break
                h.update(memoryview(buf)[:k])
                n += k
            res["svc_rx"] = (n, h.hexdigest())

        t = threading.Thread(target=sink, daemon=True)
        t.start()
        h = hashlib.sha256()
        for chunk in pattern_chunks(total, seed=4):
            h.update(chunk)
            c.sendall(chunk)
        res["svc_tx"] = (total, h.hexdigest())
        c.shutdown(socket.SHUT_WR)
        t.join(limit)

    svc = mg.service(service)
    server = _tls_server(mg, pki, **server_kw)
    client = _client(mg, svc.port, server, tls=client_tls)
    port = _port_of(mg, client)
    s = mg.track(connect(port, timeout=30))
    s.settimeout(30)
    errors = []

    def upload():
        try:
            h = hashlib.sha256()
            for chunk in pattern_chunks(total, seed=3):
                h.update(chunk)
                s.sendall(chunk)
            res["cli_tx"] = (total, h.hexdigest())
            s.shutdown(socket.SHUT_WR)
        except Exception as e:
            errors.append("upload: %r" % e)

    t0 = time.monotonic()
    up = threading.Thread(target=upload, daemon=True)
    up.start()
    h = hashlib.sha256()
    n = 0
    buf = bytearray(1 << 20)
    deadline = t0 + limit
    try:
        while time.monotonic() < deadline:
            k = s.recv_into(buf)
            if not k:
                break
            h.update(memoryview(buf)[:k])
            n += k
    except Exception as e:
        errors.append("download: %r after %d bytes" % (e, n))
    res["cli_rx"] = (n, h.hexdigest())
    up.join(max(1, deadline - time.monotonic()))
    ok = wait_for(lambda: "svc_rx" in res, max(1, deadline - time.monotonic()))
    assert not errors, "%s\nres=%r\n%s" % (errors, res, mg.logs())
    assert ok, "service never saw EOF of the upload; res=%r\n%s" % (res, mg.logs())
    assert res["cli_tx"] == res["svc_rx"], "upload corrupted: %r\n%s" % (res, mg.logs())
    assert res["svc_tx"] == res["cli_rx"], "download corrupted: %r\n%s" % (res, mg.logs())
    assert res["cli_rx"][0] == total
    return server, client


def _wait_log(proc, pattern, timeout=5.0):
    rx = re.compile(pattern)
    return wait_for(lambda: rx.search(proc.stderr()), timeout)


# ---------------------------------------------------------------- 1. mgrok certs

def test_certs_verify_modes_and_no_overwrite(mg):
    openssl = _openssl()
    pki = make_pki(mg, "pki")
    for leaf in (pki.server_pem, pki.client_pem):
        r = _run([openssl, "verify", "-CAfile", pki.ca_pem, leaf])
        assert r.returncode == 0, "openssl verify %s: rc %d\n%s%s" % (
            leaf, r.returncode, r.stdout.decode(errors="replace"),
            r.stderr.decode(errors="replace"))
        assert b": OK" in r.stdout, r.stdout
    # the server certificate carries the --hosts as SANs, the client's CN
    r = _run([openssl, "x509", "-in", pki.server_pem, "-noout", "-text"])
    text = r.stdout.decode(errors="replace")
    assert "DNS:localhost" in text and "IP Address:127.0.0.1" in text, text
    r = _run([openssl, "x509", "-in", pki.client_pem, "-noout", "-subject"])
    assert "mgrok-client" in r.stdout.decode(errors="replace"), r.stdout
    for k in (pki.ca_key, pki.server_key, pki.client_key):
        mode = os.stat(k).st_mode & 0o777
        assert mode == 0o600, "%s has mode %o, expected 600" % (k, mode)
    assert pki.pin, "no '--tls-pin sha256:HEX' in the output:\n%s" % pki.stdout

    before = {p: open(p, "rb").read() for p in
              (pki.ca_pem, pki.ca_key, pki.server_pem, pki.server_key,
               pki.client_pem, pki.client_key)}
    r = _run([mg.bin, "certs", "--out", pki.dir, "--hosts", "localhost,127.0.0.1"])
    assert r.returncode != 0, "second `mgrok certs` into the same dir exited 0:\n%s%s" % (
        r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace"))
    after = {p: open(p, "rb").read() for p in before}
    assert after == before, "a refused `mgrok certs` changed files: %r" % [
        p for p in before if before[p] != after[p]]

    # one file present is enough to refuse, and nothing else gets written
    d2 = os.path.join(mg.workdir, "partial")
    os.makedirs(d2)
    with open(os.path.join(d2, "client.key"), "wb") as f:
        f.write(b"precious\n")
    r = _run([mg.bin, "certs", "--out", d2, "--hosts", "localhost"])
    assert r.returncode != 0, "certs overwrote an existing client.key"
    assert sorted(os.listdir(d2)) == ["client.key"], os.listdir(d2)
    assert open(os.path.join(d2, "client.key"), "rb").read() == b"precious\n"

    r = _run([mg.bin, "certs", "--out", pki.dir, "--hosts", "localhost,127.0.0.1",
              "--force"])
    assert r.returncode == 0, "--force failed: %s" % r.stderr.decode(errors="replace")
    after = {p: open(p, "rb").read() for p in before}
    assert after[pki.ca_pem] != before[pki.ca_pem], "--force did not write a new CA"
    assert after[pki.server_key] != before[pki.server_key], "--force kept server.key"
    for leaf in (pki.server_pem, pki.client_pem):
        r = _run([openssl, "verify", "-CAfile", pki.ca_pem, leaf])
        assert r.returncode == 0, "after --force: %s" % r.stdout
    for k in (pki.ca_key, pki.server_key, pki.client_key):
        assert os.stat(k).st_mode & 0o777 == 0o600, k


# ---------------------------------------------------------------- 2. bulk over TLS

def test_tls_64mib_each_way(mg):
    pki = make_pki(mg, "pki")
    server, client = _bulk_each_way(mg, pki, {}, _ca_opts(pki))
    log = server.stderr()
    # both ends name the protocol and suite they settled on
    assert re.search(r"connected \(TLSv1\.3 TLS_AES_128_GCM_SHA256\)", log), (
        "no 'connected (TLSv1.3 TLS_AES_128_GCM_SHA256)' in the server log\n" + log)
    assert re.search(r"authenticated \(", log), log
    assert re.search(r"authenticated to \S+ \(server mgrok/\S+, TLSv1\.3 TLS_AES_128_GCM_SHA256\)",
                     client.stderr()), client.stderr()


def test_mtls_with_token_64mib_each_way(mg):
    pki = make_pki(mg, "pki")
    server, client = _bulk_each_way(mg, pki, {"client_ca": True},
                                    _ca_opts(pki, mtls=True))
    log = server.stderr()
    assert re.search(r"connected \(TLS[^)]*CN=mgrok-client", log), (
        "server log does not show a TLS session with the client certificate\n" + log)


# ---------------------------------------------------------------- 3. mTLS required

def test_mtls_required_without_client_cert(mg):
    pki = make_pki(mg, "pki")
    server = _tls_server(mg, pki, client_ca=True, auth="require")
    svc = mg.echo_service()
    good = _client(mg, svc.port, server, tls=_ca_opts(pki, mtls=True))
    port = _port_of(mg, good)
    held = mg.track(connect(port))
    held.sendall(b"before")
    assert recv_exact(held, 6) == b"before"

    msgs = []
    for i in range(5):
        bad = _client(mg, svc.port, server, tls=_ca_opts(pki),
                      extra=["--no-reconnect"])
        # the good client keeps being served while the bad one fails
        msg = b"during %d " % i + os.urandom(1000)
        assert echo_roundtrip(port, msg) == msg
        rc, err = _expect_exit_fail(mg, bad, "no client certificate")
        lines = _tls_error_lines(err)
        msgs.append(lines)
        assert lines, "no 'mgrok: TLS with ...' line:\n%s" % err
    wrong = [(i, l) for i, l in enumerate(msgs)
             if not any("client certificate" in x for x in l)]
    assert not wrong, ("attempts whose error does not name the client certificate "
                       "(expected 'the server requires a client certificate "
                       "(--tls-cert/--tls-key)'): %r of %d\n%s"
                       % (wrong, len(msgs), mg.logs()))
    assert _wait_log(server, r"TLS handshake with 127\.0\.0\.1:\d+ failed: client sent no "
                     r"certificate"), server.stderr()
    assert server.alive() and good.alive(), mg.logs()
    held.sendall(b"after")
    assert recv_exact(held, 5) == b"after"
    assert echo_roundtrip(port, b"still here") == b"still here"


def test_mtls_client_cert_from_other_ca_refused(mg):
    pki = make_pki(mg, "pki")
    other = make_pki(mg, "other")
    server = _tls_server(mg, pki, client_ca=True)
    svc = mg.echo_service()
    msgs = []
    for i in range(3):
        bad = _client(mg, svc.port, server,
                      tls=["--tls-ca", pki.ca_pem, "--tls-cert", other.client_pem,
                           "--tls-key", other.client_key], extra=["--no-reconnect"])
        rc, err = _expect_exit_fail(mg, bad, "client cert from another CA")
        msgs.append(_tls_error_lines(err))
    assert _wait_log(server, r"the client's certificate is not signed by the CA in "
                     r"--tls-client-ca"), server.stderr()
    wrong = [(i, l) for i, l in enumerate(msgs)
             if not any("rejected our certificate" in x for x in l)]
    assert not wrong, ("attempts without 'the server rejected our certificate (TLS "
                       "alert unknown CA)': %r of %d\n%s" % (wrong, len(msgs), mg.logs()))
    assert server.alive(), mg.logs()


# ---------------------------------------------------------------- 4. cert-only auth

def test_client_certificate_only_auth(mg):
    pki = make_pki(mg, "pki")
    server = _tls_server(mg, pki, client_ca=True)
    svc = mg.echo_service()
    c = _client(mg, svc.port, server, tls=_ca_opts(pki, mtls=True), token=False)
    port = _port_of(mg, c)
    payload = os.urandom(200000)
    assert echo_roundtrip(port, payload) == payload
    log = server.stderr()
    assert re.search(r"authenticated \(mtls, cert:CN=mgrok-client", log), (
        "server log does not show the MTLS method\n" + log)
    assert "connected (TLS" in log, log
    # without a certificate and without a token there is nothing to log in with
    c2 = _client(mg, svc.port, server, tls=_ca_opts(pki), token=False,
                 extra=["--no-reconnect"])
    _expect_exit_fail(mg, c2, "neither token nor certificate")


# ---------------------------------------------------------------- 5. pins

def test_pin_match_and_mismatch(mg):
    openssl = _openssl()
    pki = make_pki(mg, "pki")
    other = make_pki(mg, "other")
    der = _run([openssl, "x509", "-in", pki.server_pem, "-outform", "DER"]).stdout
    assert der, "openssl x509 -outform DER produced nothing"
    want = "sha256:" + hashlib.sha256(der).hexdigest()
    assert pki.pin and pki.pin.lower() == want, (
        "mgrok certs printed pin %r, openssl computes %r" % (pki.pin, want))
    fp = _run([openssl, "x509", "-in", pki.server_pem, "-noout", "-fingerprint",
               "-sha256"]).stdout.decode().strip()
    colon_pin = "sha256:" + fp.split("=", 1)[1]

    server = _tls_server(mg, pki)
    svc = mg.echo_service()
    for pin in (pki.pin, want, colon_pin):
        # no --tls-ca: the pin alone must be enough (also for a name not in the cert)
        c = _client(mg, svc.port, server,
                    tls=["--tls-pin", pin, "--tls-server-name", "not-in-cert.example"])
        port = _port_of(mg, c)
        assert echo_roundtrip(port, b"pinned " + pin.encode()) == b"pinned " + pin.encode()
        c.stop()

    bad = _client(mg, svc.port, server, tls=["--tls-pin", other.pin],
                  extra=["--no-reconnect"])
    rc, err = _expect_exit_fail(mg, bad, "pin mismatch")
    assert rc == 1, "pin mismatch: rc %s\n%s" % (rc, err)
    lines = _tls_error_lines(err)
    assert any("does not match --tls-pin" in l for l in lines), err
    assert server.alive(), mg.logs()


# ---------------------------------------------------------------- 6. name / CA

def test_name_mismatch_and_foreign_ca(mg):
    pki = make_pki(mg, "pki")
    other = make_pki(mg, "other")
    server = _tls_server(mg, pki)
    svc = mg.echo_service()

    c = _client(mg, svc.port, server,
                tls=_ca_opts(pki) + ["--tls-server-name", "wrong.example"],
                extra=["--no-reconnect"])
    rc, err = _expect_exit_fail(mg, c, "name mismatch")
    assert rc == 1, err
    lines = _tls_error_lines(err)
    assert any("does not match the name wrong.example" in l for l in lines), err

    c = _client(mg, svc.port, server, tls=_ca_opts(other), extra=["--no-reconnect"])
    rc, err = _expect_exit_fail(mg, c, "foreign CA")
    assert rc == 1, err
    lines = _tls_error_lines(err)
    assert any("is not signed by the CA in --tls-ca" in l for l in lines), err

    # the right name given explicitly works; the server survived both
    c = _client(mg, svc.port, server,
                tls=_ca_opts(pki) + ["--tls-server-name", "localhost"])
    port = _port_of(mg, c)
    assert echo_roundtrip(port, b"by name") == b"by name"
    assert server.alive(), mg.logs()


# ---------------------------------------------------------------- 7. plain client

@pytest.mark.parametrize("how", [["--no-reconnect"], ["--reconnect-attempts", "1"]])
def test_plain_client_against_tls_server(mg, how):
    pki = make_pki(mg, "pki")
    server = _tls_server(mg, pki)
    svc = mg.echo_service()
    plain = mg.tcp_client(svc.port, server, extra=how)
    rc, err = _expect_exit_fail(mg, plain, "plain client")
    assert _wait_log(server, r"does not speak TLS"), (
        "server did not log that the client does not speak TLS\n" + server.stderr())
    assert server.alive(), mg.logs()
    c = _client(mg, svc.port, server, tls=_ca_opts(pki))
    port = _port_of(mg, c)
    assert echo_roundtrip(port, b"tls after plain") == b"tls after plain"


# ---------------------------------------------------------------- 8. SIGHUP

def test_sighup_reloads_certificate(mg):
    pki = make_pki(mg, "pki")
    pki2 = make_pki(mg, "pki2")
    live = os.path.join(mg.workdir, "live")
    os.makedirs(live)
    cert, key = os.path.join(live, "server.pem"), os.path.join(live, "server.key")
    shutil.copyfile(pki.server_pem, cert)
    shutil.copyfile(pki.server_key, key)
    os.chmod(key, 0o600)
    server = _tls_server(mg, pki, cert=cert, key=key)
    svc = mg.echo_service()

    old = _client(mg, svc.port, server, tls=_ca_opts(pki))
    old_port = _port_of(mg, old)
    held = mg.track(connect(old_port))
    held.sendall(b"pre-hup")
    assert recv_exact(held, 7) == b"pre-hup"

    shutil.copyfile(pki2.server_pem, cert)
    shutil.copyfile(pki2.server_key, key)
    server.signal(signal.SIGHUP)
    assert _wait_log(server, r"reload: certificate and key reloaded"), (
        "no reload message after SIGHUP\n" + server.stderr())

    new = _client(mg, svc.port, server, tls=_ca_opts(pki2))
    new_port = _port_of(mg, new)
    assert echo_roundtrip(new_port, b"new cert") == b"new cert"
    # the tunnel from before keeps working: the open connection and new ones
    for i in range(3):
        msg = b"held %d " % i + os.urandom(50000)
        held.sendall(msg)
        assert recv_exact(held, len(msg)) == msg
    assert echo_roundtrip(old_port, b"old tunnel, new conn") == b"old tunnel, new conn"
    assert old.alive(), mg.logs()
    # a new client trusting only the first CA is now refused
    stale = _client(mg, svc.port, server, tls=_ca_opts(pki), extra=["--no-reconnect"])
    _, err = _expect_exit_fail(mg, stale, "old CA after reload")
    assert any("not signed by the CA" in l for l in _tls_error_lines(err)), err

    # garbage: the reload fails and the current certificate (pki2) stays
    with open(cert, "wb") as f:
        f.write(b"this is not a certificate\n" + os.urandom(300))
    server.signal(signal.SIGHUP)
    assert _wait_log(server, r"reload: certificate not reloaded"), (
        "no 'not reloaded' message after SIGHUP with a garbage cert\n" + server.stderr())
    assert server.alive(), mg.logs()
    again = _client(mg, svc.port, server, tls=_ca_opts(pki2))
    p3 = _port_of(mg, again)
    assert echo_roundtrip(p3, b"kept pki2") == b"kept pki2"
    held.sendall(b"post-garbage")
    assert recv_exact(held, 12) == b"post-garbage"
    assert echo_roundtrip(new_port, b"new still") == b"new still"


# ---------------------------------------------------------------- 9. server log

def test_server_logs_tls_sessions(mg):
    pki = make_pki(mg, "pki")
    server = _tls_server(mg, pki, client_ca=True, auth="optional")
    svc = mg.echo_service()
    a = _client(mg, svc.port, server, tls=_ca_opts(pki))
    b = _client(mg, svc.port, server, tls=_ca_opts(pki, mtls=True))
    pa, pb = _port_of(mg, a), _port_of(mg, b)
    assert echo_roundtrip(pa, b"a") == b"a" and echo_roundtrip(pb, b"b") == b"b"
    log = server.stderr()
    conns = re.findall(r"session \d+ \([^)]*\): connected \((TLS[^)]*)\)", log)
    assert len(conns) >= 2, "expected two 'connected (TLS' lines:\n" + log
    assert any("CN=mgrok-client" in c for c in conns), conns
    assert any("CN=mgrok-client" not in c for c in conns), conns
