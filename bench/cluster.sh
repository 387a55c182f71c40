#!/usr/bin/env bash
# bench/cluster.sh - what forwarding through another node of a cluster costs:
# a TCP tunnel on node 1 reached directly (127.0.0.2) and through node 2
# (127.0.0.3, forwarded over a node link to node 1), and directly through
# one socat hop (127.0.0.4) for the latency comparison, side by side in one
# run, on 127.0.0.0/8 only.
#
#   bench/cluster.sh                             # ROUNDS=3 DUR=10 PINGS=2000 CONNS=500
#   ROUNDS=1 DUR=3 RESULTS=none bench/cluster.sh # a quick look
#
# One redis-server, two nodes (`mgrok server --cluster`, node links with the
# cluster secret), three local services (iperf3's server, bench/rtt.py's
# echo, bench/connrate.py's one-byte service), three `mgrok tcp` agents on
# node 1, and `socat TCP-LISTEN:P,bind=127.0.0.4,reuseaddr,fork
# TCP:127.0.0.2:P` in front of the direct node. Each round measures, the
# order of the paths changing every round (so drift and warm-up hit all
# alike):
#   - single-stream throughput: iperf3 -c -P 1 for DUR s, direct and
#     forwarded, both directions (upload, then -R download), with the CPU
#     node 1, node 2 and the agent use meanwhile;
#   - latency at one connection (bench/rtt.py held): PINGS round trips of
#     64 bytes over one held connection to the echo service: direct,
#     forwarded, direct + socat hop; p50 and p99;
#   - new-connection latency (bench/rtt.py conn): CONNS times connect + one
#     64-byte round trip + close, on the same three paths.
# Then the Redis operations on the hot path, from node 2's /metrics
# (mgrok_cluster_route_lookups_total, mgrok_cluster_route_cache_hits_total,
# mgrok_cluster_redis_commands_total): WINDOW s without visitors (the
# heartbeat's and the route SCAN's commands), then new connections through
# node 2 (connrate.py, 4 at once) for WINDOW s or COUNT connections,
# whichever comes first; node 1's commands beside them.
# Targets (issue 16): forwarded/direct throughput >= 0.6; the p50 latency
# forwarding adds <= what one socat hop adds; no Redis command per visitor
# of a cached route.
# Env: ROUNDS (3) DUR (10) PINGS (2000) CONNS (500) COUNT (20000) WINDOW (10)
# BASE_PORT (26700; uses BASE_PORT..+19 on 127.0.0.1-4) QUIET_WAIT (120:
# seconds to wait for a 1-min load average below 1.5 before measuring)
# MGROK (build/mgrok) OUT (a temporary directory, kept with KEEP=1) RESULTS
# (bench/RESULTS.md: its "cluster" section is replaced by this run's; "none"
# writes nothing; bench/run.sh keeps the section when it rewrites the file)
# Needs redis-server, iperf3, socat, python3 (scripts/deps.sh installs them).
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DUR=${DUR:-10}
PINGS=${PINGS:-2000}
CONNS=${CONNS:-500}
COUNT=${COUNT:-20000}
WINDOW=${WINDOW:-10}
QUIET_WAIT=${QUIET_WAIT:-120}
BASE_PORT=${BASE_PORT:-26700}
HERE=$(cd "$(dirname "$0")" && pwd)
MGROK=${MGROK:-$HERE/../build/mgrok}
N1=127.0.0.2 N2=127.0.0.3 HOP=127.0.0.4
P_CTL1=$BASE_PORT P_CTL2=$((BASE_PORT + 1)) P_REDIS=$((BASE_PORT + 2)) P_LINK=$((BASE_PORT + 3))
P_ADM1=$((BASE_PORT + 4)) P_ADM2=$((BASE_PORT + 5))
P_IPERF=$((BASE_PORT + 6)) P_ECHO=$((BASE_PORT + 7)) P_CONN=$((BASE_PORT + 8))
P_T_IPERF=$((BASE_PORT + 10)) P_T_ECHO=$((BASE_PORT + 11)) P_T_CONN=$((BASE_PORT + 12))
TOKEN=bench-cluster-token
SECRET=bench-cluster-secret-0123456789
W=${OUT:-$(mktemp -d /tmp/mgrok-cluster-bench.XXXXXX)}
mkdir -p "$W"
PIDS=()
declare -A PIDOF
CMDLINE="ROUNDS=$ROUNDS DUR=$DUR PINGS=$PINGS CONNS=$CONNS COUNT=$COUNT WINDOW=$WINDOW bench/cluster.sh"

die() { echo "cluster.sh: $*" >&2; exit 1; }
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        pkill -TERM -P "$p" 2>/dev/null || true # socat's forked children
        kill "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    [ "${KEEP:-0}" = 1 ] || rm -rf "$W"
}
trap cleanup EXIT

for t in redis-server iperf3 socat python3; do
    command -v "$t" >/dev/null 2>&1 || die "$t is missing (scripts/deps.sh installs it)"
done
[ -x "$MGROK" ] || die "no mgrok binary at $MGROK (run make)"

wait_port() { # host port
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
        sleep 0.1
    done
    die "nothing listens on $1:$2"
}
# free HOST PORT...: die if something listens there already (another run)
free() {
    local h=$1 p
    shift
    for p in "$@"; do
        ! (exec 3<>"/dev/tcp/$h/$p") 2>/dev/null || die "$h:$p is in use (another run? set BASE_PORT)"
    done
}
# quiet: wait (at most QUIET_WAIT s) for the 1-min load average to drop below 1.5
quiet() {
    local i
    for i in $(seq 0 5 "$QUIET_WAIT"); do
        awk '{ exit !($1 < 1.5) }' /proc/loadavg && return 0
        [ "$i" = 0 ] && echo "cluster.sh: load $(cut -d' ' -f1 /proc/loadavg), waiting (at most ${QUIET_WAIT}s)" >&2
        sleep 5
    done
    echo "cluster.sh: load still $(cut -d' ' -f1 /proc/loadavg); measuring anyway" >&2
}

# ---------------------------------------------------------------- setup
free 127.0.0.1 "$P_CTL1" "$P_CTL2" "$P_REDIS" "$P_ADM1" "$P_ADM2" "$P_IPERF" "$P_ECHO" "$P_CONN"
for h in "$N1" "$N2" "$HOP"; do free "$h" "$P_LINK" "$P_T_IPERF" "$P_T_ECHO" "$P_T_CONN"; done
redis-server --port "$P_REDIS" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
    >"$W/redis.log" 2>&1 &
PIDS+=($!)
wait_port 127.0.0.1 "$P_REDIS"

# node NAME ADDR CTL ADMIN
node() {
    "$MGROK" server --addr "127.0.0.1:$3" --bind-addr "$2" --start-port "$P_T_IPERF" \
        --end-port $((BASE_PORT + 19)) --token "$TOKEN" \
        --cluster "redis://127.0.0.1:$P_REDIS/0" --node-id "$1" --node-addr "$2:$P_LINK" \
        --cluster-secret "$SECRET" --admin-addr "127.0.0.1:$4" --log-level warn \
        2>"$W/server-$1.log" &
    PIDS+=($!)
    PIDOF[$1]=$!
    wait_port 127.0.0.1 "$3"
    wait_port "$2" "$P_LINK"
    wait_port 127.0.0.1 "$4"
}
node n1 "$N1" "$P_CTL1" "$P_ADM1"
node n2 "$N2" "$P_CTL2" "$P_ADM2"

iperf3 -s -B 127.0.0.1 -p "$P_IPERF" >"$W/iperf3-server.log" 2>&1 &
PIDS+=($!)
python3 "$HERE/rtt.py" echo --port "$P_ECHO" --max-time 3600 &
PIDS+=($!)
python3 "$HERE/connrate.py" server --port "$P_CONN" --max-time 3600 &
PIDS+=($!)
wait_port 127.0.0.1 "$P_IPERF"
wait_port 127.0.0.1 "$P_ECHO"
wait_port 127.0.0.1 "$P_CONN"

# agent NAME LOCAL REMOTE: one TCP tunnel on node 1; waits for node 1's
# port and node 2's forwarding listener (it learns the route by pub/sub or
# its 2 s SCAN)
agent() {
    mkdir -p "$W/state-$1"
    XDG_STATE_HOME="$W/state-$1" "$MGROK" tcp "127.0.0.1:$2" --server "127.0.0.1:$P_CTL1" \
        --token "$TOKEN" --remote-port "$3" --inspect-addr off --log-level warn \
        >"$W/agent-$1.out" 2>"$W/agent-$1.log" &
    PIDS+=($!)
    PIDOF[agent-$1]=$!
    wait_port "$N1" "$3"
    wait_port "$N2" "$3"
}
agent iperf "$P_IPERF" "$P_T_IPERF"
agent echo "$P_ECHO" "$P_T_ECHO"
agent conn "$P_CONN" "$P_T_CONN"

socat TCP-LISTEN:"$P_T_ECHO",bind="$HOP",reuseaddr,fork TCP:"$N1:$P_T_ECHO" 2>"$W/socat.log" &
PIDS+=($!)
wait_port "$HOP" "$P_T_ECHO"

# ---------------------------------------------------------------- measures
# cpu_ticks PID...: utime + stime of each, in clock ticks
cpu_ticks() {
    local p
    for p in "$@"; do awk '{ print $14 + $15 }' "/proc/$p/stat"; done | tr '\n' ' '
}
# tput HOST TAG [-R]: "Gbit/s n1% n2% agent%" of one iperf3 stream to
# HOST:P_T_IPERF: the receiver's rate, and the CPU of node 1, node 2 and the
# agent during the test in % of one core
tput() {
    local host=$1 tag=$2 c0 c1 t0 t1
    shift 2
    c0=$(cpu_ticks "${PIDOF[n1]}" "${PIDOF[n2]}" "${PIDOF[agent-iperf]}")
    t0=$(date +%s%N)
    iperf3 -c "$host" -p "$P_T_IPERF" -P 1 -t "$DUR" -J --connect-timeout 5000 "$@" \
        >"$W/iperf-$tag.json" 2>&1 || die "iperf3 to $host failed: $(head -c 400 "$W/iperf-$tag.json")"
    c1=$(cpu_ticks "${PIDOF[n1]}" "${PIDOF[n2]}" "${PIDOF[agent-iperf]}")
    t1=$(date +%s%N)
    python3 -c 'import json,sys
d = json.load(open(sys.argv[1]))
s = d["end"]["sum_received"]["bits_per_second"] / 1e9
wall = (int(sys.argv[5]) - int(sys.argv[4])) / 1e9
t = int(sys.argv[6])
c = [100.0 * (b - a) / t / wall for a, b in zip(map(int, sys.argv[2].split()), map(int, sys.argv[3].split()))]
print("%.3f %.0f %.0f %.0f" % (s, *c))' "$W/iperf-$tag.json" "$c0" "$c1" "$t0" "$t1" "$(getconf CLK_TCK)"
}
# lat MODE HOST TAG: "p50 p99" in µs of bench/rtt.py MODE to HOST:P_T_ECHO
lat() {
    local n=$PINGS
    [ "$1" = conn ] && n=$CONNS
    python3 "$HERE/rtt.py" "$1" --host "$2" --port "$P_T_ECHO" --count "$n" --size 64 \
        --max-time 120 >"$W/rtt-$3.json" || die "rtt.py $1 to $2 failed: $(cat "$W/rtt-$3.json")"
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert not d["short"], d; print(d["p50_us"], d["p99_us"])' \
        "$W/rtt-$3.json" || die "rtt.py $1 to $2 did not finish: $(cat "$W/rtt-$3.json")"
}
# metrics PORT: "lookups hits commands forwarded_out" from an admin listener's /metrics
metrics() {
    python3 - "$1" <<'EOP'
import re, sys, urllib.request
t = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=5).read().decode()
def v(name, label=""):
    m = re.search(r"^%s%s (\S+)$" % (re.escape(name), re.escape(label)), t, re.M)
    return int(float(m.group(1))) if m else 0
print(v("mgrok_cluster_route_lookups_total"), v("mgrok_cluster_route_cache_hits_total"),
      v("mgrok_cluster_redis_commands_total"),
      v("mgrok_cluster_forwarded_connections_total", '{direction="out"}'))
EOP
}
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }'; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.1f", a - b }'; }
last() { echo "$1" | awk '{ print $NF }'; }
met_ge() { awk -v r="$1" -v t="$2" 'BEGIN { print (r >= t) ? "met" : "**not met**" }'; }
met_le() { awk -v a="$1" -v b="$2" 'BEGIN { print (a <= b) ? "met" : "**not met**" }'; }

quiet
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$(date +%s)
PATHS=(direct fwd socat)
TESTS=(up-direct up-fwd down-direct down-fwd)
declare -A HOSTOF=([direct]=$N1 [fwd]=$N2 [socat]=$HOP)
declare -A G CPU1 CPU2 CPUA H50 H99 C50 C99
ROWS=()
# one TEST TAG: one throughput test, its figures added to G CPU1 CPU2 CPUA
one() {
    local host=$N1 v g c1 c2 ca
    case $1 in *-fwd) host=$N2 ;; esac
    case $1 in
        up-*) v=$(tput "$host" "$1-$2") ;;
        down-*) v=$(tput "$host" "$1-$2" -R) ;;
    esac
    read -r g c1 c2 ca <<<"$v"
    G[$1]+="$g "; CPU1[$1]+="$c1 "; CPU2[$1]+="$c2 "; CPUA[$1]+="$ca "
}
for r in $(seq 1 "$ROUNDS"); do
    # throughput: direct first in odd rounds, forwarded first in even ones
    if [ $((r % 2)) = 1 ]; then
        one up-direct $r; one up-fwd $r; one down-fwd $r; one down-direct $r
    else
        one up-fwd $r; one up-direct $r; one down-direct $r; one down-fwd $r
    fi
    # latency: the three paths in an order rotated by one every round
    order=()
    for i in 0 1 2; do order+=("${PATHS[$(((i + r - 1) % 3))]}"); done
    for p in "${order[@]}"; do
        v=$(lat held "${HOSTOF[$p]}" held-$p$r)
        read -r a b <<<"$v"
        H50[$p]+="$a "; H99[$p]+="$b "
    done
    for p in "${order[@]}"; do
        v=$(lat conn "${HOSTOF[$p]}" conn-$p$r)
        read -r a b <<<"$v"
        C50[$p]+="$a "; C99[$p]+="$b "
    done
    row="| $r |"
    for t in "${TESTS[@]}"; do row+=" $(last "${G[$t]}") |"; done
    row+=" $(last "${H50[direct]}") / $(last "${H50[fwd]}") / $(last "${H50[socat]}") |"
    row+=" $(last "${C50[direct]}") / $(last "${C50[fwd]}") / $(last "${C50[socat]}") |"
    ROWS+=("$row")
    echo "round $r (latency order ${order[*]}): Gbit/s up direct $(last "${G[up-direct]}") forwarded $(last "${G[up-fwd]}")," \
        "down direct $(last "${G[down-direct]}") forwarded $(last "${G[down-fwd]}");" \
        "p50 µs held direct/forwarded/socat $(last "${H50[direct]}")/$(last "${H50[fwd]}")/$(last "${H50[socat]}")," \
        "new $(last "${C50[direct]}")/$(last "${C50[fwd]}")/$(last "${C50[socat]}")"
done
declare -A MG MC1 MC2 MCA MH50 MH99 MC50 MC99
for t in "${TESTS[@]}"; do
    MG[$t]=$(median ${G[$t]}); MC1[$t]=$(median ${CPU1[$t]})
    MC2[$t]=$(median ${CPU2[$t]}); MCA[$t]=$(median ${CPUA[$t]})
done
for p in "${PATHS[@]}"; do
    MH50[$p]=$(median ${H50[$p]}); MH99[$p]=$(median ${H99[$p]})
    MC50[$p]=$(median ${C50[$p]}); MC99[$p]=$(median ${C99[$p]})
done
ru=$(ratio "${MG[up-fwd]}" "${MG[up-direct]}"); rd=$(ratio "${MG[down-fwd]}" "${MG[down-direct]}")
add_f=$(sub "${MH50[fwd]}" "${MH50[direct]}"); add_s=$(sub "${MH50[socat]}" "${MH50[direct]}")
addc_f=$(sub "${MC50[fwd]}" "${MC50[direct]}"); addc_s=$(sub "${MC50[socat]}" "${MC50[direct]}")

# Redis operations: node 2 without visitors for WINDOW s, then new
# connections through it for WINDOW s (or COUNT of them, whichever first)
v=$(metrics "$P_ADM2"); read -r il0 _ ic0 _ <<<"$v"
v=$(metrics "$P_ADM1"); read -r _ _ i1c0 _ <<<"$v"
sleep "$WINDOW"
v=$(metrics "$P_ADM2"); read -r il1 _ ic1 _ <<<"$v"
v=$(metrics "$P_ADM1"); read -r _ _ i1c1 _ <<<"$v"
v=$(metrics "$P_ADM2"); read -r l0 h0 c0 f0 <<<"$v"
v=$(metrics "$P_ADM1"); read -r _ _ n1c0 _ <<<"$v"
python3 "$HERE/connrate.py" client --host "$N2" --port "$P_T_CONN" --count "$COUNT" --conc 4 \
    --max-time "$WINDOW" >"$W/conn.json"
v=$(metrics "$P_ADM2"); read -r l1 h1 c1 f1 <<<"$v"
v=$(metrics "$P_ADM1"); read -r _ _ n1c1 _ <<<"$v"
v=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["ok"], d["failed"], d["seconds"], d["conn_per_s"])' "$W/conn.json")
read -r cok cfail csec crate <<<"$v"
[ "$cfail" = 0 ] && [ "$cok" -gt 0 ] || die "connections through node 2 failed: $(cat "$W/conn.json")"
dl=$((l1 - l0)) dh=$((h1 - h0)) dc=$((c1 - c0)) dfw=$((f1 - f0)) dn1=$((n1c1 - n1c0))
idc=$((ic1 - ic0)) idl=$((il1 - il0)) id1=$((i1c1 - i1c0))
fl() { awk "BEGIN { printf \"$1\", $2 }"; }
max_l=$(fl %.1f "1 + $csec / 2")
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
T1=$(date +%s)

# ---------------------------------------------------------------- summary
rev=$(git -C "$HERE/.." rev-parse --short HEAD 2>/dev/null || echo "?")
{
    echo "Command: \`$CMDLINE\` on $(date -u '+%Y-%m-%d %H:%M UTC'), mgrok $rev, $(nproc) cores shared with other work"
    echo "(load average $LOAD0 at the start, $LOAD1 at the end, $((T1 - T0)) s)."
    echo "redis-server on 127.0.0.1; node 1 on $N1 and node 2 on $N2 (\`mgrok server --cluster\`, node links with the"
    echo "cluster secret); three \`mgrok tcp\` agents on node 1 (to iperf3's server, to an echo service: bench/rtt.py, and"
    echo "to a one-byte service: bench/connrate.py). Direct = $N1:P (node 1); forwarded = $N2:P (node 2, over the node"
    echo "link to node 1, where the stream is handed to the agent's session); socat hop ="
    echo "\`socat TCP-LISTEN:P,bind=$HOP,reuseaddr,fork TCP:$N1:P\` in front of node 1 (a process forked per connection)."
    echo "Throughput: \`iperf3 -P 1 -t $DUR\` up, then \`-R\` down, direct and forwarded first in turn; the CPU of each"
    echo "process during the test in % of one core. Latency: the median over the rounds of each round's p50 (p99) of"
    echo "$PINGS round trips of 64 bytes on one held connection (\`rtt.py held\`), and of $CONNS times connect + one round"
    echo "trip + close (\`rtt.py conn\`); the three paths' order rotates every round."
    echo
    echo "| round | up direct Gbit/s | up forwarded | down (-R) direct | down (-R) forwarded | held p50 µs: direct / forwarded / socat | new conn p50 µs: direct / forwarded / socat |"
    echo "|---|---|---|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "| iperf3, 1 stream | Gbit/s (median) | node 1 CPU % | node 2 CPU % | agent CPU % |"
    echo "|---|---|---|---|---|"
    echo "| up, direct | ${MG[up-direct]} | ${MC1[up-direct]} | ${MC2[up-direct]} | ${MCA[up-direct]} |"
    echo "| **up, forwarded** | ${MG[up-fwd]} | ${MC1[up-fwd]} | ${MC2[up-fwd]} | ${MCA[up-fwd]} |"
    echo "| down (-R), direct | ${MG[down-direct]} | ${MC1[down-direct]} | ${MC2[down-direct]} | ${MCA[down-direct]} |"
    echo "| **down (-R), forwarded** | ${MG[down-fwd]} | ${MC1[down-fwd]} | ${MC2[down-fwd]} | ${MCA[down-fwd]} |"
    echo
    echo "| latency, 64 bytes | held p50 µs | held p99 µs | new conn p50 µs | new conn p99 µs |"
    echo "|---|---|---|---|---|"
    echo "| direct (node 1) | ${MH50[direct]} | ${MH99[direct]} | ${MC50[direct]} | ${MC99[direct]} |"
    echo "| **forwarded (node 2 -> node 1)** | ${MH50[fwd]} | ${MH99[fwd]} | ${MC50[fwd]} | ${MC99[fwd]} |"
    echo "| direct + one socat hop | ${MH50[socat]} | ${MH99[socat]} | ${MC50[socat]} | ${MC99[socat]} |"
    echo
    echo "- Throughput forwarded / direct: up **$ru**, down **$rd** (target >= 0.6: $(met_ge "$ru" 0.6) up, $(met_ge "$rd" 0.6) down)."
    echo "- p50 added at one held connection: forwarding **$add_f µs**, one socat hop **$add_s µs** (target: forwarding <= socat hop: $(met_le "$add_f" "$add_s"))."
    echo "- p50 added to a new connection (connect + one round trip): forwarding $addc_f µs, one socat hop $addc_s µs (forwarding <= socat hop: $(met_le "$addc_f" "$addc_s"))."
    echo "- Redis on the hot path (node 2's /metrics): $cok new connections through node 2, 4 at once, in $csec s ($crate/s)."
    echo "  Node 2 forwarded $dfw: $dh from the route cache, **$dl route lookups** ($(fl %.5f "$dl / $cok") per connection; at most"
    echo "  one per 2 s of cache, <= $max_l in $csec s), and $((dfw - dh - dl)) that came while a lookup was in flight and waited for it."
    echo "  \`mgrok_cluster_redis_commands_total\` of node 2 moved by $dc during the connections ($(fl %.2f "$dc / $csec")/s,"
    echo "  $(fl %.5f "$dc / $cok") per connection) and by $idc in the $WINDOW s without visitors just before ($(fl %.2f "$idc / $WINDOW")/s: the"
    echo "  heartbeat and the 2 s route SCAN; $idl lookups); node 1's (the owner) by $dn1 ($(fl %.2f "$dn1 / $csec")/s) and by $id1 idle"
    echo "  ($(fl %.2f "$id1 / $WINDOW")/s). So **zero Redis operations per visitor of a cached route**: the commands are the heartbeat's"
    echo "  plus one lookup per 2 s of cache, whatever the number of visitors."
} >"$W/section.md"
echo
echo "=== bench/cluster.sh: forwarding through another node ==="
cat "$W/section.md"

RESULTS=${RESULTS:-$HERE/RESULTS.md}
if [ "$RESULTS" != none ]; then
    {
        echo "<!-- bench/cluster.sh: begin -->"
        echo "## Cluster: forwarding through another node (bench/cluster.sh)"
        echo
        cat "$W/section.md"
        echo "<!-- bench/cluster.sh: end -->"
    } >"$W/results-section.md"
    if [ -f "$RESULTS" ] && grep -q '^<!-- bench/cluster.sh: begin -->' "$RESULTS"; then
        awk -v f="$W/results-section.md" '
            /^<!-- bench\/cluster.sh: begin -->/ { while ((getline l < f) > 0) print l; skip = 1; next }
            /^<!-- bench\/cluster.sh: end -->/ { skip = 0; next }
            !skip { print }' "$RESULTS" >"$RESULTS.tmp" && mv "$RESULTS.tmp" "$RESULTS"
    else
        { echo; cat "$W/results-section.md"; } >>"$RESULTS"
    fi
    echo "cluster.sh: wrote the cluster section of $RESULTS"
fi
