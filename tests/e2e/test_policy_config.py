"""Per-token policy in the server file (issue 14, first step): `tokens:`
entries with expires/allow/limits and `certs:` entries are parsed and
checked by `mgrok config check` (errors with line:col and the key path);
the server runs with them as before (not enforced yet)."""

import textwrap

from test_config import run, start_server, write
from helpers import pick_port_range

GOOD = """\
    version: 1
    tokens:
      - name: alice
        secret: [old-secret, "${ALICE_TOKEN}"]
        expires: 2027-06-30
        allow:
          ports: [20000-20099, 22022]
          subdomains: ["alice-*", "demo"]
          hostnames: ["*.alice.example.org"]
          types: [tcp, udp, http, https, tls]
          cidrs: [10.0.0.0/8, "::1/128", 127.0.0.0/8]
          deny_cidrs: [10.1.0.0/16]
        limits:
          tunnels: 5
          visitors: 200
          bandwidth: {in: 10MB/s, out: 10MB/s}
          new_connections: 50/s
          http_requests: 100/s
      - name: bob
        secret: bob-secret
        expires: 2030-01-01T00:00:00+02:00
        limits: {bandwidth: 512KiB/s}
      - unnamed-secret
    certs:
      - subject: "CN=edge-1"
        allow: {ports: 30000-30010, types: tcp}
        limits: {tunnels: 2}
    """


def test_good_policy_file(mg):
    yml = write(mg, "server.yml", GOOD)
    rc, out, err = run(mg, ["config", "check", yml], env={"ALICE_TOKEN": "new"})
    assert rc == 0 and "server file" in out, (rc, out, err)
    assert err == "", err


def test_the_example_file_passes(mg):
    rc, out, err = run(mg, ["config", "example", "server"])
    assert rc == 0, err
    assert "allow:" in out and "# certs:" in out
    yml = write(mg, "example.yml", out)
    rc, out2, err = run(mg, ["config", "check", "--server", yml],
                        env={"ALICE_TOKEN": "a"})
    assert rc == 0, (out2, err)


BAD = [
    # (file text, [messages])
    ("""\
    tokens:
      - name: alice
        secret: s1
        allow:
          ports: [20000-20099, 20100-20000, 0]
    """, ['bad.yml:5:28: tokens[0].allow.ports: "20100-20000": the range ends before it starts',
          'bad.yml:5:41: tokens[0].allow.ports: "0": expected a port 1-65535 or a range LOW-HIGH']),
    ("""\
    tokens:
      - name: alice
        secret: s1
        expires: 2027-02-29
      - name: bob
        secret: s2
        expires: soon
    """, ['bad.yml:4:14: tokens[0].expires: "2027-02-29": no such date',
          'bad.yml:7:14: tokens[1].expires: "soon": expected a date YYYY-MM-DD or an RFC 3339 time']),
    ("""\
    tokens:
      - name: alice
        secret: s1
        limits:
          tunnels: 0
          bandwidth: {in: 10MB, out: 0/s}
          new_connections: 50/min
          http_request: 5/s
    """, ['bad.yml:5:16: tokens[0].limits.tunnels: "0": 0 would refuse every tunnel: leave the key out for no limit',
          'bad.yml:6:23: tokens[0].limits.bandwidth.in: "10MB": expected a rate per second such as 10MB/s',
          'bad.yml:6:34: tokens[0].limits.bandwidth.out: "0/s": 0 would stop all traffic',
          'bad.yml:7:24: tokens[0].limits.new_connections: "50/min": expected a count per second such as 50/s',
          'bad.yml:8:7: tokens[0].limits.http_request: unknown key (did you mean http_requests?)']),
    ("""\
    tokens:
      - name: alice
        secret: s1
        alow: {ports: [1]}
      - name: alice
        secret: s2
      - name: carol
        secret_sha256: 9f86d0
    """, ['bad.yml:4:5: tokens[0].alow: unknown key (did you mean allow?)',
          'bad.yml:6:13: tokens[1].secret: two tokens have this name',
          'bad.yml:8:20: tokens[2].secret_sha256: expected the SHA-256 of the secret as 64 hex digits']),
    ("""\
    tokens: [t]
    certs:
      - subject: CN=edge-1
        allow:
          subdomains: ["a.b"]
          hostnames: ["foo.*.example.org"]
          types: [tcp, ftp]
          cidrs: [10.0.0.1/8]
      - subject: CN=edge-1
      - allow: {}
    """, ['bad.yml:5:20: certs[0].allow.subdomains: "a.b": a subdomain is one label',
          'bad.yml:6:19: certs[0].allow.hostnames: "foo.*.example.org": * stands only for whole labels on the left',
          'bad.yml:7:20: certs[0].allow.types: "ftp": expected tcp, udp, http, https or tls',
          'bad.yml:8:15: certs[0].allow.cidrs: "10.0.0.1/8": the address has bits set beyond the prefix',
          'bad.yml:9:14: certs[1]: "CN=edge-1": this subject is listed twice (first at line 3)',
          'bad.yml:10:5: certs[2]: a cert entry needs its subject']),
]


def test_bad_policy_files(mg):
    for text, want in BAD:
        yml = write(mg, "bad.yml", text)
        rc, out, err = run(mg, ["config", "check", "--server", yml])
        assert rc == 1, (text, out, err)
        # messages name the file as given: make them relative
        err = err.replace(yml, "bad.yml")
        for w in want:
            assert ("mgrok: " + w) in err, (w, err)


def test_server_runs_with_policies(mg):
    """A server runs with the example's policies; alice's ports lie
    outside this server's range, so both secrets of her rotating entry
    authenticate and her tunnel is refused naming her ports (the rules
    themselves are tested in test_policy.py)."""
    base = pick_port_range(5)
    yml = write(mg, "server.yml", textwrap.dedent(GOOD) + textwrap.dedent("""\
        bind_addr: 127.0.0.1
        bind_port: 0
        start_port: %d
        end_port: %d
        """ % (base, base + 4)))
    srv = start_server(mg, ["--config", yml], env={"ALICE_TOKEN": "new-secret"})
    echo = mg.echo_service()
    for tok in ("old-secret", "new-secret"):
        c = mg.tcp_client(echo.port, srv, token=tok, extra=["--inspect-addr", "off"])
        assert c.wait(10) == 1, c.log()
        out = c.stdout() + c.stderr()
        assert "authenticated to" in out and "no free port among alice's ports" in out, out
