"""Headless Chromium for the mgrok end-to-end tests of the web pages.

Uses Debian's chromium and chromedriver through python3-selenium.  A test
that needs a browser calls start_browser(); when chromium (or selenium, or
chromedriver) is not installed it skips the test with pytest.skip, and only
then.  Every browser gets a fresh profile in a temporary directory, which
quit_browser() removes.

    drv = start_browser()
    try:
        drv.get(url)
        wait_until(drv, lambda d: d.find_elements(By.ID, "events"), 10)
        screenshot(drv, "dashboard")
    finally:
        quit_browser(drv)

Screenshots go to $MGROK_ARTIFACTS (default build/test-artifacts under the
repository).
"""

import os
import re
import shutil
import tempfile
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER = "/usr/bin/chromedriver"
DESKTOP = (1280, 900)
PHONE = (390, 844)

CHROME_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
)


def chromium_path():
    """The chromium binary, or None when it is not installed."""
    for p in CHROMIUM:
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def start_browser(size=DESKTOP):
    """Start headless chromium with a fresh profile; returns the webdriver.

    Skips the calling test when chromium, chromedriver or selenium is
    missing.  End it with quit_browser(driver)."""
    binary = chromium_path()
    if binary is None:
        pytest.skip("chromium is not installed")
    if not os.access(CHROMEDRIVER, os.X_OK):
        pytest.skip("chromedriver is not installed (%s)" % CHROMEDRIVER)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("python3-selenium is not installed")
    profile = tempfile.mkdtemp(prefix="mgrok-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for a in CHROME_ARGS:
        opts.add_argument(a)
    opts.add_argument("--user-data-dir=" + profile)
    opts.add_argument("--window-size=%d,%d" % size)
    # collect console errors (CSP violations show up there)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    except Exception:
        shutil.rmtree(profile, ignore_errors=True)
        raise
    drv._mgrok_profile = profile
    drv.set_page_load_timeout(30)
    drv.set_script_timeout(30)
    return drv


def quit_browser(drv):
    """End the browser and remove its profile; accepts None."""
    if drv is None:
        return
    profile = getattr(drv, "_mgrok_profile", None)
    try:
        drv.quit()
    finally:
        if profile:
            shutil.rmtree(profile, ignore_errors=True)


def set_size(drv, size):
    """Resize the window, e.g. to PHONE or DESKTOP."""
    drv.set_window_size(size[0], size[1])


def artifacts_dir():
    """$MGROK_ARTIFACTS or build/test-artifacts, created when missing."""
    d = os.environ.get("MGROK_ARTIFACTS") or os.path.join(ROOT, "build", "test-artifacts")
    os.makedirs(d, exist_ok=True)
    return d


def screenshot(drv, name):
    """Save a PNG of the viewport as NAME.png in the artifacts dir; returns its path."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "screenshot"
    path = os.path.join(artifacts_dir(), safe + ".png")
    drv.save_screenshot(path)
    return path


def console_errors(drv):
    """The browser console's SEVERE entries so far (CSP violations, JS errors)."""
    try:
        logs = drv.get_log("browser")
    except Exception:
        return []
    return [e for e in logs if e.get("level") == "SEVERE"]


def wait_until(drv, predicate, timeout=10, interval=0.1, what="condition"):
    """Call predicate(drv) until it returns a truthy value, and return it.

    Exceptions from the predicate (an element not there yet, a stale one)
    count as false.  Raises AssertionError naming `what` after timeout
    seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            v = predicate(drv)
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - any failure is "not yet"
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s%s" % (
                timeout, what, " (last error: %r)" % last if last else ""))
        time.sleep(interval)
