"""`mgrok token hash|add|list|rotate` and tokens stored as a hash (issue 14):
the command edits the server file in place (comments and the other entries
kept byte for byte), a running server reloads it, and agents authenticate
with the new secrets: our agent over HMAC with capability 3 (the key is
SHA-256 of the token), the legacy TOKEN method, and a client of the
original protocol (no capability 3), which still gets the 16-byte
Challenge and works with secrets in clear."""

import hashlib
import hmac
import os
import re
import stat
import struct
import subprocess

import smux
from helpers import HOST, echo_roundtrip, pick_port_range, wait_for
from smux import PyClient

LISTEN_RE = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
CAP_HASHED = 1 << 3

HEAD = """\
# mgrok server — edited by `mgrok token` in the tests
addr: "127.0.0.1:0"    # the control port: any free one
bind_addr: 127.0.0.1
start_port: {base}
end_port: {end}
log_level: debug

tokens:
  # the first one, in clear
  - name: zed
    secret: zed-secret   # keep this comment
    limits: {{tunnels: 3}}
{extra}
# after the tokens
heartbeat: 10
"""


def run(mg, *args, stdin=None):
    return subprocess.run([mg.bin, *args], input=stdin, capture_output=True, text=True,
                          timeout=20)


def server_file(mg, tmp_path, extra="", mode=0o640):
    base = pick_port_range(50)
    cfg = tmp_path / "server.yml"
    cfg.write_text(HEAD.format(base=base, end=base + 49, extra=extra))
    os.chmod(cfg, mode)
    return cfg


def start_server(mg, cfg):
    p = mg.spawn("server", [mg.bin, "server", "--config", str(cfg)])
    m = wait_for(lambda: LISTEN_RE.search(p.stderr()) or (not p.alive() and "dead"), 10)
    assert m and m != "dead", p.log()
    p.port = int(m.group(1))
    return p


def reloads(srv):
    return srv.stderr().count("reload applied")


def wait_reload(srv, before):
    assert wait_for(lambda: reloads(srv) > before, 10), srv.stderr()[-3000:]


def agent_ok(mg, srv, svc, secret):
    c = mg.tcp_client(svc.port, srv, token=secret, extra=["--inspect-addr", "off"])
    port = mg.wait_forward(c)[0][2]
    assert echo_roundtrip(port, b"through " + secret.encode()) == b"through " + secret.encode()
    return c


def agent_refused(mg, srv, svc, secret):
    c = mg.tcp_client(svc.port, srv, token=secret, extra=["--inspect-addr", "off",
                                                           "--no-reconnect"])
    assert c.wait(10) == 1, c.log()
    out = c.stdout() + c.stderr()
    assert "authentication failed" in out and "(code 2)" in out, out
    return out


def add(mg, cfg, name, *extra):
    r = run(mg, "token", "add", name, "--config", str(cfg), *extra)
    assert r.returncode == 0, r
    secret = r.stdout.strip()
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{42}", secret), r.stdout
    assert "--token" in r.stderr, r.stderr
    return secret


def entry_hashes(text, name):
    """The 64-hex values of name's entry, in order."""
    i = text.index("- name: %s\n" % name)
    j = text.find("\n  - ", i + 1)
    return re.findall(r"\b[0-9a-f]{64}\b", text[i:j if j > 0 else len(text)])


# ---------------------------------------------------------------- token hash

def test_hash_matches_hashlib(mg):
    for secret in ("s3cret", "with a space", "ünïcode", "x" * 1019):
        r = run(mg, "token", "hash", stdin=secret + "\n")
        assert r.returncode == 0, r
        assert r.stdout == hashlib.sha256(secret.encode()).hexdigest() + "\n", r
    # no trailing newline, and CR LF, read the same
    assert run(mg, "token", "hash", stdin="abc").stdout.strip() == hashlib.sha256(
        b"abc").hexdigest()
    assert run(mg, "token", "hash", stdin="abc\r\n").stdout.strip() == hashlib.sha256(
        b"abc").hexdigest()
    for bad in ("", "\n", "y" * 1020 + "\n"):
        r = run(mg, "token", "hash", stdin=bad)
        assert r.returncode == 1 and "mgrok: token hash:" in r.stderr and not r.stdout, r


# ---------------------------------------------------------------- add, list

def test_add_then_agent_registers_and_list(mg, tmp_path):
    cfg = server_file(mg, tmp_path)
    before_text = cfg.read_text()
    srv = start_server(mg, cfg)
    svc = mg.echo_service()
    n = reloads(srv)
    secret = add(mg, cfg, "alice", "--expires", "2099-12-31")
    text = cfg.read_text()
    # the rest of the file is byte for byte what it was: the new entry is
    # inserted after the last one, nothing else changes
    h = hashlib.sha256(secret.encode()).hexdigest()
    new = ("  - name: alice\n    secret_sha256: %s\n    expires: 2099-12-31\n" % h)
    last = "    limits: {tunnels: 3}\n"
    at = before_text.index(last) + len(last)
    assert text == before_text[:at] + new + before_text[at:], text
    assert secret not in text
    assert stat.S_IMODE(os.stat(cfg).st_mode) == 0o640
    wait_reload(srv, n)
    assert "tokens 1 added, 0 removed" in srv.stderr()
    agent_ok(mg, srv, svc, secret)
    assert "authenticated (hmac, alice" in srv.stderr(), srv.stderr()[-2000:]
    agent_ok(mg, srv, svc, "zed-secret")

    r = run(mg, "token", "list", "--config", str(cfg))
    assert r.returncode == 0, r
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "KIND", "EXPIRES", "POLICY"], lines
    rows = {ln.split()[0]: ln for ln in lines[1:]}
    assert rows["alice"].split()[:3] == ["alice", "hashed", "2099-12-31"], rows
    assert rows["zed"].split()[:3] == ["zed", "clear", "-"], rows
    assert "tunnels 3" in rows["zed"], rows
    for s in (secret, h, "zed-secret"):
        assert s not in r.stdout + r.stderr

    # a name that exists is refused, and the file is untouched
    r = run(mg, "token", "add", "alice", "--config", str(cfg))
    assert r.returncode == 1 and "exists already" in r.stderr and not r.stdout, r
    assert re.search(r"server\.yml:\d+: a token named \"alice\"", r.stderr), r.stderr
    assert cfg.read_text() == text


def test_add_clear_and_creates_tokens(mg, tmp_path):
    """--clear stores the secret itself; a file without tokens: gets one,
    its comments kept; a file that does not load is not edited."""
    cfg = tmp_path / "s.yml"
    orig = "# just settings\naddr: \"127.0.0.1:0\"   # port\n\n# the end\n"
    cfg.write_text(orig)
    os.chmod(cfg, 0o600)
    secret = add(mg, cfg, "bob", "--clear")
    text = cfg.read_text()
    assert text == ("# just settings\naddr: \"127.0.0.1:0\"   # port\n"
                    "tokens:\n  - name: bob\n    secret: %s\n\n# the end\n" % secret), text
    assert stat.S_IMODE(os.stat(cfg).st_mode) == 0o600
    r = run(mg, "config", "check", str(cfg))
    assert r.returncode == 0, r
    r = run(mg, "token", "list", "--config", str(cfg))
    assert r.stdout.splitlines()[1].split()[:2] == ["bob", "clear"], r.stdout
    assert secret not in r.stdout

    bad = tmp_path / "bad.yml"
    bad_text = "tokens:\n  - name: x\n    secret: y\nstart_prot: 1\n"
    bad.write_text(bad_text)
    r = run(mg, "token", "add", "carol", "--config", str(bad))
    assert r.returncode == 1 and "start_prot" in r.stderr and "would not load" in r.stderr, r
    assert not r.stdout
    assert bad.read_text() == bad_text
    r = run(mg, "token", "add", "carol", "--config", str(tmp_path / "none.yml"))
    assert r.returncode == 1 and "none.yml" in r.stderr, r
    r = run(mg, "token", "add", "dan", "--expires", "soon", "--config", str(cfg))
    assert r.returncode == 2 and "--expires" in r.stderr, r


# ---------------------------------------------------------------- rotate

def test_rotate_overlap_then_finish(mg, tmp_path):
    cfg = server_file(mg, tmp_path)
    srv = start_server(mg, cfg)
    svc = mg.echo_service()
    n = reloads(srv)
    old = add(mg, cfg, "carol")
    wait_reload(srv, n)
    first = agent_ok(mg, srv, svc, old)

    n = reloads(srv)
    r = run(mg, "token", "rotate", "carol", "--config", str(cfg))
    assert r.returncode == 0, r
    new = r.stdout.strip()
    assert new and new != old and "--finish" in r.stderr, r
    text = cfg.read_text()
    assert entry_hashes(text, "carol") == [hashlib.sha256(s.encode()).hexdigest()
                                           for s in (old, new)], text
    assert "# keep this comment" in text and "# after the tokens" in text
    wait_reload(srv, n)
    # both work during the overlap
    agent_ok(mg, srv, svc, old)
    keep = agent_ok(mg, srv, svc, new)
    # twice is refused: finish first
    r = run(mg, "token", "rotate", "carol", "--config", str(cfg))
    assert r.returncode == 1 and "rotating already" in r.stderr and not r.stdout, r
    assert cfg.read_text() == text

    n = reloads(srv)
    r = run(mg, "token", "rotate", "carol", "--finish", "--config", str(cfg))
    assert r.returncode == 0 and not r.stdout, r
    text = cfg.read_text()
    assert entry_hashes(text, "carol") == [hashlib.sha256(new.encode()).hexdigest()], text
    wait_reload(srv, n)
    out = agent_refused(mg, srv, svc, old)
    assert "invalid token" in out, out
    # the session of the old secret was ended by the reload; its agent
    # cannot come back with it
    assert first.wait(15) == 1, first.log()
    assert "removed" in first.stdout() + first.stderr(), first.log()
    agent_ok(mg, srv, svc, new)
    assert keep.alive()
    r = run(mg, "token", "rotate", "carol", "--finish", "--config", str(cfg))
    assert r.returncode == 1 and "not rotating" in r.stderr, r
    r = run(mg, "token", "rotate", "nobody", "--config", str(cfg))
    assert r.returncode == 1 and "no token named \"nobody\"" in r.stderr, r


def test_rotate_clear_secret_to_hashed(mg, tmp_path):
    """An entry with a secret in clear rotates to a hashed one: the file
    holds both (secret, then secret_sha256) until --finish drops the old
    clear one; the same hashed secret keeps the token's identity."""
    cfg = server_file(mg, tmp_path)
    before = cfg.read_text()
    srv = start_server(mg, cfg)
    svc = mg.echo_service()
    n = reloads(srv)
    r = run(mg, "token", "rotate", "zed", "--config", str(cfg))
    assert r.returncode == 0, r
    new = r.stdout.strip()
    h = hashlib.sha256(new.encode()).hexdigest()
    text = cfg.read_text()
    assert text == before.replace("    limits: {tunnels: 3}\n", "    limits: {tunnels: 3}\n"
                                  "    secret_sha256: %s\n" % h), text
    lst = run(mg, "token", "list", "--config", str(cfg)).stdout
    assert "rotating (clear, hashed)" in lst, lst
    wait_reload(srv, n)
    agent_ok(mg, srv, svc, "zed-secret")
    agent_ok(mg, srv, svc, new)
    n = reloads(srv)
    r = run(mg, "token", "rotate", "zed", "--finish", "--config", str(cfg))
    assert r.returncode == 0, r
    text = cfg.read_text()
    assert text == before.replace("    secret: zed-secret   # keep this comment\n", "").replace(
        "    limits: {tunnels: 3}\n", "    limits: {tunnels: 3}\n"
        "    secret_sha256: %s\n" % h), text
    wait_reload(srv, n)
    agent_refused(mg, srv, svc, "zed-secret")
    agent_ok(mg, srv, svc, new)


# ---------------------------------------------------------------- the handshake

def _hello(caps, cn, cid):
    return smux.handshake_hmac(cn, cid, caps)


def _login(srv, token, caps, hashed_key=None):
    """An HMAC login by hand: (challenge bytes, reply); hashed_key None: as
    the Challenge says; True/False: force the key."""
    pc = PyClient(srv.port, version=2)
    pc.start()
    cn, cid = os.urandom(16), os.urandom(16)
    pc.open_control()
    pc.send_ctrl(_hello(caps, cn, cid))
    ch = pc.wait_ctrl(lambda m: True, 5)
    assert ch is not None and ch[0] == smux.T_CHALLENGE, (ch, pc.closed)
    sn = ch[1:17]
    use_hash = hashed_key
    if use_hash is None:
        use_hash = len(ch) == 21 and struct.unpack(">I", ch[17:21])[0] & CAP_HASHED
    key = hashlib.sha256(token).digest() if use_hash else token
    mac = hmac.new(key, b"mgrok-auth-v1" + cn + sn + cid, hashlib.sha256).digest()
    pc.send_ctrl(bytes([smux.T_AUTHPROOF]) + mac)
    reply = pc.wait_ctrl(lambda m: m[0] in (smux.T_AUTHOK, smux.T_AUTHERR), 5)
    pc.close()
    return ch, reply


def test_hashed_entry_over_hmac_token_and_old_clients(mg, tmp_path):
    hashed_secret = "hashed-only-secret"
    h = hashlib.sha256(hashed_secret.encode()).hexdigest()
    cfg = server_file(mg, tmp_path, extra="  - name: hal\n    secret_sha256: %s\n" % h)
    srv = start_server(mg, cfg)
    svc = mg.echo_service()

    # our agent: HMAC with capability 3
    agent_ok(mg, srv, svc, hashed_secret)
    assert "authenticated (hmac, hal" in srv.stderr()

    # the legacy TOKEN method: the server hashes what it is sent
    pc = PyClient(srv.port, version=2)
    mg.track(pc.sock)
    pc.start()
    pc.login_token(hashed_secret.encode())
    pc.send_ctrl(smux.register(0x01, 0, svc.port, b"legacy"))
    m = pc.wait_ctrl(lambda m: m[0] in (smux.T_REGISTER_OK, smux.T_REGISTER_ERR,
                                        smux.T_AUTHERR), 5)
    assert m is not None and m[0] == smux.T_REGISTER_OK, (m, pc.closed)
    assert wait_for(lambda: "authenticated (token, hal" in srv.stderr(), 5)
    pc.close()

    # a client of the original protocol (no capability 3) gets the exact
    # 16-byte Challenge, and works with a secret in clear
    ch, reply = _login(srv, b"zed-secret", caps=0x7)
    assert len(ch) == 17, ch
    assert reply is not None and reply[0] == smux.T_AUTHOK, reply
    assert struct.unpack(">I", reply[1:5])[0] & CAP_HASHED == 0
    # ... but not with a hashed-only token: AuthErr code 2 with a hint
    ch, reply = _login(srv, hashed_secret.encode(), caps=0x7)
    assert len(ch) == 17
    assert reply is not None and reply[0] == smux.T_AUTHERR and reply[1] == 2, reply
    assert b"stored as a hash" in reply and b"capability 3" in reply, reply
    assert "lacks capability 3" in srv.stderr()

    # capability 3: the 20-byte Challenge, its caps with bit 3, and the
    # key SHA-256(token) for a hashed entry and for one in clear alike
    for secret in (hashed_secret, "zed-secret"):
        ch, reply = _login(srv, secret.encode(), caps=0x7 | CAP_HASHED)
        assert len(ch) == 21, ch
        assert struct.unpack(">I", ch[17:21])[0] == 0x7 | CAP_HASHED
        assert reply is not None and reply[0] == smux.T_AUTHOK, reply
        assert struct.unpack(">I", reply[1:5])[0] == 0x7 | CAP_HASHED
    # with capability 3 agreed, the token itself as the key is wrong
    ch, reply = _login(srv, b"zed-secret", caps=0x7 | CAP_HASHED, hashed_key=False)
    assert reply is not None and reply[0] == smux.T_AUTHERR and reply[1] == 2, reply
    assert b"stored as a hash" not in reply

    # a wrong secret is refused whatever the method
    agent_refused(mg, srv, svc, "not-a-secret")


def test_hashed_and_clear_are_one_identity_across_reload(mg, tmp_path):
    """A token moved from `secret:` to `secret_sha256:` of the same secret
    is the same token for a reload: not added, not removed, and its
    session stays."""
    cfg = server_file(mg, tmp_path)
    srv = start_server(mg, cfg)
    svc = mg.echo_service()
    c = agent_ok(mg, srv, svc, "zed-secret")
    n = reloads(srv)
    text = cfg.read_text().replace(
        "secret: zed-secret", "secret_sha256: " + hashlib.sha256(b"zed-secret").hexdigest())
    tmp = str(cfg) + ".new"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, str(cfg))
    wait_reload(srv, n)
    assert "tokens 0 added, 0 removed" in srv.stderr(), srv.stderr()[-2000:]
    assert c.alive()
    port = c.forwards()[0][2]
    assert echo_roundtrip(port, b"still") == b"still"
    agent_ok(mg, srv, svc, "zed-secret")


def test_config_errors_of_hashed_entries(mg, tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("tokens:\n"
                   "  - name: a\n"
                   "    secret_sha256: 1234\n"
                   "  - name: b\n"
                   "    secret: [x, y]\n"
                   "    secret_sha256: %s\n" % ("ab" * 32))
    r = run(mg, "config", "check", str(bad))
    assert r.returncode == 1, r
    assert ("bad.yml:3:20: tokens[0].secret_sha256: expected the SHA-256 of the secret "
            "as 64 hex digits") in r.stderr, r.stderr
    assert "bad.yml:4:5: tokens[1]: at most two secrets at once" in r.stderr, r.stderr


def test_usage(mg):
    r = run(mg, "token")
    assert r.returncode == 2 and "mgrok token add NAME" in r.stderr, r
    r = run(mg, "token", "--help")
    assert r.returncode == 0 and "rotate" in r.stdout, r
    r = run(mg, "token", "frob")
    assert r.returncode == 2 and "unknown command" in r.stderr, r
    r = run(mg, "token", "list", "extra", "--config", "x.yml")
    assert r.returncode == 2, r
    r = run(mg, "--help")
    assert "token add|list|rotate|hash" in r.stdout, r


# ---------------------------------------------------------------- layouts

def _h(s):
    return hashlib.sha256(s.encode()).hexdigest()


def test_edits_keep_every_layout(mg, tmp_path):
    """The edit touches only the entry's bytes, whatever the layout of
    tokens: (empty, flow lists, a single secret, CR LF line ends, a block
    list of secrets), and the result loads."""
    cases = [
        # (before, command, after(secret) )
        ("tokens:   # none yet\nlog_level: info\n", ["add", "a"],
         lambda s: "tokens:   # none yet\n  - name: a\n    secret_sha256: %s\n"
                   "log_level: info\n" % _h(s)),
        ("tokens: [x1, {name: b, secret: y}]  # flow\n", ["add", "a", "--clear"],
         lambda s: "tokens: [x1, {name: b, secret: y}, {name: a, secret: %s}]  # flow\n" % s),
        ("tokens: []\n", ["add", "a"],
         lambda s: "tokens: [{name: a, secret_sha256: %s}]\n" % _h(s)),
        ("tokens: ~\n", ["add", "a"],
         lambda s: "tokens: [{name: a, secret_sha256: %s}]\n" % _h(s)),
        ("auth_token: \"s3cret\"   # the original key\n", ["add", "a"],
         lambda s: "auth_token: [\"s3cret\", {name: a, secret_sha256: %s}]"
                   "   # the original key\n" % _h(s)),
        ("addr: \":0\"\r\ntokens:\r\n- name: z\r\n  secret: s\r\n", ["add", "a"],
         lambda s: "addr: \":0\"\r\ntokens:\r\n- name: z\r\n  secret: s\r\n"
                   "- name: a\r\n  secret_sha256: %s\r\n" % _h(s)),
        ("tokens:\n  - name: z\n    secret:\n      - old\n      - new   # the new\n"
         "    expires: 2030-01-01\n", ["rotate", "z", "--finish"],
         lambda s: "tokens:\n  - name: z\n    secret: new   # the new\n"
                   "    expires: 2030-01-01\n"),
        ("tokens:\n  - {name: z, secret_sha256: %s}\n" % _h("o"), ["rotate", "z"],
         lambda s: "tokens:\n  - {name: z, secret_sha256: [%s, %s]}\n" % (_h("o"), _h(s))),
        ("tokens:\n  - {name: z, secret: o, secret_sha256: %s}\n" % _h("n"),
         ["rotate", "z", "--finish"],
         lambda s: "tokens:\n  - {name: z, secret_sha256: %s}\n" % _h("n")),
        # the one written first is the old one, whichever key it is
        ("tokens:\n  - name: z\n    secret_sha256: %s  # old\n    secret: n   # new\n"
         % _h("o"), ["rotate", "z", "--finish"],
         lambda s: "tokens:\n  - name: z\n    secret: n   # new\n"),
    ]
    for i, (before, cmd, after) in enumerate(cases):
        f = tmp_path / ("c%d.yml" % i)
        f.write_bytes(before.encode())
        r = run(mg, "token", *cmd, "--config", str(f))
        assert r.returncode == 0, (before, r)
        secret = r.stdout.strip()
        assert f.read_bytes().decode() == after(secret), (before, f.read_bytes())
        r = run(mg, "config", "check", "--server", str(f))
        assert r.returncode == 0, (before, r)

    f = tmp_path / "alias.yml"
    text = "tokens:\n  - name: q\n    secret: &s abc\n  - name: r\n    secret: [*s, d]\n"
    f.write_text(text)
    for cmd in (["add", "a"], ["rotate", "q"], ["rotate", "r", "--finish"]):
        r = run(mg, "token", *cmd, "--config", str(f))
        assert r.returncode == 1 and "alias.yml:5: a YAML alias" in r.stderr, r
        assert f.read_text() == text
