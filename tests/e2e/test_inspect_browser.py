"""The agent's inspector in a real browser: headless Debian chromium driven
by Selenium opens the inspector page, sees a request made through the
tunnel appear without a reload, opens it, clicks Replay, and the local
service receives the request a second time; then edits and replays it.
Screenshots go to $MGROK_ARTIFACTS (default build/test-artifacts)."""

from browser import PHONE, console_errors, screenshot, set_size, wait_until
from helpers import HOST, pick_free_port, wait_for
from test_admin import api, raw_request
from test_http import _http_client, _http_server, http_service


def test_inspector_replay_in_the_browser(mg, browser):
    from selenium.webdriver.common.by import By
    srv = _http_server(mg, https=False)
    svc = http_service(mg, "svc")
    iport = pick_free_port()
    c, host = _http_client(mg, srv, svc.port, subdomain="insp",
                           extra=["--inspect-addr", "%s:%d" % (HOST, iport)])
    assert wait_for(lambda: api(iport, "/api/tunnels")[0] == 200, 10), c.log()
    drv = browser
    drv.get("http://127.0.0.1:%d/" % iport)
    wait_until(drv, lambda d: d.find_element(By.ID, "conn-state")
               .get_attribute("data-state") == "live", 15, what="the event stream live")
    wait_until(drv, lambda d: d.find_elements(By.CSS_SELECTOR,
                                              "#tunnels tr[data-tunnel-name]"), 10,
               what="the tunnel listed")
    drv.execute_script("window.__mgrok_marker = 7")

    raw_request(srv.http_port, host, "/hook?from=browser", b'{"hello": "world"}')
    assert len([r for r in svc.requests if r["path"] == "/hook?from=browser"]) == 1
    row = wait_until(drv, lambda d: next(
        (r for r in d.find_elements(By.CSS_SELECTOR, "#requests tr[data-request-id]")
         if "/hook?from=browser" in r.text), None), 15, what="the request's row")
    assert row.get_attribute("data-method") == "POST", row.get_attribute("outerHTML")
    assert row.get_attribute("data-status") == "200"
    row.click()
    detail = wait_until(drv, lambda d: d.find_element(By.ID, "request-detail"), 5,
                        what="the detail pane")
    wait_until(drv, lambda d: "/hook?from=browser" in detail.text, 5, what="the detail")
    screenshot(drv, "inspector-request")

    drv.find_element(By.ID, "replay").click()
    assert wait_for(lambda: len([r for r in svc.requests
                                 if r["path"] == "/hook?from=browser"]) == 2, 10), \
        svc.requests
    # the replay is listed, marked as one
    st, body, _ = api(iport, "/api/requests/http")
    assert st == 200, body
    assert any(e.get("replay_of") for e in body["requests"]), body
    screenshot(drv, "inspector-replayed")

    # edit and replay: another path and method
    drv.find_element(By.CSS_SELECTOR, "#detail-tabs button[data-tab=edit]").click()
    uri = drv.find_element(By.ID, "rf-uri")
    uri.clear()
    uri.send_keys("/edited")
    method = drv.find_element(By.ID, "rf-method")
    method.clear()
    method.send_keys("PUT")
    drv.find_element(By.ID, "replay-send").click()
    assert wait_for(lambda: any(r["path"] == "/edited" and r["method"] == "PUT"
                                for r in svc.requests), 10), svc.requests
    assert drv.execute_script("return window.__mgrok_marker") == 7, "the page reloaded"
    set_size(drv, PHONE)
    screenshot(drv, "inspector-phone")
    errs = [e for e in console_errors(drv) if "401" not in e["message"]]
    assert not errs, errs
