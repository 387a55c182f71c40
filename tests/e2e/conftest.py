"""Fixtures for the mgrok end-to-end tests.

Run: make e2e  (or `make all build/udptag build/smuxpeer`, then
MGROK_BIN=build/mgrok /usr/bin/python3 -m pytest -q tests/e2e)
"""

import os
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers import MgrokEnv  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a test that waits on a long timeout "
                            "(deselect with -m 'not slow')")


@pytest.fixture(scope="session")
def mgrok_bin():
    b = os.environ.get("MGROK_BIN") or os.path.join(ROOT, "build", "mgrok")
    if not (os.path.isfile(b) and os.access(b, os.X_OK)):
        pytest.fail("mgrok binary not found or not executable at %s "
                    "(build it with `make`, or set MGROK_BIN)" % b, pytrace=False)
    return os.path.abspath(b)


@pytest.fixture(scope="session")
def mgrok_sanitized(mgrok_bin):
    """True for an ASan build (make asan), whose memory use says little."""
    with open(mgrok_bin, "rb") as f:
        return b"__asan_init" in f.read()


@pytest.fixture
def mg(mgrok_bin, tmp_path, request):
    env = MgrokEnv(mgrok_bin, tmp_path)
    request.node._mgrok_env = env
    yield env
    env.cleanup()
    # with an ASan/UBSan build, any report from an mgrok process fails the
    # test (LeakSanitizer reports come at exit, hence after the cleanup)
    bad = env.sanitizer_reports()
    assert not bad, "sanitizer reports: %r\n%s" % (bad[:10], env.logs())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    env = getattr(item, "_mgrok_env", None)
    if env is not None and rep.failed and env.procs:
        if "-- stderr:" in str(rep.longrepr):
            return  # the assertion message already carries the logs
        try:
            rep.sections.append(("mgrok process logs", env.logs()))
        except Exception as e:  # never hide the real failure
            rep.sections.append(("mgrok process logs", "unavailable: %r" % e))


@pytest.fixture(scope="session")
def udptag_bin():
    """The fast UDP tag service (tests/e2e/udptag.c): MGROK_UDPTAG, or beside
    MGROK_BIN, or compiled now with cc into a temporary directory."""
    b = os.environ.get("MGROK_UDPTAG")
    if b and os.access(b, os.X_OK):
        return b
    mg_bin = os.environ.get("MGROK_BIN") or os.path.join(ROOT, "build", "mgrok")
    beside = os.path.join(os.path.dirname(os.path.abspath(mg_bin)), "udptag")
    if os.access(beside, os.X_OK):
        return beside
    tmp = tempfile.mkdtemp(prefix="udptag-")
    out = os.path.join(tmp, "udptag")
    r = subprocess.run(["cc", "-O2", "-o", out, os.path.join(ROOT, "tests", "e2e", "udptag.c")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    if r.returncode != 0:
        pytest.fail("building udptag failed:\n%s" % r.stdout.decode(errors="replace"), pytrace=False)
    return out


@pytest.fixture(scope="session")
def smuxpeer_bin():
    """The Go xtaci/smux peer (tests/interop/smuxpeer), built by
    `make build/smuxpeer` (a dependency of `make e2e`): MGROK_SMUXPEER, or
    beside MGROK_BIN."""
    b = os.environ.get("MGROK_SMUXPEER")
    if not b:
        mg_bin = os.environ.get("MGROK_BIN") or os.path.join(ROOT, "build", "mgrok")
        b = os.path.join(os.path.dirname(os.path.abspath(mg_bin)), "smuxpeer")
    if not (os.path.isfile(b) and os.access(b, os.X_OK)):
        pytest.fail("the Go smux peer is not built at %s: run `make build/smuxpeer` "
                    "(needs golang-go and golang-github-xtaci-smux-dev; scripts/deps.sh "
                    "installs them), or set MGROK_SMUXPEER" % b, pytrace=False)
    return os.path.abspath(b)


@pytest.fixture
def browser():
    """Headless Debian chromium driven by Selenium (tests/e2e/browser.py);
    skips the test when chromium, chromedriver or selenium is missing."""
    import browser as b
    drv = b.start_browser()
    yield drv
    b.quit_browser(drv)


@pytest.fixture(scope="session")
def rstore_drive_bin():
    """The cluster store's test driver (tests/cluster/rstore_drive.c), built
    by `make build/rstore_drive` (a dependency of `make e2e`):
    MGROK_RSTORE_DRIVE, or beside MGROK_BIN."""
    b = os.environ.get("MGROK_RSTORE_DRIVE")
    if not b:
        mg_bin = os.environ.get("MGROK_BIN") or os.path.join(ROOT, "build", "mgrok")
        b = os.path.join(os.path.dirname(os.path.abspath(mg_bin)), "rstore_drive")
    if not (os.path.isfile(b) and os.access(b, os.X_OK)):
        pytest.fail("the cluster store driver is not built at %s: run "
                    "`make build/rstore_drive`, or set MGROK_RSTORE_DRIVE" % b,
                    pytrace=False)
    return os.path.abspath(b)
