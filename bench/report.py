#!/usr/bin/env python3
"""report.py - rows and RESULTS.md for bench/run.sh.

  report.py tcprow SCENARIO TEST RUN IPERF_JSON PROCMON_JSON NOTE  -> one tcp.tsv row
  report.py md OUT_DIR                                            -> RESULTS.md on stdout
  report.py snap NAME=PID...                                      -> VmRSS (KiB) per process tree
  report.py udprow SCEN TEST RUN TARGET_BPS LEN IPERF_JSON PROCMON_JSON NOTE -> one udp.tsv row
  report.py connrow SCEN TEST RUN CONNRATE_JSON PROCMON_JSON NOTE  -> one conn.tsv row
  report.py wrkrow SCEN TEST RUN WRK_TEXT PROCMON_JSON NOTE        -> one http.tsv row

RESULTS.md is built from whatever family TSVs exist in OUT_DIR (tcp.tsv, mem.tsv, ...):
each family has one section function returning (markdown lines, target rows); target
rows are (target, measured, met) with met True/False/None (None = not measured) and are
computed here from the medians, never written by hand. To add a family (UDP, TLS,
HTTP), write its rows from run.sh and add a function to FAMILIES below.
"""
import json
import os
import re
import statistics
import sys

LABELS = {
    "direct": "direct (no relay)",
    "socat1": "socat 1 hop, 8 KiB",
    "socat1big": "socat 1 hop, -b 131072",
    "socat2": "socat 2 hops, 8 KiB",
    "socat2big": "socat 2 hops, -b 131072",
    "ssh": "ssh -R (aes128-gcm)",
    "mgrok": "**mgrok**",
    "socat2u": "socat 2 hops (UDP4-LISTEN fork, + TCP for control)",
    "mgroku": "**mgrok** (udp + tcp clients)",
    "stunnel": "stunnel pair (TLS 1.3, mTLS)",
    "mgroktls": "**mgrok --tls** (mTLS)",
    "mgrokhttp": "**mgrok HTTP vhost**",
    "mgrokhttpbp": "**mgrok HTTP vhost, --busy-poll**",
}
TEST_LABELS = {"iperf1": "1 stream", "iperfP8": "-P 8", "iperfR": "-R 1 stream"}
IDLE_RSS_LIMIT_KB = 4096        # idle RSS <= 4 MiB per process
PER_CONN_LIMIT_KB = 8.0         # RSS per idle proxied connection <= 8 KiB (server + client)


def label(s):
    return LABELS.get(s, s)


def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def med(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


def fmt_stat(v, nd=2):
    v = [x for x in v if x is not None]
    if not v:
        return "-"
    f = "%%.%df" % nd
    m = f % statistics.median(v)
    return m if len(v) == 1 else "%s (%s-%s)" % (m, f % min(v), f % max(v))


def fmt(x, nd=2):
    return "-" if x is None else ("%%.%df" % nd) % x


def read_tsv(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        hdr = f.readline().rstrip("\n").split("\t")
        return [dict(zip(hdr, l.rstrip("\n").split("\t"))) for l in f if l.strip()]


# ------------------------------------------------------------------ rows
def tcprow(argv):
    scen, test, run, iperf_path, mon_path, note = argv
    gbps, retrans, err = None, None, []
    try:
        with open(iperf_path) as f:
            j = json.load(f)
        if j.get("error"):
            err.append(j["error"])
        end = j.get("end", {})
        rcv = end.get("sum_received") or {}
        if rcv.get("bits_per_second"):
            gbps = rcv["bits_per_second"] / 1e9
        snd = end.get("sum_sent") or {}
        retrans = snd.get("retransmits")
    except (OSError, ValueError):
        err.append("no iperf3 json")
    try:
        with open(mon_path) as f:
            mon = json.loads(f.read() or "{}")
    except (OSError, ValueError):
        mon = {}
    roots = {k: {"cpu_s": v.get("cpu_s"), "peak_rss_kb": v.get("rss_kb")} for k, v in mon.get("roots", {}).items()}
    cpu = sum(v["cpu_s"] for v in roots.values() if v["cpu_s"] is not None) if roots else None
    rss = sum(v["peak_rss_kb"] or 0 for v in roots.values()) if roots else None
    if note.strip():
        err.append(note.strip())
    vals = [scen, test, run, fmt(gbps, 3) if gbps else "", fmt(cpu, 2) if cpu is not None else "",
            fmt(num(mon.get("wall_s")), 2) if mon.get("wall_s") else "",
            fmt(num(mon.get("other_cpu_pct")), 1) if mon.get("other_cpu_pct") is not None else "",
            "" if retrans is None else str(retrans), "" if not rss else str(rss), "; ".join(err).replace("\t", " "),
            json.dumps(roots, separators=(",", ":"))]
    print("\t".join(vals))


def snap(argv):
    """snap NAME=PID...: print 'NAME:VMRSS_KB:NPROC:RSSANON_KB ...', each summed over PID and its descendants
    (one pass over /proc; VmRSS from /proc/PID/status)."""
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d, "rb") as f:
                    data = f.read().decode("ascii", "replace")
                parent[int(d)] = int(data[data.rindex(")") + 2:].split()[1])
            except (OSError, ValueError):
                pass
    children = {}
    for p, pp in parent.items():
        children.setdefault(pp, []).append(p)

    def vmrss(pid):
        """(VmRSS, RssAnon) in KiB."""
        v = {}
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith(("VmRSS:", "RssAnon:")):
                        v[line.split(":")[0]] = int(line.split()[1])
        except OSError:
            pass
        return v.get("VmRSS", 0), v.get("RssAnon", 0)
    out = []
    for a in argv:
        name, pid = a.split("=", 1)
        todo, members = [int(pid)] if int(pid) in parent else [], []
        while todo:
            p = todo.pop()
            members.append(p)
            todo.extend(children.get(p, []))
        r = [vmrss(p) for p in members]
        out.append("%s:%d:%d:%d" % (name, sum(x[0] for x in r), len(members), sum(x[1] for x in r)))
    print(" ".join(out))


# ------------------------------------------------------------------ family: tcp
def section_tcp(out_dir):
    rows = read_tsv(os.path.join(out_dir, "tcp.tsv"))
    if not rows:
        return [], []
    scen, tests, by = [], [], {}
    for r in rows:
        if r["scenario"] not in scen:
            scen.append(r["scenario"])
        if r["test"] not in tests:
            tests.append(r["test"])
        by.setdefault((r["scenario"], r["test"]), []).append(r)
    nruns = max(len(v) for v in by.values())

    def gb(s, t):
        return [num(r["gbps"]) for r in by.get((s, t), [])]

    def mgb(s, t):
        return med(gb(s, t))

    def cpu_per_gb(s, t):
        v = []
        for r in by.get((s, t), []):
            c, g, w = num(r["relay_cpu_s"]), num(r["gbps"]), num(r["wall_s"])
            if c is not None and g and w:
                v.append(c / (g * w / 8.0))
        return v

    L = ["## TCP throughput (iperf3, loopback)", "",
         "Gbit/s = iperf3 receiver sum; median (min-max) over %d interleaved round(s). "
         "Relay CPU-s = CPU seconds used by the relay processes (all of them, both ends) during one test; "
         "core-s per GB = that CPU divided by the data moved; relay peak RSS = largest VmRSS sum of the relay "
         "processes sampled every 0.5 s during the test (fork-per-connection socat counts each child)." % nruns, ""]
    hdr = "| path |" + "".join(" %s Gbit/s |" % TEST_LABELS.get(t, t) for t in tests) + \
        "".join(" relay CPU-s (%s) |" % TEST_LABELS.get(t, t) for t in tests) + \
        "".join(" core-s per GB (%s) |" % TEST_LABELS.get(t, t) for t in tests) + \
        "".join(" relay peak RSS MiB (%s) |" % TEST_LABELS.get(t, t) for t in tests)
    L += [hdr, "|---" * (1 + 4 * len(tests)) + "|"]
    for s in scen:
        cells = [fmt_stat(gb(s, t), 2) for t in tests]
        cells += [fmt_stat([num(r["relay_cpu_s"]) for r in by.get((s, t), [])], 1) if s != "direct" else "-"
                  for t in tests]
        cells += [fmt_stat(cpu_per_gb(s, t), 2) if s != "direct" else "-" for t in tests]
        cells += [fmt_stat([num(r.get("relay_peak_rss_kb")) / 1024 if num(r.get("relay_peak_rss_kb")) else None
                            for r in by.get((s, t), [])], 1) if s != "direct" else "-" for t in tests]
        L.append("| %s | %s |" % (label(s), " | ".join(cells)))
    L.append("")
    if "mgrok" in scen:
        L += ["Ratios of medians (mgrok / peer; > 1 means mgrok is faster):", "",
              "| ratio |" + "".join(" %s |" % TEST_LABELS.get(t, t) for t in tests), "|---" * (1 + len(tests)) + "|"]
        for peer, name in (("socat2big", "mgrok / socat 2 hops 128 KiB"), ("direct", "mgrok / direct"),
                           ("ssh", "mgrok / ssh -R")):
            if peer in scen:
                cells = []
                for t in tests:
                    a, b = mgb("mgrok", t), mgb(peer, t)
                    cells.append(fmt(a / b, 2) if a is not None and b else "-")
                L.append("| %s | %s |" % (name, " | ".join(cells)))
        L.append("")
    errs = [r for r in rows if r.get("error")]
    if errs:
        L += ["Errors in tcp runs:", ""]
        L += ["- %s %s round %s: %s" % (r["scenario"], TEST_LABELS.get(r["test"], r["test"]), r["run"], r["error"])
              for r in errs]
        L.append("")
    noisy = [r for r in rows if (num(r.get("other_cpu_pct")) or 0) > 25]
    L.append("Runs where other processes on the machine used > 25 %% CPU during the measurement: %d of %d%s" % (
        len(noisy), len(rows), "" if not noisy else " (" + ", ".join(
            "%s/%s/r%s %s %%" % (r["scenario"], r["test"], r["run"], r["other_cpu_pct"]) for r in noisy) + ")"))
    L.append("")

    targets = []
    for t, name in (("iperf1", "TCP throughput, 1 stream >= socat 2 hops 128 KiB"),
                    ("iperfP8", "TCP throughput, 8 streams (-P 8) >= socat 2 hops 128 KiB")):
        if t not in tests:
            continue
        a, b = mgb("mgrok", t), mgb("socat2big", t)
        if "mgrok" not in scen or "socat2big" not in scen:
            targets.append((name, "not measured (mgrok and socat2big both needed)", None))
        elif a is None or b is None:
            targets.append((name, "mgrok %s vs socat %s Gbit/s (a run failed)" % (fmt(a), fmt(b)), False if a is None else None))
        else:
            targets.append((name, "mgrok %.2f vs socat %.2f Gbit/s (ratio %.2f)" % (a, b, a / b), a >= b))
    return L, targets


# ------------------------------------------------------------------ family: mem
def parse_snap(text):
    out = {}
    for part in (text or "").split():
        try:
            f = part.split(":")
            out[f[0]] = (int(f[1]), int(f[2]), int(f[3]) if len(f) > 3 else None)
        except ValueError:
            pass
    return out


def section_mem(out_dir):
    rows = read_tsv(os.path.join(out_dir, "mem.tsv"))
    if not rows:
        return [], []
    scen, by = [], {}
    for r in rows:
        if r["scenario"] not in scen:
            scen.append(r["scenario"])
        by.setdefault(r["scenario"], []).append(r)
    target = max(int(r["target_conns"] or 0) for r in rows)
    L = ["## Memory: idle and with %d idle proxied connections" % target, "",
         "VmRSS from /proc/PID/status (summed over each process and its children; RssAnon = its "
         "private anonymous part, the rest is mapped files such as shared libraries), KiB, median (min-max) over runs. "
         "idle = 2 s after the tunnel is up, before any traffic; held = %d connections opened by a client, "
         "each verified end to end (the service behind the tunnel counts accepted connections and the "
         "script waits until it reports %d), then 2 s settle; after = 1 s after the users closed them and the "
         "service saw every connection close. Per connection = (held sum - idle sum) / %d." % (target, target, target), "",
         "| tunnel | process | idle RSS KiB | idle RssAnon KiB | held RSS KiB | held RssAnon KiB | after close KiB | processes (idle / held) |",
         "|---|---|---|---|---|---|---|---|"]
    per_conn, idle_by = {}, {}
    for s in scen:
        names = []
        for r in by[s]:
            for n in parse_snap(r["idle"]):
                if n not in names:
                    names.append(n)
        for n in names:
            iv = [parse_snap(r["idle"]).get(n, (None, None, None)) for r in by[s]]
            hv = [parse_snap(r["held"]).get(n, (None, None, None)) for r in by[s]]
            av = [parse_snap(r["after_close"]).get(n, (None, None, None)) for r in by[s]]
            idle_by[(s, n)] = [x[0] for x in iv]
            L.append("| %s | %s | %s | %s | %s | %s | %s | %s / %s |" % (
                label(s), n, fmt_stat([x[0] for x in iv], 0), fmt_stat([x[2] for x in iv], 0),
                fmt_stat([x[0] for x in hv], 0), fmt_stat([x[2] for x in hv], 0),
                fmt_stat([x[0] for x in av], 0), fmt(med([x[1] for x in iv]), 0), fmt(med([x[1] for x in hv]), 0)))
        pc = []
        for r in by[s]:
            ok = int(r["backend_held"] or 0) >= int(r["target_conns"] or 1) and not r.get("note")
            i, h = parse_snap(r["idle"]), parse_snap(r["held"])
            if ok and i and h:
                pc.append((sum(v[0] for v in h.values()) - sum(v[0] for v in i.values())) / int(r["target_conns"]))
            else:
                pc.append(None)
        per_conn[s] = pc
    L += ["", "| tunnel | idle RSS sum KiB | held RSS sum KiB | KiB per idle proxied connection | "
          "connections held end to end | all closed end to end after release |", "|---|---|---|---|---|---|"]
    for s in scen:
        isum = [sum(v[0] for v in parse_snap(r["idle"]).values()) or None for r in by[s]]
        hsum = [sum(v[0] for v in parse_snap(r["held"]).values()) or None for r in by[s]]
        L.append("| %s | %s | %s | %s | %s | %s |" % (
            label(s), fmt_stat(isum, 0), fmt_stat(hsum, 0), fmt_stat(per_conn[s], 2),
            ", ".join("%s/%s" % (r["backend_held"] or "0", r["target_conns"]) for r in by[s]),
            ", ".join(r["closed"] or "-" for r in by[s])))
    notes = [r for r in rows if r.get("note")]
    if notes:
        L += ["", "Notes:", ""] + ["- %s run %s: %s (client status: %s)" % (r["scenario"], r["run"], r["note"],
                                                                           r.get("client_status", "")) for r in notes]
    L.append("")

    targets = []
    name = "RSS per idle proxied connection <= %g KiB (server + client)" % PER_CONN_LIMIT_KB
    if "mgrok" not in by:
        targets.append((name, "not measured", None))
    else:
        m = med(per_conn["mgrok"])
        if m is None:
            targets.append((name, "no complete run (connections not all established end to end)", False))
        else:
            targets.append((name, "%.2f KiB per connection" % m, m <= PER_CONN_LIMIT_KB))
        for proc in ("server", "client"):
            n = "idle RSS of the mgrok %s <= 4 MiB" % proc
            v = med(idle_by.get(("mgrok", proc), []))
            targets.append((n, "not measured" if v is None else "%.0f KiB (%.2f MiB)" % (v, v / 1024),
                            None if v is None else v <= IDLE_RSS_LIMIT_KB))
    return L, targets



# ------------------------------------------------------------------ rows: udp, conn, http
def _mon(mon_path):
    try:
        with open(mon_path) as f:
            mon = json.loads(f.read() or "{}")
    except (OSError, ValueError):
        mon = {}
    roots = mon.get("roots", {})
    cpu = sum(v.get("cpu_s") or 0 for v in roots.values()) if roots else None
    oc = mon.get("other_cpu_pct")
    return ("" if cpu is None else fmt(cpu, 2)), ("" if oc is None else fmt(num(oc), 1))


def udprow(argv):
    """scenario test run target_bps len iperf_json procmon_json note"""
    scen, test, run, bps, ln, path, mon_path, note = argv[:8]
    rbuf = argv[8] if len(argv) > 8 else ""
    ln = int(ln)
    err, sent_g, recv_g, lost, sent_pps, recv_pps = [], None, None, None, None, None
    try:
        with open(path) as f:
            j = json.load(f)
        if j.get("error"):
            err.append(j["error"])
        end = j.get("end", {})
        s, r, sm = end.get("sum_sent") or {}, end.get("sum_received") or {}, end.get("sum") or {}
        if s.get("seconds"):
            sent_g = s["bits_per_second"] / 1e9
            sent_pps = s["bytes"] / ln / s["seconds"]
        if r.get("seconds"):
            recv_g = r["bits_per_second"] / 1e9
            recv_pps = r["bytes"] / ln / r["seconds"]
        if sm.get("lost_percent") is not None and (r.get("seconds") or sm.get("packets")):
            lost = sm["lost_percent"]
    except (OSError, ValueError):
        err.append("no iperf3 json")
    cpu, oc = _mon(mon_path)
    if note.strip():
        err.append(note.strip())
    if lost is None and not err:
        err.append("no loss figure")
    print("\t".join([scen, test, run, fmt(int(bps) / 1e6, 1), str(ln),
                     "" if sent_g is None else fmt(sent_g, 3), "" if recv_g is None else fmt(recv_g, 3),
                     "" if lost is None else fmt(lost, 3), "" if sent_pps is None else "%.0f" % sent_pps,
                     "" if recv_pps is None else "%.0f" % recv_pps, cpu, oc,
                     "; ".join(err).replace("\t", " "), rbuf]))


def connrow(argv):
    """scenario test run connrate_json procmon_json note"""
    scen, test, run, path, mon_path, note = argv
    err, j = [], {}
    try:
        with open(path) as f:
            j = json.loads(f.read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        err.append("no connrate output")
    if j.get("failed"):
        err.append("%d failed: %s" % (j["failed"], json.dumps(j.get("errors", {}))))
    cpu, oc = _mon(mon_path)
    if note.strip():
        err.append(note.strip())
    g = lambda k: "" if j.get(k) is None else str(j[k])
    print("\t".join([scen, test, run, g("conc"), g("ok"), g("failed"), g("seconds"), g("conn_per_s"),
                     g("p50_ms"), g("p99_ms"), cpu, oc, "; ".join(err).replace("\t", " ")]))


def _us(txt):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", txt.strip())
    if not m:
        return None
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6, "m": 6e7}[m.group(2)]


def wrkrow(argv):
    """scenario test run wrk_text procmon_json note"""
    scen, test, run, path, mon_path, note = argv
    err, rps, p50, p99, sock, non2 = [], None, None, None, "", ""
    try:
        text = open(path).read()
    except OSError:
        text = ""
    m = re.search(r"Requests/sec:\s*([\d.]+)", text)
    if m:
        rps = float(m.group(1))
    else:
        err.append("no wrk output")
    m = re.search(r"^\s*50%\s+(\S+)", text, re.M)
    p50 = _us(m.group(1)) if m else None
    m = re.search(r"^\s*99%\s+(\S+)", text, re.M)
    p99 = _us(m.group(1)) if m else None
    m = re.search(r"Socket errors:\s*(.*)", text)
    if m:
        sock = m.group(1).strip()
    m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    if m:
        non2 = m.group(1)
        err.append("%s non-2xx responses" % non2)
    if sock:
        err.append("socket errors: " + sock)
    cpu, oc = _mon(mon_path)
    if note.strip():
        err.append(note.strip())
    print("\t".join([scen, test, run, "" if rps is None else "%.0f" % rps, "" if p50 is None else "%.0f" % p50,
                     "" if p99 is None else "%.0f" % p99, sock, non2, cpu, oc, "; ".join(err).replace("\t", " ")]))


def _group(rows):
    scen, tests, by = [], [], {}
    for r in rows:
        if r["scenario"] not in scen:
            scen.append(r["scenario"])
        if r["test"] not in tests:
            tests.append(r["test"])
        by.setdefault((r["scenario"], r["test"]), []).append(r)
    return scen, tests, by


def _errors(rows, title, tl=lambda t: t):
    errs = [r for r in rows if r.get("error")]
    if not errs:
        return []
    return ["%s:" % title, ""] + ["- %s %s round %s: %s" % (label(r["scenario"]), tl(r["test"]), r["run"], r["error"])
                                  for r in errs] + [""]


def _noisy(rows):
    noisy = [r for r in rows if (num(r.get("other_cpu_pct")) or 0) > 25]
    return ["Measured runs where other processes on the machine used > 25 %% CPU: %d of %d%s" % (
        len(noisy), len([r for r in rows if r.get("other_cpu_pct")]), "" if not noisy else " (" + ", ".join(
            "%s/%s/r%s %s %%" % (r["scenario"], r["test"], r["run"], r["other_cpu_pct"]) for r in noisy) + ")"), ""]


def _ratio(a, b):
    return fmt(a / b, 2) if a is not None and b else "-"


# ------------------------------------------------------------------ family: udp
def section_udp(out_dir):
    rows = read_tsv(os.path.join(out_dir, "udp.tsv"))
    if not rows:
        return [], []
    scen, tests, by = _group(rows)
    nruns = max(len(set(r["run"] for r in rows if r["scenario"] == s)) for s in scen)
    info = dict(l.split(": ", 1) for l in open(os.path.join(out_dir, "info.txt")).read().splitlines() if ": " in l) \
        if os.path.exists(os.path.join(out_dir, "info.txt")) else {}
    knobs = dict(kv.split("=", 1) for kv in re.findall(r'(\w+=(?:"[^"]*"|\S+))', info.get("knobs_udp", "")))
    opts = knobs.get("UDP_IPERF_OPTS", '"-w 4M"').strip('"')
    pps = knobs.get("UDP_PPS", "200000")

    def col(s, t, k):
        return [num(r.get(k)) for r in by.get((s, t), [])]

    # per (scenario, run): highest offered rate passing (< 1 % loss) among the 1 Gbit/s test and the probes
    best, first_fail, best_recv = {}, {}, {}
    for r in rows:
        if r["test"] not in ("u1g", "probe"):
            continue
        key = (r["scenario"], r["run"])
        tgt, lost = num(r["target_mbps"]), num(r["lost_pct"])
        if tgt is None:
            continue
        ok = lost is not None and lost < 1 and not r.get("error")
        best.setdefault(key, 0.0)
        if ok and tgt > best[key]:
            best[key], best_recv[key] = tgt, num(r["recv_gbps"])
        if not ok and (key not in first_fail or tgt < first_fail[key]):
            first_fail[key] = tgt

    L = ["## UDP (iperf3 -u, loopback)", "",
         "Same iperf3 options on every path: `iperf3 -u -l LEN -b RATE %s` (-w sets the socket buffers of iperf3's "
         "client and server to 4 MiB; mgrok's public UDP socket asks for 4 MiB too, the socat relays get rcvbuf=4194304). "
         "iperf3's TCP control connection goes through a TCP relay on the same port number (socat: a second two-hop "
         "chain; mgrok: `mgrok tcp` beside `mgrok udp`, two clients with their own --client-id). "
         "Loss = iperf3's lost_percent (datagrams the receiver never saw); delivered = receiver Gbit/s; sent = what the "
         "iperf3 client managed to send (on this 2-core machine it can fall short of the offered rate); kernel rcvbuf "
         "drops = change of the system-wide UDP RcvbufErrors counter (/proc/net/snmp) over the test: datagrams the kernel "
         "discarded because a receiving socket (iperf3's, a relay's, mgrok's) was full; '-' when not recorded. "
         "Median (min-max) over %d interleaved round(s)." % (opts, nruns), "",
         "**1400-byte datagrams at 1 Gbit/s offered**, and the highest offered rate with < 1 % loss (1 Gbit/s, then "
         "steps of 2, 3, 4 Gbit/s while loss stays < 1 %, then bisection between the last passing and the first "
         "failing rate; probes of a few seconds each, so this column is coarse):", "",
         "| path | loss % at 1 Gbit/s | delivered Gbit/s | sent Gbit/s | kernel rcvbuf drops at 1 Gbit/s | relay CPU-s | highest offered Gbit/s with < 1 % loss (per round) | delivered Gbit/s there | first failing offered Gbit/s |",
         "|---|---|---|---|---|---|---|---|---|"]
    for s in scen:
        keys = sorted(k for k in best if k[0] == s)
        L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            label(s), fmt_stat(col(s, "u1g", "lost_pct"), 2), fmt_stat(col(s, "u1g", "recv_gbps"), 3),
            fmt_stat(col(s, "u1g", "sent_gbps"), 3), fmt_stat(col(s, "u1g", "kernel_rcvbuf_drops"), 0),
            fmt_stat(col(s, "u1g", "relay_cpu_s"), 1) if s != "direct" else "-",
            ("%s (%s)" % (fmt(med([best[k] / 1000 for k in keys]), 2),
                          ", ".join(fmt(best[k] / 1000, 2) if best[k] else "<%s" % fmt(first_fail.get(k, 0) / 1000, 2)
                                    for k in keys))) if keys else "-",
            fmt_stat([best_recv.get(k) for k in keys], 3),
            ", ".join(fmt(first_fail[k] / 1000, 2) if k in first_fail else "none" for k in keys) or "-"))
    L += ["", "**64-byte datagrams at %s packets/s offered** (`-l 64 -b %d`), DUR/2 seconds:" % (pps, int(pps) * 512), "",
          "| path | sent pps | delivered pps | loss % | kernel rcvbuf drops | relay CPU-s |", "|---|---|---|---|---|---|"]
    for s in scen:
        L.append("| %s | %s | %s | %s | %s | %s |" % (
            label(s), fmt_stat(col(s, "pps64", "sent_pps"), 0), fmt_stat(col(s, "pps64", "recv_pps"), 0),
            fmt_stat(col(s, "pps64", "lost_pct"), 2), fmt_stat(col(s, "pps64", "kernel_rcvbuf_drops"), 0),
            fmt_stat(col(s, "pps64", "relay_cpu_s"), 1) if s != "direct" else "-"))
    L.append("")
    if "mgroku" in scen:
        L += ["Ratios of medians (mgrok / peer):", "", "| ratio | delivered Gbit/s at 1 Gbit/s | highest rate < 1 % loss | 64-byte delivered pps |",
              "|---|---|---|---|"]
        for peer in ("socat2u", "direct"):
            if peer in scen:
                mb = lambda s: med([best[k] / 1000 for k in best if k[0] == s])
                L.append("| mgrok / %s | %s | %s | %s |" % (
                    label(peer), _ratio(med(col("mgroku", "u1g", "recv_gbps")), med(col(peer, "u1g", "recv_gbps"))),
                    _ratio(mb("mgroku"), mb(peer)),
                    _ratio(med(col("mgroku", "pps64", "recv_pps")), med(col(peer, "pps64", "recv_pps")))))
        L.append("")
    cnt = read_tsv(os.path.join(out_dir, "udp_counters.tsv")) if os.path.exists(os.path.join(out_dir, "udp_counters.tsv")) else []
    if not cnt and os.path.exists(os.path.join(out_dir, "udp_counters.tsv")):
        pass
    cpath = os.path.join(out_dir, "udp_counters.tsv")
    if os.path.exists(cpath):
        L += ["mgrok's own UDP counters per round (all tests of the round; from the summaries server and clients log "
              "on SIGTERM). The server's `dropped` on the way in counts datagrams it read from the public socket but "
              "could not queue: no room left in the flow's stream window (16 MiB for a UDP flow), the session's output "
              "past its drop threshold (4 MiB for a flow with over 64 KiB in flight, 6 MiB for others; "
              "mux_stream_send_datagram), or no client session (src/server/udp.c udp_on_read); the client's "
              "`dropped` on the way in counts datagrams its sendmmsg to the local service did not take. Datagrams the kernel discarded at a full socket are in "
              "neither (see the kernel rcvbuf drops column).", ""]
        for line in open(cpath).read().splitlines():
            f = line.split("\t")
            if len(f) >= 4:
                L.append("- round %s: server `%s`; udp client `%s`" % (f[1], f[2], f[3]))
        L.append("")
    L += _errors(rows, "Errors in udp runs")
    L += _noisy([r for r in rows if r["test"] != "probe"])

    targets = []
    name = "UDP: at 1 Gbit/s offered (1400-byte datagrams), under 1 % loss through mgrok"
    if "mgroku" not in scen:
        targets.append((name, "not measured", None))
    else:
        v = med(col("mgroku", "u1g", "lost_pct"))
        if v is None:
            targets.append((name, "no complete run", False))
        else:
            targets.append((name, "%.2f %% loss, %s Gbit/s delivered (direct %s %% loss)" % (
                v, fmt(med(col("mgroku", "u1g", "recv_gbps")), 3), fmt(med(col("direct", "u1g", "lost_pct")), 2)), v < 1))
    return L, targets


# ------------------------------------------------------------------ family: tls
def section_tls(out_dir):
    rows = read_tsv(os.path.join(out_dir, "tls.tsv"))
    crows = read_tsv(os.path.join(out_dir, "conn.tsv"))
    if not rows and not crows:
        return [], []
    L, targets = ["## TLS tunnels", ""], []
    if rows:
        scen, tests, by = _group(rows)
        nruns = max(len(v) for v in by.values())

        def gb(s, t):
            return [num(r["gbps"]) for r in by.get((s, t), [])]

        def cpu_per_gb(s, t):
            v = []
            for r in by.get((s, t), []):
                c, g, w = num(r["relay_cpu_s"]), num(r["gbps"]), num(r["wall_s"])
                if c is not None and g and w:
                    v.append(c / (g * w / 8.0))
            return v
        L += ["Throughput: iperf3 through each encrypted tunnel, Gbit/s = receiver sum, median (min-max) over %d "
              "interleaved round(s); core-s per GB = CPU of all relay processes (both ends) per GB moved." % nruns, "",
              "| path |" + "".join(" %s Gbit/s |" % TEST_LABELS.get(t, t) for t in tests) +
              "".join(" core-s per GB (%s) |" % TEST_LABELS.get(t, t) for t in tests),
              "|---" * (1 + 2 * len(tests)) + "|"]
        for s in scen:
            L.append("| %s | %s |" % (label(s), " | ".join([fmt_stat(gb(s, t), 2) for t in tests] +
                                                           [fmt_stat(cpu_per_gb(s, t), 2) for t in tests])))
        L.append("")
        if "mgroktls" in scen:
            L += ["| ratio |" + "".join(" %s |" % TEST_LABELS.get(t, t) for t in tests), "|---" * (1 + len(tests)) + "|"]
            for peer in ("stunnel", "ssh"):
                if peer in scen:
                    L.append("| mgrok --tls / %s | %s |" % (label(peer), " | ".join(
                        _ratio(med(gb("mgroktls", t)), med(gb(peer, t))) for t in tests)))
            L.append("")
        L += _errors(rows, "Errors in TLS throughput runs", lambda t: TEST_LABELS.get(t, t))
        L += _noisy(rows)
        name = "TLS: single-stream throughput >= 1.5x the stunnel pair"
        a, b = med(gb("mgroktls", "iperf1")), med(gb("stunnel", "iperf1"))
        if "mgroktls" not in scen or "stunnel" not in scen or "iperf1" not in tests:
            targets.append((name, "not measured", None))
        elif a is None or b is None:
            targets.append((name, "mgrok %s vs stunnel %s Gbit/s (a run failed)" % (fmt(a), fmt(b)), False if a is None else None))
        else:
            targets.append((name, "mgrok --tls %.2f vs stunnel %.2f Gbit/s (ratio %.2f)" % (a, b, a / b), a >= 1.5 * b))
    if crows:
        scen, tests, by = _group(crows)
        col = lambda s, t, k: [num(r.get(k)) for r in by.get((s, t), [])]
        L += ["New TLS connections per second: `bench/connrate.py client` opens connections to the tunnel's local "
              "listener (N at a time, up to %s connections or DUR seconds), each counted when the service behind the "
              "tunnel has sent its one byte back, then closed. Every connection is a new TLS connection with a full "
              "handshake (ECDSA P-256 certificates from `mgrok certs`, client certificate verified): "
              "through `mgrok connect --listen` to the server's stream proxy (`--stream-allow`), or through the stunnel "
              "pair with `sessionResume = no`. Latency = connect until the byte arrived. Relay CPU-s = CPU of all relay "
              "processes during the test." % (re.findall(r"CONN_COUNT=(\d+)", open(os.path.join(out_dir, "info.txt")).read()
                                              if os.path.exists(os.path.join(out_dir, "info.txt")) else "") or ["?"])[0], "",
              "| path | test | connections/s | p50 ms | p99 ms | completed / failed | relay CPU-s | relay CPU ms per connection |",
              "|---|---|---|---|---|---|---|---|"]
        for t in tests:
            for s in scen:
                rs = by.get((s, t), [])
                if not rs:
                    continue
                per = [num(r["relay_cpu_s"]) * 1000 / num(r["ok"]) if num(r.get("relay_cpu_s")) is not None and num(r.get("ok")) else None
                       for r in rs]
                L.append("| %s | %d at a time | %s | %s | %s | %s | %s | %s |" % (
                    label(s), int(num(rs[0].get("conc")) or 0), fmt_stat(col(s, t, "conn_per_s"), 0),
                    fmt_stat(col(s, t, "p50_ms"), 2), fmt_stat(col(s, t, "p99_ms"), 2),
                    ", ".join("%s/%s" % (r.get("ok") or "0", r.get("failed") or "0") for r in rs),
                    fmt_stat(col(s, t, "relay_cpu_s"), 1), fmt_stat(per, 2)))
        L.append("")
        if "mgroktls" in scen and "stunnel" in scen:
            L += ["Ratio mgrok connect / stunnel, connections/s: " + ", ".join(
                "%s %s" % (t, _ratio(med(col("mgroktls", t, "conn_per_s")), med(col("stunnel", t, "conn_per_s")))) for t in tests), ""]
        L += _errors(crows, "Errors in new-connection runs")
        L += _noisy(crows)
    return L, targets


# ------------------------------------------------------------------ family: http
def section_http(out_dir):
    rows = read_tsv(os.path.join(out_dir, "http.tsv"))
    if not rows:
        return [], []
    scen, tests, by = _group(rows)
    nruns = max(len(v) for v in by.values())
    col = lambda s, t, k: [num(r.get(k)) for r in by.get((s, t), [])]
    tl = {"wrk64": "wrk -t2 -c64", "wrk1": "wrk -t1 -c1", "wrk1cpu0": "wrk -t1 -c1 on CPU 0"}
    pp = {}
    ppath = os.path.join(out_dir, "pingpong.txt")
    if os.path.exists(ppath):
        for line in open(ppath):
            f = line.split()
            if len(f) >= 2:
                pp[f[0]] = dict(kv.split("=", 1) for kv in f[1:] if "=" in kv)
    L = ["## HTTP (wrk, nginx 100-byte page)", "",
         "`wrk -t2 -c64 -d DUR --latency` and `wrk -t1 -c1 -d DUR --latency` on a 100-byte file served by nginx "
         "(keep-alive). The vhost path sends `-H \"Host: b.tun.test\"` to the server's --http-addr (mgrok parses and "
         "routes every request by its Host, adds X-Forwarded-*); `mgrok tcp` forwards bytes. Median (min-max) over %d "
         "interleaved round(s); latency in microseconds from wrk's distribution." % nruns, ""]
    if "wrk1cpu0" in tests:
        L += ["\"on CPU 0\": the same wrk -t1 -c1 with wrk, nginx and every relay process pinned to CPU 0 (taskset), "
              "for every path alike. On this VM a wake-up that crosses CPUs costs tens to hundreds of microseconds "
              "(guest halt polling is off), and one request through a relay chain is a sequence of such wake-ups, so "
              "the unpinned figure is mostly the machine's; pinned, it is the relays' own cost.", ""]
    if pp:
        L += ["Machine floor (`bench/pingpong.py`, Python, 20000 round trips of 1 byte between two processes over "
              "loopback TCP): p50 %s µs (p99 %s) on any CPUs, %s µs (p99 %s) with both on CPU 0." % (
                  pp.get("any", {}).get("p50_us", "?"), pp.get("any", {}).get("p99_us", "?"),
                  pp.get("cpu0", {}).get("p50_us", "?"), pp.get("cpu0", {}).get("p99_us", "?")), ""]
    L += [
         "| path |" + "".join(" %s req/s | %s p50 µs | %s p99 µs |" % (tl.get(t, t), tl.get(t, t), tl.get(t, t)) for t in tests) +
         "".join(" relay CPU-s (%s) |" % tl.get(t, t) for t in tests),
         "|---" * (1 + 4 * len(tests)) + "|"]
    for s in scen:
        cells = []
        for t in tests:
            cells += [fmt_stat(col(s, t, "req_s"), 0), fmt_stat(col(s, t, "p50_us"), 0), fmt_stat(col(s, t, "p99_us"), 0)]
        cells += [fmt_stat(col(s, t, "relay_cpu_s"), 1) if s != "direct" else "-" for t in tests]
        L.append("| %s | %s |" % (label(s), " | ".join(cells)))
    L.append("")
    if "mgrokhttp" in scen:
        L += ["| ratio (req/s) |" + "".join(" %s |" % tl.get(t, t) for t in tests), "|---" * (1 + len(tests)) + "|"]
        for a, b in (("mgrokhttp", "socat2"), ("mgrokhttp", "mgrok"), ("mgrokhttp", "direct"), ("mgrok", "socat2"),
                     ("mgrokhttpbp", "mgrokhttp"), ("mgrokhttpbp", "direct")):
            if a in scen and b in scen:
                L.append("| %s / %s | %s |" % (label(a), label(b), " | ".join(
                    _ratio(med(col(a, t, "req_s")), med(col(b, t, "req_s"))) for t in tests)))
        L.append("")
    L += _errors(rows, "Errors in http runs", lambda t: tl.get(t, t))
    L += _noisy(rows)
    targets = []
    name = "HTTP: at 64 connections, the vhost >= 1.5x the two-socat-hop chain (req/s)"
    a, b = med(col("mgrokhttp", "wrk64", "req_s")), med(col("socat2", "wrk64", "req_s"))
    if "mgrokhttp" not in scen or "socat2" not in scen or "wrk64" not in tests:
        targets.append((name, "not measured", None))
    elif a is None or b is None:
        targets.append((name, "vhost %s vs socat %s req/s (a run failed)" % (fmt(a, 0), fmt(b, 0)), False if a is None else None))
    else:
        targets.append((name, "vhost %.0f vs socat 2 hops %.0f req/s (ratio %.2f)" % (a, b, a / b), a >= 1.5 * b))
    name = "HTTP: at 1 connection, vhost p50 <= 60 µs"
    v = med(col("mgrokhttp", "wrk1", "p50_us"))
    if "mgrokhttp" not in scen or "wrk1" not in tests:
        targets.append((name, "not measured", None))
    else:
        txt = "not measured (runs failed)" if v is None else "p50 %.0f µs (mgrok tcp %s, socat 2 hops %s, direct %s µs)" % (
            v, fmt(med(col("mgrok", "wrk1", "p50_us")), 0), fmt(med(col("socat2", "wrk1", "p50_us")), 0),
            fmt(med(col("direct", "wrk1", "p50_us")), 0))
        if "mgrokhttpbp" in scen:
            txt += "; vhost with --busy-poll: %s µs" % fmt(med(col("mgrokhttpbp", "wrk1", "p50_us")), 0)
        if "wrk1cpu0" in tests:
            txt += "; all on CPU 0: vhost %s, mgrok tcp %s, socat 2 hops %s, direct %s µs" % tuple(
                fmt(med(col(x, "wrk1cpu0", "p50_us")), 0) for x in ("mgrokhttp", "mgrok", "socat2", "direct"))
        targets.append((name, txt, None if v is None else v <= 60))
    return L, targets


FAMILIES = [("tcp", section_tcp), ("mem", section_mem), ("udp", section_udp), ("tls", section_tls), ("http", section_http)]


def md(argv):
    out_dir = argv[0]

    def read(name):
        p = os.path.join(out_dir, name)
        return open(p).read().strip() if os.path.exists(p) else ""
    info = dict(l.split(": ", 1) for l in read("info.txt").splitlines() if ": " in l)
    sections, targets = [], []
    for _, fn in FAMILIES:
        L, T = fn(out_dir)
        sections += L
        targets += T
    out = ["# mgrok benchmark results", "",
           "Generated by `bench/run.sh` (do not edit by hand; rerun to refresh). Everything runs on 127.0.0.1 on one "
           "machine; loopback figures drift by about 30 % between runs, so compare rows within this one run.", "",
           "Command: `%s`" % info.get("command", "bench/run.sh"), "",
           "## Targets", "",
           "| target | measured | status |", "|---|---|---|"]
    for name, meas, met in targets:
        out.append("| %s | %s | %s |" % (name, meas, {True: "met", False: "**not met**", None: "not measured"}[met]))
    out += ["", "## Machine", ""]
    for k in sorted(k for k in info if k.startswith("kept_")):
        out.append("- section %s: %s" % (k[5:], info[k]))
    for k in ("date", "nproc", "cpu", "kernel", "memory", "mgrok", "tools", "tools2", "knobs", "knobs_udp", "knobs_tls", "knobs_http", "kept"):
        if k in info:
            out.append("- %s: %s" % (k, info[k]))
    out.append("")
    out += sections
    scen = read("scenarios.txt")
    if scen:
        out += ["## Paths", ""] + ["- " + l for l in scen.splitlines()] + [""]
    probs = read("problems.txt")
    out += ["## Problems seen during the run", ""]
    out += (["- " + l for l in probs.splitlines()] if probs else ["none"]) + [""]
    out += ["Raw outputs (iperf3 JSON, procmon JSON, process logs) were in `%s`." % out_dir, ""]
    print("\n".join(out))


if __name__ == "__main__":
    CMDS = {"tcprow": tcprow, "md": md, "snap": snap, "udprow": udprow, "connrow": connrow, "wrkrow": wrkrow}
    if len(sys.argv) < 2 or sys.argv[1] not in CMDS:
        sys.exit(__doc__)
    CMDS[sys.argv[1]](sys.argv[2:])
