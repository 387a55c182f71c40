#!/usr/bin/env python3
"""report.py - rows and RESULTS.md for bench/run.sh.

  report.py tcprow SCENARIO TEST RUN IPERF_JSON PROCMON_JSON NOTE  -> one tcp.tsv row
  report.py md OUT_DIR                                            -> RESULTS.md on stdout
  report.py snap NAME=PID...                                      -> VmRSS (KiB) per process tree

RESULTS.md is built from whatever family TSVs exist in OUT_DIR (tcp.tsv, mem.tsv, ...):
each family has one section function returning (markdown lines, target rows); target
rows are (target, measured, met) with met True/False/None (None = not measured) and are
computed here from the medians, never written by hand. To add a family (UDP, TLS,
HTTP), write its rows from run.sh and add a function to FAMILIES below.
"""
import json
import os
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


FAMILIES = [("tcp", section_tcp), ("mem", section_mem)]


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
    for k in ("date", "nproc", "cpu", "kernel", "memory", "mgrok", "tools", "knobs"):
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
    CMDS = {"tcprow": tcprow, "md": md, "snap": snap}
    if len(sys.argv) < 2 or sys.argv[1] not in CMDS:
        sys.exit(__doc__)
    CMDS[sys.argv[1]](sys.argv[2:])
