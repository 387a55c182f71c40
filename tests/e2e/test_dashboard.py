"""The server's dashboard in a real browser: headless Debian chromium driven
by Selenium opens the admin listener's page, sees a tunnel appear when an
agent connects and disappear when it leaves, without reloading the page,
the traffic chart draw, and an operator kick a session. Screenshots go to
$MGROK_ARTIFACTS (default build/test-artifacts)."""

from browser import PHONE, console_errors, screenshot, set_size, wait_until
from helpers import HOST, connect, wait_for
from test_admin import admin_port, api, raw_request
from test_http import _http_client, _http_server, http_service


def rows(drv, css):
    return drv.find_elements("css selector", css)


def test_dashboard_live(mg, browser):
    from selenium.webdriver.common.by import By
    srv = _http_server(mg, https=False, extra=["--admin-addr", "%s:0" % HOST,
                                                "--lease-grace", "0"])
    aport = admin_port(srv.proc)
    drv = browser
    drv.get("http://127.0.0.1:%d/" % aport)
    wait_until(drv, lambda d: d.find_element(By.ID, "conn-state")
               .get_attribute("data-state") == "live", 15, what="the event stream live")
    wait_until(drv, lambda d: d.find_element(By.ID, "version").text.strip() != "", 10,
               what="the version shown")
    assert not rows(drv, "#tunnels tr[data-tunnel-id]")
    marker = drv.execute_script("window.__mgrok_marker = 42; return window.__mgrok_marker")
    assert marker == 42

    svc = http_service(mg, "dash")
    c, host = _http_client(mg, srv, svc.port, subdomain="dash",
                           extra=["--inspect-addr", "off", "--no-reconnect"])
    wait_until(drv, lambda d: any(r.get_attribute("data-tunnel-name") == "http-dash.tun.test"
                                  for r in rows(d, "#tunnels tr[data-tunnel-id]")),
               15, what="the tunnel's row")
    wait_until(drv, lambda d: rows(d, "#sessions tr[data-session-id]"), 10,
               what="the session's row")
    for i in range(20):
        raw_request(srv.http_port, host, "/p%d" % i, b"y" * 5000)
    wait_until(drv, lambda d: d.find_elements(By.CSS_SELECTOR,
                                              "#traffic-chart polyline"), 15,
               what="the traffic chart")
    # the counters follow the traffic without a reload: 20 x 5000 bytes in
    want = api(aport, "/api/v1/tunnels")[1]["tunnels"][0]["bytes_in"]
    assert want > 100000, want
    wait_until(drv, lambda d: "KB" in d.find_element(
        By.CSS_SELECTOR, "#tunnels tr[data-tunnel-id]").text, 10,
        what="the tunnel's byte counters to move")
    # and the chart has a point above zero once a sample covered them
    assert wait_for(lambda: any(any(v > 0 for v in row["in"]) for row in
                                api(aport, "/api/v1/traffic")[1]["tunnels"]), 10), \
        api(aport, "/api/v1/traffic")
    wait_until(drv, lambda d: any(e.get_attribute("data-type") == "tunnel_up"
                                  for e in rows(d, "#events li[data-type]")),
               10, what="a tunnel_up event in the list")
    screenshot(drv, "dashboard-tunnel-up")
    set_size(drv, PHONE)
    screenshot(drv, "dashboard-phone")
    set_size(drv, (1280, 900))

    # the agent leaves: the row goes, with no reload of the page
    c.stop()
    wait_until(drv, lambda d: not rows(d, "#tunnels tr[data-tunnel-id]"), 15,
               what="the tunnel's row to go")
    wait_until(drv, lambda d: any(e.get_attribute("data-type") == "tunnel_down"
                                  for e in rows(d, "#events li[data-type]")),
               10, what="a tunnel_down event")
    assert drv.execute_script("return window.__mgrok_marker") == 42, "the page reloaded"
    screenshot(drv, "dashboard-tunnel-down")

    # kick from the page
    c2, _ = _http_client(mg, srv, svc.port, subdomain="dash2",
                         extra=["--inspect-addr", "off", "--no-reconnect"])
    btn = wait_until(drv, lambda d: d.find_element(By.CSS_SELECTOR,
                                                   "#sessions tr[data-session-id] button.kick"),
                     15, what="the kick button")
    btn.click()
    drv.switch_to.alert.accept()
    assert wait_for(lambda: "kicked by an operator" in c2.stderr(), 10), c2.log()
    wait_until(drv, lambda d: not rows(d, "#sessions tr[data-session-id]"), 15,
               what="the kicked session's row to go")
    errs = [e for e in console_errors(drv) if "401" not in e["message"]]
    assert not errs, errs
