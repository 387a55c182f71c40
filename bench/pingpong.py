#!/usr/bin/env python3
"""pingpong.py [cpu0]: the machine's floor for request/response latency.

Two processes exchange one byte over a loopback TCP connection (TCP_NODELAY)
20000 times; prints the median and 99th percentile round trip in
microseconds. With cpu0, both are pinned to CPU 0, so no wake-up crosses
CPUs. A relay chain adds such wake-ups per hop: this bounds what any relay
can reach here. Bounded: 20000 round trips, 5 s socket timeouts."""
import os
import socket
import sys
import time

N = 20000


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "cpu0":
        os.sched_setaffinity(0, {0})
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1)
    port = lst.getsockname()[1]
    pid = os.fork()
    if pid == 0:
        c, _ = lst.accept()
        c.settimeout(5)
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(N):
            d = c.recv(16)
            if not d:
                break
            c.sendall(d)
        os._exit(0)
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ts = []
    for _ in range(N):
        t = time.perf_counter_ns()
        c.sendall(b"x")
        if not c.recv(16):
            break
        ts.append(time.perf_counter_ns() - t)
    c.close()
    os.waitpid(pid, 0)
    ts.sort()
    print("p50_us=%.1f p99_us=%.1f n=%d" % (ts[len(ts) // 2] / 1000, ts[len(ts) * 99 // 100] / 1000, len(ts)))


main()
