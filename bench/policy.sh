#!/usr/bin/env bash
# bench/policy.sh - what policy costs: a TCP tunnel of a token with a policy
# (allowed ports, types, source lists, limits, a bandwidth limit of
# 100 Gbit/s, far above the link) and an agent --allow-cidr, against the
# same tunnel of a token without any, side by side in one run, on
# 127.0.0.1 only.
#
#   bench/policy.sh                  # ROUNDS=3 DUR=10 COUNT=4000
#   ROUNDS=1 DUR=3 bench/policy.sh   # a quick look
#
# One mgrok server (its config file has both tokens), iperf3's server and
# bench/connrate.py's one-byte service. Each round starts one agent per
# token, then measures, alternating the order (swapped every round, so
# drift and warm-up hit both alike):
#   - single-stream throughput: iperf3 -c through the tunnel, DUR s;
#   - new connections per second: connrate.py, COUNT connections, 8 at once,
#     each counted when the service's byte came back through the tunnel.
# Prints each run, the medians and the ratios policy/plain (target: >= 0.95).
# Env: ROUNDS (3) DUR (10) COUNT (4000) BASE_PORT (26600; uses BASE_PORT..+19)
# MGROK (build/mgrok) OUT (a temporary directory, kept with KEEP=1) RESULTS
# (bench/RESULTS.md: its "policy" section is replaced by this run's; "none"
# writes nothing; bench/run.sh keeps the section when it rewrites the file)
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DUR=${DUR:-10}
COUNT=${COUNT:-4000}
BASE_PORT=${BASE_PORT:-26600}
HERE=$(cd "$(dirname "$0")" && pwd)
MGROK=${MGROK:-$HERE/../build/mgrok}
P_CTL=$BASE_PORT P_IPERF=$((BASE_PORT + 1)) P_CONN=$((BASE_PORT + 2))
P_PLAIN=$((BASE_PORT + 10)) P_POL=$((BASE_PORT + 11))
P_PLAIN_C=$((BASE_PORT + 12)) P_POL_C=$((BASE_PORT + 13))
W=${OUT:-$(mktemp -d /tmp/mgrok-policy-bench.XXXXXX)}
mkdir -p "$W"
PIDS=()

die() { echo "policy.sh: $*" >&2; exit 1; }
cleanup() {
    for p in "${PIDS[@]}" $(cat "$W"/agent-*.pid 2>/dev/null); do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ "${KEEP:-0}" = 1 ] || rm -rf "$W"
}
trap cleanup EXIT

for pkg in iperf3:iperf3 python3:python3; do
    command -v "${pkg%%:*}" >/dev/null 2>&1 || {
        echo "policy.sh: installing ${pkg#*:}" >&2
        apt-get install -y -q "${pkg#*:}" >/dev/null || die "cannot install ${pkg#*:}"
    }
done
[ -x "$MGROK" ] || die "no mgrok binary at $MGROK (run make)"

wait_port() { # port
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    die "nothing listens on port $1"
}

cat >"$W/server.yml" <<EOC
addr: "127.0.0.1:$P_CTL"
bind_addr: 127.0.0.1
start_port: $P_PLAIN
end_port: $((BASE_PORT + 19))
log_level: warn
tokens:
  - name: plain
    secret: plain-secret
  - name: alice
    secret: alice-secret
    expires: 2099-12-31
    allow:
      ports: [$P_POL, $P_POL_C]
      types: [tcp]
      cidrs: [127.0.0.0/8, "::1/128"]
      deny_cidrs: [10.0.0.0/8]
    limits:
      tunnels: 10
      visitors: 10000
      bandwidth: {in: 12500MB/s, out: 12500MB/s}
      new_connections: 1000000/s
EOC
"$MGROK" server --config "$W/server.yml" 2>"$W/server.log" &
PIDS+=($!)
wait_port "$P_CTL"
iperf3 -s -B 127.0.0.1 -p "$P_IPERF" >"$W/iperf3-server.log" 2>&1 &
PIDS+=($!)
python3 "$HERE/connrate.py" server --port "$P_CONN" --max-time 3600 &
PIDS+=($!)
wait_port "$P_IPERF"
wait_port "$P_CONN"

# agent NAME TOKEN LOCAL REMOTE [flags]: one TCP tunnel; its pid in agent-NAME.pid
agent() {
    local name=$1 token=$2 local=$3 remote=$4
    shift 4
    mkdir -p "$W/state-$name"
    XDG_STATE_HOME="$W/state-$name" "$MGROK" tcp "127.0.0.1:$local" --server "127.0.0.1:$P_CTL" \
        --token "$token" --remote-port "$remote" --inspect-addr off --log-level warn "$@" \
        >"$W/agent-$name.out" 2>"$W/agent-$name.log" &
    echo $! >"$W/agent-$name.pid"
    wait_port "$remote"
}
agent plain plain-secret "$P_IPERF" "$P_PLAIN"
agent pol alice-secret "$P_IPERF" "$P_POL" --allow-cidr 127.0.0.0/8
agent plainc plain-secret "$P_CONN" "$P_PLAIN_C"
agent polc alice-secret "$P_CONN" "$P_POL_C" --allow-cidr 127.0.0.0/8

# tput PORT TAG: Gbit/s of one iperf3 stream through the tunnel at PORT
tput() {
    iperf3 -c 127.0.0.1 -p "$1" -t "$DUR" -J --connect-timeout 5000 >"$W/iperf-$2.json" 2>&1 ||
        die "iperf3 through port $1 failed: $(head -c 400 "$W/iperf-$2.json")"
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.3f" % (d["end"]["sum_received"]["bits_per_second"] / 1e9))' \
        "$W/iperf-$2.json"
}
# crate PORT TAG: new connections per second through the tunnel at PORT
crate() {
    python3 "$HERE/connrate.py" client --port "$1" --count "$COUNT" --conc 8 --max-time 60 >"$W/conn-$2.json"
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1]));
assert d["failed"] == 0, d; print("%.1f" % d["conn_per_s"])' "$W/conn-$2.json" ||
        die "connections through port $1 failed: $(cat "$W/conn-$2.json")"
}

declare -a TP TN CP CN ROWS
for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then
        tp=$(tput "$P_POL" pol$r); tn=$(tput "$P_PLAIN" plain$r)
        cp=$(crate "$P_POL_C" pol$r); cn=$(crate "$P_PLAIN_C" plain$r)
    else
        tn=$(tput "$P_PLAIN" plain$r); tp=$(tput "$P_POL" pol$r)
        cn=$(crate "$P_PLAIN_C" plain$r); cp=$(crate "$P_POL_C" pol$r)
    fi
    TP+=("$tp"); TN+=("$tn"); CP+=("$cp"); CN+=("$cn")
    ROWS+=("$(printf '| %d | %s | %s | %s | %s |' "$r" "$tp" "$tn" "$cp" "$cn")")
    printf 'round %d: throughput policy %s Gbit/s, plain %s Gbit/s; new connections policy %s/s, plain %s/s\n' \
        "$r" "$tp" "$tn" "$cp" "$cn"
done
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
mtp=$(median "${TP[@]}"); mtn=$(median "${TN[@]}")
mcp=$(median "${CP[@]}"); mcn=$(median "${CN[@]}")
rt=$(awk -v a="$mtp" -v b="$mtn" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')
rc=$(awk -v a="$mcp" -v b="$mcn" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')
met() { awk -v r="$1" 'BEGIN { print (r >= 0.95) ? "met" : "**not met**" }'; }
echo "median throughput: policy $mtp Gbit/s, plain $mtn Gbit/s, ratio $rt; new connections: policy $mcp/s, plain $mcn/s, ratio $rc (targets >= 0.95)"
# the policy was in force: the limits were read, nothing was refused
grep -qi "refused\|error" "$W/server.log" && echo "policy.sh: the server logged refusals or errors:" && cat "$W/server.log"

RESULTS=${RESULTS:-$HERE/RESULTS.md}
if [ "$RESULTS" != none ]; then
    rev=$(git -C "$HERE/.." rev-parse --short HEAD 2>/dev/null || echo "?")
    {
        echo "<!-- bench/policy.sh: begin -->"
        echo "## What policy costs (bench/policy.sh)"
        echo
        echo "Command: \`ROUNDS=$ROUNDS DUR=$DUR COUNT=$COUNT bench/policy.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), mgrok $rev, $(nproc) cores."
        echo "Two TCP tunnels on one server, to iperf3's server and to a one-byte service (bench/connrate.py):"
        echo "one of a token with a policy (allowed ports, types, source lists, \`limits\` with \`tunnels\`,"
        echo "\`visitors\`, \`new_connections\` and \`bandwidth: {in: 12500MB/s, out: 12500MB/s}\`, i.e. 100 Gbit/s, far"
        echo "above the link) and an agent \`--allow-cidr\`; one of a token without any. Single-stream"
        echo "\`iperf3 -t $DUR\`; $COUNT new connections, 8 at once, each counted when the service's byte came back."
        echo "The order swaps every round."
        echo
        echo "| round | policy, Gbit/s | plain, Gbit/s | policy, conn/s | plain, conn/s |"
        echo "|---|---|---|---|---|"
        printf '%s\n' "${ROWS[@]}"
        echo
        echo "Median throughput: policy $mtp Gbit/s, plain $mtn Gbit/s: **ratio $rt** (target >= 0.95: $(met "$rt"))."
        echo "Median new connections: policy $mcp/s, plain $mcn/s: **ratio $rc** (target >= 0.95: $(met "$rc"))."
        echo "<!-- bench/policy.sh: end -->"
    } >"$W/section.md"
    if [ -f "$RESULTS" ] && grep -q '^<!-- bench/policy.sh: begin -->' "$RESULTS"; then
        awk -v f="$W/section.md" '
            /^<!-- bench\/policy.sh: begin -->/ { while ((getline l < f) > 0) print l; skip = 1; next }
            /^<!-- bench\/policy.sh: end -->/ { skip = 0; next }
            !skip { print }' "$RESULTS" >"$RESULTS.tmp" && mv "$RESULTS.tmp" "$RESULTS"
    else
        { echo; cat "$W/section.md"; } >>"$RESULTS"
    fi
    echo "policy.sh: wrote the policy section of $RESULTS"
fi
