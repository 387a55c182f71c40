#!/usr/bin/env python3
"""rtt.py - request/response latency through a relay (bounded in count and time).

  rtt.py echo --port P [--max-time S]
      accept on 127.0.0.1:P (TCP_NODELAY); echo what each connection sends, a thread each.
  rtt.py held --host H --port P [--count N] [--size B]
      one connection to H:P (TCP_NODELAY), N round trips of B bytes each (send, read them
      all back), after 50 untimed ones. Prints JSON: n, p50_us, p99_us, mean_us.
  rtt.py conn --host H --port P [--count N] [--size B]
      N times in turn: connect to H:P, one round trip of B bytes, close; each timed from
      before connect to the last byte back. Prints the same JSON.
Every socket has a 5 s timeout; the client stops after --max-time seconds (default 60)
and reports what it measured, with "short": true if it did not finish.
"""
import argparse
import json
import socket
import sys
import threading
import time


def echo(a):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", a.port))
    ls.listen(4096)
    ls.settimeout(1.0)
    end = time.time() + a.max_time

    def serve(c):
        c.settimeout(a.max_time)
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                c.sendall(d)
        except OSError:
            pass
        finally:
            c.close()

    while time.time() < end:
        try:
            c, _ = ls.accept()
        except socket.timeout:
            continue
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def roundtrip(s, msg):
    s.sendall(msg)
    got = 0
    while got < len(msg):
        d = s.recv(65536)
        if not d:
            raise OSError("closed after %d of %d bytes" % (got, len(msg)))
        got += len(d)


def connect(a):
    s = socket.create_connection((a.host, a.port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def client(a):
    msg = b"x" * a.size
    ts = []
    deadline = time.monotonic() + a.max_time
    if a.mode == "held":
        s = connect(a)
        for _ in range(50):
            roundtrip(s, msg)
        for _ in range(a.count):
            if time.monotonic() >= deadline:
                break
            t = time.perf_counter_ns()
            roundtrip(s, msg)
            ts.append(time.perf_counter_ns() - t)
        s.close()
    else:
        for _ in range(a.count):
            if time.monotonic() >= deadline:
                break
            t = time.perf_counter_ns()
            s = connect(a)
            try:
                roundtrip(s, msg)
            finally:
                s.close()
            ts.append(time.perf_counter_ns() - t)
    ts.sort()
    n = len(ts)
    out = {"mode": a.mode, "n": n, "short": n < a.count,
           "p50_us": round(ts[n // 2] / 1000, 1) if n else None,
           "p99_us": round(ts[min(n - 1, n * 99 // 100)] / 1000, 1) if n else None,
           "mean_us": round(sum(ts) / n / 1000, 1) if n else None}
    print(json.dumps(out))


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["echo", "held", "conn"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--max-time", type=float, default=60)
    a = p.parse_args()
    try:
        echo(a) if a.mode == "echo" else client(a)
    except OSError as e:
        print(json.dumps({"mode": a.mode, "error": str(e)}))
        sys.exit(1)
