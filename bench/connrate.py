#!/usr/bin/env python3
"""connrate.py - new TCP connections per second through a relay (bounded in count and time).

  connrate.py server --port P [--max-time S]
      accept on 127.0.0.1:P; send one byte to each connection, then close it.
  connrate.py client --port P --count N [--conc C] [--max-time S] [--host H]
      C threads open connections to H:P (default 127.0.0.1) until N are done or S seconds pass; each
      connection counts as ok when the service's one byte arrives (end to end through the
      relay), then it is closed. Prints JSON: ok, failed, seconds, conn_per_s, p50_ms, p99_ms.
"""
import argparse
import json
import socket
import sys
import threading
import time


def server(a):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", a.port))
    ls.listen(4096)
    ls.settimeout(1.0)
    end = time.time() + a.max_time
    while time.time() < end:
        try:
            c, _ = ls.accept()
        except socket.timeout:
            continue
        try:
            c.sendall(b"x")
        except OSError:
            pass
        c.close()


def client(a):
    lock = threading.Lock()
    st = {"next": 0, "ok": 0, "failed": 0, "lat": [], "errors": {}}
    deadline = time.time() + a.max_time

    def worker():
        while True:
            with lock:
                if st["next"] >= a.count or time.time() >= deadline:
                    return
                st["next"] += 1
            t0 = time.perf_counter()
            s = socket.socket()
            s.settimeout(5.0)
            try:
                s.connect((a.host, a.port))
                b = s.recv(1)
                if b != b"x":
                    raise OSError("no byte from the service (got %r)" % b)
                dt = time.perf_counter() - t0
                with lock:
                    st["ok"] += 1
                    st["lat"].append(dt)
            except OSError as e:
                with lock:
                    st["failed"] += 1
                    k = str(e)[:80]
                    st["errors"][k] = st["errors"].get(k, 0) + 1
            finally:
                s.close()

    t0 = time.perf_counter()
    th = [threading.Thread(target=worker) for _ in range(a.conc)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    el = time.perf_counter() - t0
    lat = sorted(st["lat"])

    def pct(p):
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 3) if lat else None
    print(json.dumps({"ok": st["ok"], "failed": st["failed"], "seconds": round(el, 3),
                      "conn_per_s": round(st["ok"] / el, 1) if el > 0 else None,
                      "p50_ms": pct(0.5), "p99_ms": pct(0.99), "conc": a.conc,
                      "errors": st["errors"]}))


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["server", "client"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--conc", type=int, default=1)
    p.add_argument("--max-time", type=float, default=30)
    a = p.parse_args()
    server(a) if a.mode == "server" else client(a)
