"""The agent as a user meets it (issue 11, items 15-17): its exit summary
counts an HTTP tunnel's bytes, it keeps retrying by default, and each
subcommand's --help lists only what applies to it."""

import os
import re
import shutil
import signal
import subprocess

import pytest

from helpers import HOST, pick_free_port, wait_for

HTTP_SUMMARY_RE = re.compile(
    r"mgrok:   http://\S+ -> \S+: (\d+) requests \((\d+) 2xx, \d+ 3xx, \d+ 4xx, "
    r"\d+ 5xx\), (\d+) bytes in, (\d+) bytes out")
TOTALS_RE = re.compile(r"mgrok: summary: .*?, (\d+) bytes in, (\d+) bytes out")


def _run(mg, args, timeout=10):
    env = dict(os.environ)
    env.pop("MGROK_TOKEN", None)
    env["XDG_STATE_HOME"] = mg.state_dir()
    r = subprocess.run([mg.bin] + list(args), stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, env=env)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def _upload_service(mg):
    """An HTTP/1.1 service that reads one request with a Content-Length
    body, answers with a body of its own and closes; it records the bytes
    it received and sent on the wire."""
    counts = {"rx": 0, "tx": 0, "bodies": []}

    def handler(c, idx):
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = c.recv(65536)
            if not d:
                return
            buf += d
        head, _, body = buf.partition(b"\r\n\r\n")
        m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        want = int(m.group(1)) if m else 0
        while len(body) < want:
            d = c.recv(65536)
            if not d:
                break
            body += d
        counts["rx"] += len(head) + 4 + len(body)
        counts["bodies"].append(len(body))
        out = b"got %d bytes\n" % len(body) * 100
        resp = (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                % len(out)) + out
        counts["tx"] += len(resp)  # before the peer can see it: no race
        c.sendall(resp)

    return mg.service(handler), counts


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_http_tunnel_bytes_in_summary(mg):
    hp = pick_free_port()
    server = mg.server(extra=["--domain", "t.test", "--http-addr", "%s:%d" % (HOST, hp)])
    assert wait_for(lambda: "http listening on port %d" % hp in server.stderr(), 10), mg.logs()
    svc, counts = _upload_service(mg)
    c = mg.proxy_client("http", svc.port, server, extra=["--subdomain", "up"])
    mg.wait_forward(c)
    body = os.path.join(mg.workdir, "body")
    with open(body, "wb") as f:
        f.write(os.urandom(300000))
    for _ in range(2):
        r = subprocess.run(["curl", "-sS", "--max-time", "20", "-H", "Host: up.t.test",
                            "-H", "Expect:", "--data-binary", "@" + body,
                            "http://%s:%d/upload" % (HOST, hp)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(b"got 300000 bytes\n"), r.stdout[:100]
    assert counts["bodies"] == [300000, 300000]
    c.signal(signal.SIGTERM)
    assert c.wait(10) == 0, mg.logs()
    err = c.stderr()
    m = HTTP_SUMMARY_RE.search(err)
    assert m, "no HTTP summary line:\n" + err
    requests, ok, bin_, bout = (int(x) for x in m.groups())
    assert (requests, ok) == (2, 2), err
    assert bin_ == counts["rx"], "agent counted %d bytes in, the service got %d\n%s" % (
        bin_, counts["rx"], err)
    assert bout == counts["tx"], "agent counted %d bytes out, the service sent %d\n%s" % (
        bout, counts["tx"], err)
    t = TOTALS_RE.search(err)
    assert t and (int(t.group(1)), int(t.group(2))) == (bin_, bout), err


def test_agent_retries_forever_by_default(mg):
    dead = pick_free_port()  # no server there
    svc = mg.echo_service()
    c = mg.tcp_client(svc.port, dead)
    assert wait_for(lambda: "attempt 3, no limit" in c.stderr(), 20), mg.logs()
    assert c.alive()
    c2 = mg.tcp_client(svc.port, dead, extra=["--reconnect-attempts", "2"])
    assert c2.wait(20) not in (None, 0), mg.logs()
    assert "giving up after 2 attempts" in c2.stderr(), c2.stderr()


HTTP_ONLY = ("--subdomain", "--hostname", "--basic-auth", "--host-header")


@pytest.mark.parametrize("cmd,present,absent", [
    ("udp", ["--remote-port", "--udp-idle-timeout", "--name"], list(HTTP_ONLY)),
    ("tcp", ["--remote-port", "--name"], list(HTTP_ONLY) + ["--udp-idle-timeout"]),
    ("http", list(HTTP_ONLY) + ["rewrite|preserve"], ["--remote-port", "--udp-idle-timeout"]),
    ("tls", ["--hostname", "--subdomain"], ["--basic-auth", "--host-header",
                                            "--remote-port"]),
    ("client", ["--local", "--udp-idle-timeout"], list(HTTP_ONLY) + ["--remote-port"]),
])
def test_subcommand_help_lists_what_applies(mg, cmd, present, absent):
    rc, out, err = _run(mg, [cmd, "--help"])
    assert rc == 0, err
    for o in present:
        assert o in out, "%s --help lacks %s:\n%s" % (cmd, o, out)
    for o in absent:
        assert o not in out, "%s --help lists %s:\n%s" % (cmd, o, out)
    assert "retry forever" in out, out


def test_mux_peer_and_certs_help(mg):
    rc, out, err = _run(mg, ["mux-peer", "--help"])
    assert rc == 0 and "usage: mgrok mux-peer" in out and "--connect" in out, (rc, out, err)
    rc, out, err = _run(mg, ["mux-peer", "--bogus"])
    assert rc == 2 and "--bogus: unknown option" in err, err
    rc, out, err = _run(mg, ["certs", "--help"])
    assert rc == 0 and "usage: mgrok certs" in out, (rc, out, err)
    rc, out, err = _run(mg, ["certs", "--out", os.path.join(mg.workdir, "x")])
    assert rc == 2 and "--hosts" in err, err
    rc, out, err = _run(mg, ["connect", "--help"])
    assert rc == 0 and "usage: mgrok connect" in out, (rc, out, err)
