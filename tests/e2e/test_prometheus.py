"""A real Prometheus (Debian's prometheus) scrapes the server's admin
listener and the agent's inspector on loopback: both targets are up, and a
query returns the bytes the test sent through a TCP tunnel, as the server
and as the agent count them. promtool checks both expositions."""

import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from helpers import HOST, connect, pick_free_port, recv_exact, wait_for
from test_admin import admin_port, api, scrape
from test_http import _http_server

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(not PROMETHEUS or not PROMTOOL,
                                reason="Debian's prometheus package is not installed "
                                       "(scripts/deps.sh installs it)")


def promtool_check(text):
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, "promtool check metrics:\n%s\n%s" % (r.stdout, r.stderr)


def prom_get(port, path, **params):
    url = "http://%s:%d%s" % (HOST, port, path)
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def test_prometheus_scrapes_server_and_agent(mg, tmp_path):
    srv = _http_server(mg, https=False, extra=["--admin-addr", "%s:0" % HOST])
    aport = admin_port(srv.proc)
    svc = mg.echo_service()
    iport = pick_free_port()
    c = mg.tcp_client(svc.port, srv.proc, extra=["--inspect-addr", "%s:%d" % (HOST, iport)])
    _, _, pub, _ = mg.wait_forward(c)[0]
    assert wait_for(lambda: api(iport, "/metrics")[0] == 200, 10), c.log()

    payload = os.urandom(123457)
    s = connect(pub)
    s.sendall(payload)
    assert recv_exact(s, len(payload), timeout=10) == payload
    s.close()

    promtool_check(scrape(aport))
    promtool_check(api(iport, "/metrics")[1])

    pport = pick_free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: mgrok-server\n"
        "    static_configs: [{targets: ['%s:%d']}]\n"
        "  - job_name: mgrok-agent\n"
        "    static_configs: [{targets: ['%s:%d']}]\n" % (HOST, aport, HOST, iport))
    r = subprocess.run([PROMTOOL, "check", "config", str(cfg)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    prom = mg.spawn("prometheus", [PROMETHEUS, "--config.file", str(cfg),
                                   "--storage.tsdb.path", str(tmp_path / "tsdb"),
                                   "--web.listen-address", "%s:%d" % (HOST, pport),
                                   "--log.level", "warn"])

    def targets_up():
        try:
            t = prom_get(pport, "/api/v1/targets")
        except OSError:
            return None
        act = t["data"]["activeTargets"]
        ups = {a["labels"]["job"]: a["health"] for a in act}
        return ups if ups == {"mgrok-server": "up", "mgrok-agent": "up"} else None
    ups = wait_for(targets_up, 60, interval=0.5)
    assert ups, "targets not up: %s\n%s" % (
        prom_get(pport, "/api/v1/targets") if prom.alive() else "prometheus died",
        prom.log())

    def value(query):
        try:
            res = prom_get(pport, "/api/v1/query", query=query)["data"]["result"]
        except OSError:
            return None
        return [float(x["value"][1]) for x in res]

    q = 'sum(mgrok_tunnel_bytes_total{job="%s",direction="in"})'
    got = wait_for(lambda: value(q % "mgrok-server") == [len(payload)] and
                   value(q % "mgrok-agent") == [len(payload)], 30, interval=0.5)
    assert got, (value(q % "mgrok-server"), value(q % "mgrok-agent"))
    q = 'sum(mgrok_tunnel_bytes_total{job="%s",direction="out"})'
    assert value(q % "mgrok-server") == [len(payload)]
    assert value(q % "mgrok-agent") == [len(payload)]
    assert value('process_open_fds{job="mgrok-server"}')[0] > 0
