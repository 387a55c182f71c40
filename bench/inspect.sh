#!/usr/bin/env bash
# bench/inspect.sh - what recording costs: `mgrok http` with the inspector on
# (every request captured: heads and bodies) against the same tunnel with
# `--inspect-addr off`, side by side in one run, on 127.0.0.1 only.
#
#   bench/inspect.sh                 # ROUNDS=3 DUR=10: wrk -t2 -c64 per round and mode
#   ROUNDS=1 DUR=3 bench/inspect.sh  # a quick look
#
# One mgrok server and nginx serving a 100-byte page (like bench/run.sh's http
# family); each round starts an agent with the inspector on, runs wrk, stops
# it, then the same with it off (alternating, and the order swaps every
# round, so drift and warm-up hit both alike). Prints
# req/s per run, the medians and the ratio on/off (target: >= 0.9).
# Env: ROUNDS (3) DUR (10) BASE_PORT (26500; uses BASE_PORT..+9) MGROK
# (build/mgrok) OUT (a temporary directory, kept with KEEP=1) RESULTS
# (bench/RESULTS.md: its "inspector" section is replaced by this run's;
# "none" writes nothing; bench/run.sh keeps the section when it rewrites
# the file)
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DUR=${DUR:-10}
BASE_PORT=${BASE_PORT:-26500}
HERE=$(cd "$(dirname "$0")" && pwd)
MGROK=${MGROK:-$HERE/../build/mgrok}
P_CTL=$BASE_PORT P_HTTP=$((BASE_PORT + 1)) P_NGINX=$((BASE_PORT + 2))
P_INSP=$((BASE_PORT + 3)) P_FRONT=$((BASE_PORT + 4))
W=${OUT:-$(mktemp -d /tmp/mgrok-inspect-bench.XXXXXX)}
PIDS=()

die() { echo "inspect.sh: $*" >&2; exit 1; }
cleanup() {
    for p in "${PIDS[@]}" $(cat "$W"/agent-*.pid 2>/dev/null); do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ "${KEEP:-0}" = 1 ] || rm -rf "$W"
}
trap cleanup EXIT

for pkg in wrk:wrk nginx:nginx-light curl:curl; do
    command -v "${pkg%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pkg%%:*}" ] || {
        echo "inspect.sh: installing ${pkg#*:}" >&2
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

# nginx: a 100-byte page, keep-alive without limit
chmod 755 "$W"
mkdir -p "$W/www" "$W/nginx"
head -c 100 /dev/zero | tr '\0' 'x' >"$W/www/100b"
chmod -R a+rX "$W/www"
cat >"$W/nginx/nginx.conf" <<EOC
worker_processes 1;
daemon off;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path $W/nginx/body;
    proxy_temp_path $W/nginx/proxy;
    fastcgi_temp_path $W/nginx/fastcgi;
    uwsgi_temp_path $W/nginx/uwsgi;
    scgi_temp_path $W/nginx/scgi;
    server { listen 127.0.0.1:$P_NGINX backlog=4096; root $W/www; }
}
EOC
/usr/sbin/nginx -p "$W/nginx/" -c "$W/nginx/nginx.conf" -e "$W/nginx/error.log" &
PIDS+=($!)
wait_port "$P_NGINX"

"$MGROK" server --addr 127.0.0.1:$P_CTL --bind-addr 127.0.0.1 --start-port $P_FRONT \
    --end-port $((P_FRONT + 4)) --token bench --domain tun.test \
    --http-addr 127.0.0.1:$P_HTTP --log-level warn 2>"$W/server.log" &
PIDS+=($!)
wait_port "$P_CTL"
wait_port "$P_HTTP"

# run MODE ROUND: one agent, one wrk; prints req/s
run() {
    local mode=$1 r=$2 sub="${1}${2}" insp pid rps
    if [ "$mode" = on ]; then insp="127.0.0.1:$P_INSP"; else insp=off; fi
    mkdir -p "$W/state-$sub"
    XDG_STATE_HOME="$W/state-$sub" "$MGROK" http 127.0.0.1:$P_NGINX --server 127.0.0.1:$P_CTL \
        --token bench --subdomain "$sub" --inspect-addr "$insp" --log-level warn \
        >"$W/agent-$sub.out" 2>"$W/agent-$sub.log" &
    pid=$!
    echo "$pid" >"$W/agent-$sub.pid"
    for _ in $(seq 100); do
        grep -q "Forwarding" "$W/agent-$sub.out" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || die "the $mode agent exited: $(cat "$W/agent-$sub.log")"
        sleep 0.1
    done
    for _ in $(seq 20); do
        [ "$(curl -s --max-time 5 -H "Host: $sub.tun.test" "http://127.0.0.1:$P_HTTP/100b" | wc -c)" = 100 ] &&
            break
        sleep 0.2
    done
    [ "$(curl -s --max-time 5 -H "Host: $sub.tun.test" "http://127.0.0.1:$P_HTTP/100b" | wc -c)" = 100 ] ||
        die "the page did not come through the $mode tunnel: $(cat "$W/agent-$sub.log")"
    wrk -t2 -c64 -d"${DUR}s" --timeout 5s -H "Host: $sub.tun.test" \
        "http://127.0.0.1:$P_HTTP/100b" >"$W/wrk-$sub.txt" 2>&1
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$W/wrk-$sub.txt")
    if [ "$mode" = on ]; then # the inspector kept its bound and recorded
        curl -s "http://127.0.0.1:$P_INSP/metrics" | grep -E '^mgrok_inspect_(requests|bytes|dropped_total) ' |
            tr '\n' ' ' >"$W/insp-$sub.txt"
    fi
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -f "$W/agent-$sub.pid"
    echo "${rps:-0}"
}

declare -a ON OFF ROWS
for r in $(seq 1 "$ROUNDS"); do
    # the order alternates too: on first in odd rounds, off first in even ones
    if [ $((r % 2)) = 1 ]; then on=$(run on "$r"); off=$(run off "$r")
    else off=$(run off "$r"); on=$(run on "$r"); fi
    ON+=("$on"); OFF+=("$off")
    ROWS+=("$(printf '| %d | %.0f | %.0f | %s |' "$r" "$on" "$off" "$(cat "$W/insp-on$r.txt")")")
    printf 'round %d: inspector on %10.0f req/s   off %10.0f req/s   (%s)\n' "$r" "$on" "$off" \
        "$(cat "$W/insp-on$r.txt")"
done
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
mon=$(median "${ON[@]}")
moff=$(median "${OFF[@]}")
awk -v on="$mon" -v off="$moff" -v n="$ROUNDS" -v d="$DUR" 'BEGIN {
    printf "wrk -t2 -c64 -d%ss, 100-byte page, %d rounds: median on %.0f req/s, off %.0f req/s, ratio on/off %.3f (target >= 0.9)\n",
        d, n, on, off, (off > 0 ? on / off : 0) }'

RESULTS=${RESULTS:-$HERE/RESULTS.md}
if [ "$RESULTS" != none ]; then
    ratio=$(awk -v on="$mon" -v off="$moff" 'BEGIN { printf "%.3f", (off > 0 ? on / off : 0) }')
    met=$(awk -v r="$ratio" 'BEGIN { print (r >= 0.9) ? "met" : "**not met**" }')
    rev=$(git -C "$HERE/.." rev-parse --short HEAD 2>/dev/null || echo "?")
    {
        echo "<!-- bench/inspect.sh: begin -->"
        echo "## The inspector's cost (bench/inspect.sh)"
        echo
        echo "Command: \`ROUNDS=$ROUNDS DUR=$DUR bench/inspect.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), mgrok $rev, $(nproc) cores."
        echo "\`wrk -t2 -c64 -d${DUR}s\` through one \`mgrok http\` tunnel to nginx's 100-byte page; each round runs an"
        echo "agent with the inspector on (every request captured) and one with \`--inspect-addr off\`, the order"
        echo "swapped every round; the store's gauges after the \"on\" run show it kept its bound."
        echo
        echo "| round | inspector on, req/s | off, req/s | the store after the run |"
        echo "|---|---|---|---|"
        printf '%s\n' "${ROWS[@]}"
        echo
        printf 'Median: on %.0f req/s, off %.0f req/s: **ratio %s** (target >= 0.9: %s).\n' "$mon" "$moff" "$ratio" "$met"
        echo "<!-- bench/inspect.sh: end -->"
    } >"$W/section.md"
    if [ -f "$RESULTS" ] && grep -q '^<!-- bench/inspect.sh: begin -->' "$RESULTS"; then
        awk -v f="$W/section.md" '
            /^<!-- bench\/inspect.sh: begin -->/ { while ((getline l < f) > 0) print l; skip = 1; next }
            /^<!-- bench\/inspect.sh: end -->/ { skip = 0; next }
            !skip { print }' "$RESULTS" >"$RESULTS.tmp" && mv "$RESULTS.tmp" "$RESULTS"
    else
        { echo; cat "$W/section.md"; } >>"$RESULTS"
    fi
    echo "inspect.sh: wrote the inspector section of $RESULTS"
fi
