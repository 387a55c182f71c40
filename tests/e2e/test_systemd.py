"""The systemd units in contrib/systemd (issue 12, "Service install").

`systemd-analyze verify` must pass on mgrok-server.service, on the template
mgrok@.service (as an instance) and on the server with its low-ports.conf
drop-in. verify works offline (no systemd running is needed) but wants the
ExecStart binary to exist: the units are copied to a temporary directory
with /usr/local/bin/mgrok rewritten to a copy of MGROK_BIN there.
--recursive-errors=no makes any warning about our units (an unknown key, a
value that does not parse) a non-zero exit, while problems of the host's
own units do not count; deliberately broken copies prove it does fail.

`systemd-analyze security --offline` checks what the hardening amounts to:
no capability without the drop-in, CAP_NET_BIND_SERVICE with it, and an
overall exposure that stays low. A client run with the unit's
XDG_STATE_HOME shows that mgrok keeps its identity in the unit's
StateDirectory=.
"""

import json
import os
import re
import shutil
import subprocess

import pytest

from helpers import pick_free_port

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
UNITS = os.path.join(ROOT, "contrib", "systemd")
INSTALLED_BIN = "/usr/local/bin/mgrok"
SERVER = "mgrok-server.service"
CLIENT = "mgrok@.service"
DROPIN = os.path.join("mgrok-server.service.d", "low-ports.conf")
# systemd-analyze security: exposure is 0..10, --threshold counts tenths
MAX_EXPOSURE_TENTHS = 20


@pytest.fixture(scope="module")
def analyze():
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.fail("systemd-analyze not found: install Debian's systemd package "
                    "(scripts/deps.sh does)", pytrace=False)
    return exe


def _run(cmd, cwd):
    env = dict(os.environ, SYSTEMD_PAGER="cat", SYSTEMD_COLORS="0",
               SYSTEMD_LOG_COLOR="0", LC_ALL="C")
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=120)
    return p.returncode, p.stdout + p.stderr


def _stage(tmp_path, mgrok_bin, dropin=True):
    """The units as installed, but calling a copy of MGROK_BIN."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "mgrok"
    shutil.copy(mgrok_bin, exe)
    os.chmod(exe, 0o755)
    udir = tmp_path / "units"
    udir.mkdir()
    for name in (SERVER, CLIENT):
        text = open(os.path.join(UNITS, name)).read()
        assert re.search(r"^ExecStart=%s " % re.escape(INSTALLED_BIN), text, re.M), \
            "%s: ExecStart= does not run %s (make install's default)" % (name, INSTALLED_BIN)
        (udir / name).write_text(text.replace(INSTALLED_BIN, str(exe)))
    if dropin:
        (udir / os.path.dirname(DROPIN)).mkdir()
        shutil.copy(os.path.join(UNITS, DROPIN), udir / DROPIN)
    return udir


def _verify(analyze, udir, *names):
    rc, out = _run([analyze, "verify", "--man=no", "--recursive-errors=no"] +
                   [str(udir / n) for n in names], cwd=str(udir))
    # every line naming one of our files is a problem, whatever the status
    ours = [l for l in out.splitlines() if str(udir) in l or "mgrok" in l]
    return rc, ours, out


def _settings(path):
    """KEY -> [values] of a unit file ([Service] and the rest alike)."""
    kv = {}
    for line in open(path):
        line = line.strip()
        if not line or line[0] in "#;[":
            continue
        k, _, v = line.partition("=")
        kv.setdefault(k.strip(), []).append(v.strip())
    return kv


def test_units_verify(analyze, mgrok_bin, tmp_path):
    udir = _stage(tmp_path, mgrok_bin, dropin=False)
    for names in ((SERVER,), (CLIENT,), ("mgrok@office.service",)):
        rc, ours, out = _verify(analyze, udir, *names)
        assert rc == 0 and not ours, "verify %s: exit %d\n%s" % (names, rc, out)


def test_server_with_low_ports_dropin_verifies(analyze, mgrok_bin, tmp_path):
    udir = _stage(tmp_path, mgrok_bin)
    rc, ours, out = _verify(analyze, udir, SERVER, "mgrok@office.service")
    assert rc == 0 and not ours, "exit %d\n%s" % (rc, out)


@pytest.mark.parametrize("unit,breakage", [
    # an unknown key (a typo) is only a warning to systemd, an error to us
    (DROPIN, ("[Service]\n", "[Service]\nAmbientCapabilites=CAP_NET_BIND_SERVICE\n")),
    (SERVER, ("Restart=on-failure", "Restart=on-failur")),
    (CLIENT, ("LimitNOFILE=65536", "LimitNOFILE=lots")),
    # the binary ExecStart= names is missing
    (SERVER, ("/bin/mgrok server", "/bin/mgrok-missing server")),
    # no [Service] section, so no ExecStart=
    (CLIENT, ("[Service]", "[Servce]")),
])
def test_verify_fails_on_a_broken_unit(analyze, mgrok_bin, tmp_path, unit, breakage):
    udir = _stage(tmp_path, mgrok_bin)
    path = udir / unit
    text = path.read_text()
    old, new = breakage
    assert old in text, "the test's breakage no longer applies to %s" % unit
    path.write_text(text.replace(old, new, 1))
    target = "mgrok@office.service" if unit == CLIENT else SERVER
    rc, ours, out = _verify(analyze, udir, target)
    assert rc != 0 and ours, "verify accepted a broken %s (exit %d)\n%s" % (unit, rc, out)


def _security(analyze, udir, name):
    rc, out = _run([analyze, "security", "--offline=yes", "--no-pager",
                    "--json=short", "--threshold=%d" % MAX_EXPOSURE_TENTHS,
                    str(udir / name)], cwd=str(udir))
    m = re.search(r"\[.*\]", out, re.S)
    assert m, "no JSON from systemd-analyze security:\n" + out
    checks = {e["name"]: e for e in json.loads(m.group(0))}
    # for messages: what is left exposed, and how much each weighs
    open_ = ", ".join("%s (%s)" % (n, e["exposure"]) for n, e in checks.items()
                      if not e["set"])
    return rc, checks, "exposed: " + open_


NET_CAPS = "CapabilityBoundingSet=~CAP_NET_(BIND_SERVICE|BROADCAST|RAW)"


def test_hardening(analyze, mgrok_bin, tmp_path):
    (tmp_path / "bare").mkdir()
    (tmp_path / "low").mkdir()
    bare = _stage(tmp_path / "bare", mgrok_bin, dropin=False)
    low = _stage(tmp_path / "low", mgrok_bin)
    for udir, name, may_bind_low in ((bare, SERVER, False), (bare, "mgrok@office.service", False),
                                     (low, SERVER, True)):
        rc, checks, out = _security(analyze, udir, name)
        assert rc == 0, "%s: exposure above %.1f\n%s" % (name, MAX_EXPOSURE_TENTHS / 10, out)
        assert checks[NET_CAPS]["set"] is (not may_bind_low), \
            "%s: CAP_NET_BIND_SERVICE %s\n%s" % (
                name, "missing with low-ports.conf" if may_bind_low else "without the drop-in", out)
        for check in ("NoNewPrivileges=", "ProtectSystem=", "ProtectHome=", "PrivateTmp=",
                      "CapabilityBoundingSet=~CAP_SYS_ADMIN", "RestrictAddressFamilies=~AF_PACKET",
                      "RestrictAddressFamilies=~AF_NETLINK", "User=/DynamicUser=",
                      "SystemCallFilter=~@privileged", "MemoryDenyWriteExecute="):
            assert checks[check]["set"], "%s: %s not hardened\n%s" % (name, check, out)


def test_unit_settings():
    """What the docs and the binary rely on, beyond what verify checks."""
    srv = _settings(os.path.join(UNITS, SERVER))
    cli = _settings(os.path.join(UNITS, CLIENT))
    assert srv["ExecStart"] == [INSTALLED_BIN + " server --config /etc/mgrok/server.yml"]
    assert cli["ExecStart"] == [INSTALLED_BIN + " start --config /etc/mgrok/%i.yml"]
    for kv in (srv, cli):
        assert kv["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
        assert kv["Type"] == ["simple"]  # mgrok does not speak sd_notify
        assert kv["Restart"] == ["on-failure"]
        assert kv["LimitNOFILE"] == ["65536"]
        assert kv["CapabilityBoundingSet"] == [""]
        assert kv["SystemCallFilter"][0] == "@system-service"
        assert kv["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    assert cli["StateDirectory"] == ["mgrok"]
    assert cli["Environment"] == ["XDG_STATE_HOME=%S"]
    low = _settings(os.path.join(UNITS, DROPIN))
    assert low["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    assert low["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]


def test_client_state_lands_in_state_directory(mgrok_bin, tmp_path):
    """%S is /var/lib for a system unit: with the unit's XDG_STATE_HOME the
    agent's seed and locks must land in /var/lib/<StateDirectory>, the one
    directory ProtectSystem=strict leaves writable."""
    cli = _settings(os.path.join(UNITS, CLIENT))
    var_lib = tmp_path / "var" / "lib"
    var_lib.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k not in ("HOME", "MGROK_TOKEN")}
    for e in cli["Environment"]:
        k, _, v = e.partition("=")
        env[k] = v.replace("%S", str(var_lib))
    p = subprocess.run([mgrok_bin, "tcp", "1", "--token", "t", "--no-reconnect",
                        "--server", "127.0.0.1:%d" % pick_free_port()],
                       env=env, capture_output=True, text=True, timeout=30)
    state = var_lib / cli["StateDirectory"][0]
    assert (state / "client_id").is_file(), \
        "no client_id in %s (exit %d):\n%s" % (state, p.returncode, p.stderr)
    assert list((state / "agents").glob("*.lock")), p.stderr
    assert sorted(os.listdir(var_lib)) == [cli["StateDirectory"][0]], \
        "mgrok wrote outside its StateDirectory: %s" % os.listdir(var_lib)
