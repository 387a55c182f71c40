#!/usr/bin/env bash
# bench/run.sh - mgrok against its comparison peers, on 127.0.0.1 only (`make bench`).
#
#   bench/run.sh                      # RUNS=3 DUR=10, all families, writes bench/RESULTS.md
#   QUICK=1 bench/run.sh              # smoke test: RUNS=1 DUR=2 (writes $OUT_DIR/RESULTS.md)
#   SCENARIOS="direct socat2big" FAMILIES=tcp QUICK=1 bench/run.sh
#
# Families (FAMILIES, default "tcp mem"), each one function family_<name> that appends
# rows to $OUT_DIR/<name>.tsv; bench/report.py turns every TSV present into a section
# of RESULTS.md plus computed target rows:
#   tcp   iperf3 through each scenario: 1 stream and -P 8 (TESTS), DUR s, RUNS rounds,
#         rounds interleaved across scenarios; relay CPU seconds from the lab's procmon.py.
#   mem   VmRSS of the relay processes at idle and while holding MEM_CONNS (1000) idle
#         proxied connections end to end (a counting holder service behind the tunnel).
# Scenarios (SCENARIOS for tcp, MEM_SCENARIOS for mem); each is start_<name> TARGET_PORT,
# which sets FRONT (the port users connect to), ROOTS (name=pid, the relay processes)
# and SCEN_PIDS; stop_scenario ends them. Reusable by later families (UDP, TLS, HTTP):
#   direct      user -> backend
#   socat2big   user -> socat -b 131072 -> socat -b 131072 -> backend (fork mode)
#   socat2      same with socat's default 8 KiB buffers;  socat1 / socat1big: one hop
#   ssh         user -> sshd [-R listener] => one SSH conn (aes128-gcm) => ssh -> backend
#   mgrok       user -> mgrok server => one tunnel conn => mgrok tcp (client) -> backend
#
# Env knobs: RUNS (3) DUR (10) QUICK (1 = RUNS=1 DUR=2) BASE_PORT (26200; uses BASE_PORT..+199)
#   SCENARIOS ("direct socat2big ssh mgrok") TESTS ("iperf1 iperfP8"; also iperfR)
#   MEM_SCENARIOS ("mgrok ssh") MEM_CONNS (1000) MEM_RUNS (=RUNS) FAMILIES ("tcp mem")
#   OUT_DIR (raw outputs; /tmp/mgrok-bench/run-DATE) RESULTS (bench/RESULTS.md, or
#   $OUT_DIR/RESULTS.md when QUICK=1) QUIET_WAIT (60 s max wait for a quiet machine per test)
#   SSH_CIPHER (aes128-gcm@openssh.com) MGROK (build/mgrok) MGROK_SERVER_ARGS / MGROK_CLIENT_ARGS
#   (extra arguments) LAB_DIR (../shared/lab from the repo root) KEEP_WORK (keep temp dir)
#
# Extending (UDP / TLS / HTTP rows): write family_<name> (start its backend, loop rounds x
# scenarios with start_scenario NAME TARGET_PORT TAG / stop_scenario, append rows to
# $OUT_DIR/<name>.tsv), add <name> to FAMILIES, and add section_<name> to FAMILIES in
# bench/report.py (it returns the markdown and the computed target rows). A new peer is a
# start_<name> function (copy the lab's command line) plus its name in ALL_SCENARIOS.
# mgrok runs from a private copy of build/mgrok taken at start (rebuilds mid-run don't mix).
# Output: $OUT_DIR/{info.txt,tcp.tsv,mem.tsv,problems.txt,raw/,logs/} and RESULTS.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/bench
INVOKED="bench/run.sh${*:+ $*}"
ENV_SET=""
for v in QUICK RUNS DUR BASE_PORT SCENARIOS TESTS MEM_SCENARIOS MEM_CONNS MEM_RUNS FAMILIES SSH_CIPHER \
         MGROK_SERVER_ARGS MGROK_CLIENT_ARGS; do
    [ -n "${!v+x}" ] && ENV_SET+="$v=$(printf '%q' "${!v}") "
done

LAB_DIR=${LAB_DIR:-$ROOT/../shared/lab}
[ -f "$LAB_DIR/lib.sh" ] || { echo "bench: lab helpers not found in $LAB_DIR (set LAB_DIR)" >&2; exit 1; }
LAB_DIR=$(cd "$LAB_DIR" && pwd)
. "$LAB_DIR/lib.sh"        # log die start_bg kill_tree stop_pids wait_port ensure_free ensure_pkgs, EXIT trap

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
    RUNS=${RUNS:-1}; DUR=${DUR:-2}; QUIET_WAIT=${QUIET_WAIT:-5}
fi
RUNS=${RUNS:-3}
DUR=${DUR:-10}
QUIET_WAIT=${QUIET_WAIT:-60}
BASE_PORT=${BASE_PORT:-26200}
SCENARIOS=${SCENARIOS:-"direct socat2big ssh mgrok"}
TESTS=${TESTS:-"iperf1 iperfP8"}
MEM_SCENARIOS=${MEM_SCENARIOS:-"mgrok ssh"}
MEM_CONNS=${MEM_CONNS:-1000}
MEM_RUNS=${MEM_RUNS:-$RUNS}
FAMILIES=${FAMILIES:-"tcp mem"}
SSH_CIPHER=${SSH_CIPHER:-aes128-gcm@openssh.com}
MGROK=${MGROK:-$ROOT/build/mgrok}
MGROK_SERVER_ARGS=${MGROK_SERVER_ARGS:-}
MGROK_CLIENT_ARGS=${MGROK_CLIENT_ARGS:-}
OUT_DIR=${OUT_DIR:-${TMPDIR:-/tmp}/mgrok-bench/run-$(date +%Y%m%d-%H%M%S)}
if [ "$QUICK" = 1 ]; then RESULTS=${RESULTS:-$OUT_DIR/RESULTS.md}; else RESULTS=${RESULTS:-$BENCH/RESULTS.md}; fi
COMMAND="${ENV_SET}"
case " $ENV_SET" in *" RUNS="*) ;; *) [ "$QUICK" = 1 ] || COMMAND+="RUNS=$RUNS " ;; esac
case " $ENV_SET" in *" DUR="*) ;; *) [ "$QUICK" = 1 ] || COMMAND+="DUR=$DUR " ;; esac
COMMAND+="$INVOKED"

IPERF_PORT=$((BASE_PORT + 1))
HOLD_PORT=$((BASE_PORT + 2))
ALL_SCENARIOS="direct socat1 socat1big socat2 socat2big ssh mgrok"

# ---------------------------------------------------------------- setup
ensure_pkgs iperf3 socat openssh-server openssh-client python3 procps iproute2 openssl
ulimit -n 20000 2>/dev/null || ulimit -n 8192 2>/dev/null || true
[ "$(ulimit -n)" -ge 8192 ] || die "ulimit -n is $(ulimit -n); need >= 8192"

for s in $SCENARIOS $MEM_SCENARIOS; do
    case " $ALL_SCENARIOS " in *" $s "*) ;; *) die "unknown scenario $s (known: $ALL_SCENARIOS)" ;; esac
done

need_mgrok=0
case " $SCENARIOS $MEM_SCENARIOS " in *" mgrok "*) need_mgrok=1 ;; esac

build_mgrok() {
    if [ "$MGROK" != "$ROOT/build/mgrok" ]; then
        [ -x "$MGROK" ] || die "MGROK=$MGROK is not executable"
        return 0
    fi
    if [ ! -x "$MGROK" ] || ! make -C "$ROOT" -q all >/dev/null 2>&1; then
        log "building mgrok"
        if ! make -C "$ROOT" -s all >"$OUT_DIR/build.log" 2>&1; then
            [ -x "$ROOT/scripts/deps.sh" ] && "$ROOT/scripts/deps.sh" >>"$OUT_DIR/build.log" 2>&1
            make -C "$ROOT" -s all >>"$OUT_DIR/build.log" 2>&1 || { tail -20 "$OUT_DIR/build.log" >&2; die "make failed (see $OUT_DIR/build.log)"; }
        fi
    fi
    [ -x "$MGROK" ] || die "$MGROK missing after make"
}

lab_workdir mgrokbench
W=$LAB_WORK
mkdir -p "$OUT_DIR/raw" "$OUT_DIR/logs" "$W/xdg"
export XDG_STATE_HOME=$W/xdg     # the mgrok client keeps its state here, not in ~

bench_cleanup() {
    cp "$W"/*.log "$OUT_DIR/logs/" 2>/dev/null
    lab_cleanup
}
trap bench_cleanup EXIT

if [ $need_mgrok = 1 ]; then
    build_mgrok
    # run a private copy: a rebuild of build/mgrok during the run must not mix two binaries
    cp "$MGROK" "$W/mgrok" || die "cannot copy $MGROK"
    MGROK_SRC=$MGROK; MGROK=$W/mgrok
fi

# problems seen during the run (mgrok died, hung, did not hold connections...): one line each
note_problem() { log "PROBLEM: $*"; echo "$*" >>"$OUT_DIR/problems.txt"; }

# wait_for SECONDS CMD...: bounded poll (0.1 s) until CMD succeeds; returns 1 on timeout.
wait_for() {
    local t=$1 i; shift
    for i in $(seq 1 $((t * 10))); do "$@" && return 0; sleep 0.1; done
    return 1
}
port_up() { is_listening "$1"; }
alive() { [ -d "/proc/$1" ] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }

# ---------------------------------------------------------------- key material (once)
make_keys() {
    [ -f "$W/ssh/id_ed25519" ] && return 0
    mkdir -p "$W/ssh"
    ssh-keygen -q -t ed25519 -N '' -f "$W/ssh/host_ed25519" -C benchhost
    ssh-keygen -q -t ed25519 -N '' -f "$W/ssh/id_ed25519" -C benchclient
    cp "$W/ssh/id_ed25519.pub" "$W/ssh/authorized_keys"
    mkdir -p /run/sshd && chmod 755 /run/sshd   # sshd's privilege-separation dir
}

# ---------------------------------------------------------------- backends
start_iperf_server() {
    ensure_free "$IPERF_PORT"
    start_bg iperf3-server iperf3 -s -B 127.0.0.1 -p "$IPERF_PORT" --idle-timeout 60
    IPERF_PID=$LAST_PID
    wait_port "$IPERF_PORT"
}
ensure_iperf_server() {
    if ! alive "$IPERF_PID"; then
        log "iperf3 server died; restarting"
        stop_pids "$IPERF_PID"
        start_bg iperf3-server-again iperf3 -s -B 127.0.0.1 -p "$IPERF_PORT" --idle-timeout 60
        IPERF_PID=$LAST_PID
        wait_port "$IPERF_PORT"
    fi
}

# holder service: accepts and holds connections, writes how many are open to $W/hold.status
start_hold_server() {
    ensure_free "$HOLD_PORT"
    start_bg hold-server "$LAB_PY" "$LAB_DIR/holdconns.py" server --port "$HOLD_PORT" \
        --status "$W/hold.status" --max-time 7200
    HOLD_PID=$LAST_PID
    wait_port "$HOLD_PORT"
}
hold_count() { local c; c=$(cat "$W/hold.status" 2>/dev/null); echo "${c:-0}"; }

# ---------------------------------------------------------------- scenarios
# start_scenario NAME TARGET_PORT TAG: sets FRONT, ROOTS (procmon --root args), ROOT_PIDS
# (name=pid), SCEN_PIDS, SCEN_INFO; returns 1 (with SCEN_ERR) if the relay did not come up.
scen_index() {
    local i=1 s
    for s in $ALL_SCENARIOS; do [ "$s" = "$1" ] && { echo $i; return; }; i=$((i + 1)); done
    echo 0
}
add_root() { ROOTS+=(--root "$1=$2"); ROOT_PIDS+=("$1=$2"); SCEN_PIDS+=("$2"); }

start_scenario() {
    local s=$1 target=$2 tag=$3 b
    b=$((BASE_PORT + 100 + $(scen_index "$s") * 10))
    P_FRONT=$((b + 1)); P_MID=$((b + 2)); P_CTL=$((b + 5))
    ROOTS=(); ROOT_PIDS=(); SCEN_PIDS=(); SCEN_INFO=""; SCEN_ERR=""; FRONT=""
    "start_$s" "$target" "$tag" || { [ -n "$SCEN_ERR" ] || SCEN_ERR="$s did not start"; return 1; }
}
stop_scenario() {
    [ ${#SCEN_PIDS[@]} -gt 0 ] && stop_pids "${SCEN_PIDS[@]}"
    SCEN_PIDS=()
    sleep 0.3
}
scenario_alive() {
    local p
    for p in "${SCEN_PIDS[@]}"; do alive "$p" || return 1; done
    return 0
}

start_direct() { FRONT=$1; SCEN_INFO="no relay"; }

socat_hop() { # name listen_port target_port bufopt...
    local name=$1 lp=$2 tp=$3; shift 3
    ensure_free "$lp"
    start_bg "$name" socat "$@" TCP-LISTEN:$lp,bind=127.0.0.1,reuseaddr,fork,backlog=1024 TCP:127.0.0.1:$tp
    add_root "$name" "$LAST_PID"
}
start_socat1()    { socat_hop socat "$P_FRONT" "$1"; wait_port $P_FRONT; FRONT=$P_FRONT; SCEN_INFO="socat, default -b 8192"; }
start_socat1big() { socat_hop socat "$P_FRONT" "$1" -b 131072; wait_port $P_FRONT; FRONT=$P_FRONT; SCEN_INFO="socat -b 131072"; }
start_socat2() {
    socat_hop hopB "$P_MID" "$1"; socat_hop hopA "$P_FRONT" "$P_MID"
    wait_port $P_MID; wait_port $P_FRONT; FRONT=$P_FRONT; SCEN_INFO="two socat hops, default -b 8192"
}
start_socat2big() {
    socat_hop hopB "$P_MID" "$1" -b 131072; socat_hop hopA "$P_FRONT" "$P_MID" -b 131072
    wait_port $P_MID; wait_port $P_FRONT; FRONT=$P_FRONT; SCEN_INFO="two socat hops, -b 131072 both"
}

start_ssh() {
    local target=$1 tag=$2
    make_keys
    ensure_free $P_CTL $P_FRONT
    cat >"$W/ssh/sshd_config" <<EOF
Port $P_CTL
ListenAddress 127.0.0.1
HostKey $W/ssh/host_ed25519
PidFile $W/ssh/sshd.pid
AuthorizedKeysFile $W/ssh/authorized_keys
StrictModes no
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding yes
GatewayPorts no
X11Forwarding no
PermitTTY no
UseDNS no
PrintMotd no
MaxStartups 100
LogLevel INFO
EOF
    echo "[127.0.0.1]:$P_CTL $(cat "$W/ssh/host_ed25519.pub")" >"$W/ssh/known_hosts"
    start_bg "sshd.$tag" /usr/sbin/sshd -D -e -f "$W/ssh/sshd_config"
    add_root sshd "$LAST_PID"
    wait_for 10 port_up $P_CTL || { SCEN_ERR="sshd did not listen"; return 1; }
    start_bg "ssh.$tag" ssh -F /dev/null -v -p $P_CTL -i "$W/ssh/id_ed25519" -o IdentitiesOnly=yes \
        -o UserKnownHostsFile="$W/ssh/known_hosts" -o StrictHostKeyChecking=yes -o BatchMode=yes \
        -o ExitOnForwardFailure=yes -o Compression=no -o ConnectTimeout=5 -c "$SSH_CIPHER" -N \
        -R 127.0.0.1:$P_FRONT:127.0.0.1:$target root@127.0.0.1
    add_root ssh "$LAST_PID"
    wait_for 15 port_up $P_FRONT || { SCEN_ERR="ssh -R listener did not come up"; return 1; }
    SCEN_INFO="$(ssh -V 2>&1 | cut -d, -f1), cipher $(grep -m1 -o 'server->client cipher: [^ ]*' "$W/ssh.$tag.log" | sed 's/.*: //')"
    FRONT=$P_FRONT
}

mgrok_server_ready() { grep -q "listening on 127.0.0.1:$P_CTL" "$W/mgrok-server.$1.log" 2>/dev/null; }
mgrok_client_ready() { grep -q "tcp://127.0.0.1:$P_FRONT" "$W/mgrok-client.$1.log" 2>/dev/null && port_up $P_FRONT; }
start_mgrok() {
    local target=$1 tag=$2
    ensure_free $P_CTL $P_FRONT
    # shellcheck disable=SC2086
    start_bg "mgrok-server.$tag" "$MGROK" server --addr 127.0.0.1:$P_CTL --bind-addr 127.0.0.1 \
        --start-port $P_FRONT --token bench $MGROK_SERVER_ARGS
    add_root server "$LAST_PID"
    wait_for 10 mgrok_server_ready "$tag" || { SCEN_ERR="mgrok server: no 'listening on 127.0.0.1:$P_CTL' within 10 s"; return 1; }
    # shellcheck disable=SC2086
    start_bg "mgrok-client.$tag" "$MGROK" tcp 127.0.0.1:$target --server 127.0.0.1:$P_CTL --token bench \
        --remote-port $P_FRONT $MGROK_CLIENT_ARGS
    add_root client "$LAST_PID"
    wait_for 15 mgrok_client_ready "$tag" || { SCEN_ERR="mgrok client: no 'tcp://127.0.0.1:$P_FRONT' (or port not listening) within 15 s"; return 1; }
    SCEN_INFO="$("$MGROK" --version 2>/dev/null | head -1)"
    FRONT=$P_FRONT
}

record_info() { # scenario info
    [ -n "$2" ] || return 0
    grep -qF "$1: $2" "$OUT_DIR/scenarios.txt" 2>/dev/null || echo "$1: $2" >>"$OUT_DIR/scenarios.txt"
}
scen_failed() { # family scenario tag
    note_problem "$1/$2/$3: $SCEN_ERR; log tail: $(tail -n 3 "$W"/*."$3".log 2>/dev/null | tr '\n' ' ' | cut -c1-400)"
    stop_scenario
}

# ---------------------------------------------------------------- family: tcp (iperf3)
tcp_test() { # scenario test run
    local s=$1 t=$2 r=$3 tag="$1.$2.r$3" cmd rc
    case $t in
        iperf1)  cmd=(iperf3 -c 127.0.0.1 -p "$FRONT" -t "$DUR" -J --connect-timeout 5000) ;;
        iperfP8) cmd=(iperf3 -c 127.0.0.1 -p "$FRONT" -t "$DUR" -J --connect-timeout 5000 -P 8) ;;
        iperfR)  cmd=(iperf3 -c 127.0.0.1 -p "$FRONT" -t "$DUR" -J --connect-timeout 5000 -R) ;;
        *) die "unknown test $t" ;;
    esac
    ensure_iperf_server
    timeout $((DUR + QUIET_WAIT + 60)) "$LAB_PY" "$LAB_DIR/procmon.py" "${ROOTS[@]}" --interval 0.5 --settle 1.0 \
        --self $$ --wait-quiet "$QUIET_WAIT" --timeout $((DUR + 30)) --stdout "$OUT_DIR/raw/$tag.json" \
        -- "${cmd[@]}" >"$OUT_DIR/raw/$tag.mon.json" 2>"$OUT_DIR/raw/$tag.err"
    rc=$?
    local note=""
    [ $rc = 0 ] || note="rc=$rc"
    if ! scenario_alive; then
        note="$note relay process died"
        note_problem "tcp/$s/$t/r$r: a relay process died during the test (rc=$rc); see $OUT_DIR/logs"
    elif [ $rc != 0 ]; then
        note_problem "tcp/$s/$t/r$r: iperf3 failed (rc=$rc): $(grep -o '"error":[^}]*' "$OUT_DIR/raw/$tag.json" | head -1) $(head -c 300 "$OUT_DIR/raw/$tag.err")"
    fi
    "$LAB_PY" "$BENCH/report.py" tcprow "$s" "$t" "$r" "$OUT_DIR/raw/$tag.json" "$OUT_DIR/raw/$tag.mon.json" "$note" \
        >>"$OUT_DIR/tcp.tsv"
    tail -n1 "$OUT_DIR/tcp.tsv" | cut -f1-8 >&2
    return 0
}

family_tcp() {
    [ -f "$OUT_DIR/tcp.tsv" ] || printf 'scenario\ttest\trun\tgbps\trelay_cpu_s\twall_s\tother_cpu_pct\tretrans\trelay_peak_rss_kb\terror\troots\n' >"$OUT_DIR/tcp.tsv"
    start_iperf_server
    local r s t
    for r in $(seq 1 "$RUNS"); do
        for s in $SCENARIOS; do
            log "=== tcp round $r/$RUNS scenario $s"
            if ! start_scenario "$s" "$IPERF_PORT" "tcp.r$r"; then
                scen_failed tcp "$s" "tcp.r$r"
                for t in $TESTS; do printf '%s\t%s\t%s\t\t\t\t\t\t\t%s\t{}\n' "$s" "$t" "$r" "start failed" >>"$OUT_DIR/tcp.tsv"; done
                continue
            fi
            record_info "$s" "$SCEN_INFO"
            for t in $TESTS; do
                if scenario_alive; then tcp_test "$s" "$t" "$r"
                else printf '%s\t%s\t%s\t\t\t\t\t\t\t%s\t{}\n' "$s" "$t" "$r" "relay dead" >>"$OUT_DIR/tcp.tsv"; fi
            done
            stop_scenario
        done
    done
    stop_pids "$IPERF_PID"
}

# ---------------------------------------------------------------- family: mem (idle connections)
hold_client_done() { grep -q "done" "$W/holdcli.status" 2>/dev/null; }
hold_reached() { [ "$(hold_count)" -ge "$1" ]; }
hold_drained() { [ "$(hold_count)" -le 0 ]; }

mem_snapshot() { "$LAB_PY" "$BENCH/report.py" snap "${ROOT_PIDS[@]}"; }   # "name:rss_kb:nproc ..."

mem_one() { # scenario run
    local s=$1 r=$2 tag="mem.r$2" idle held after opened cli_status note="" closed=yes
    hold_drained || wait_for 10 hold_drained || note_problem "mem/$s/r$r: holder still has $(hold_count) connections from before"
    if ! start_scenario "$s" "$HOLD_PORT" "$tag"; then
        scen_failed mem "$s" "$tag"
        printf '%s\t%s\t%s\t\t\t\t0\t0\t\t%s\n' "$s" "$r" "$MEM_CONNS" "start failed" >>"$OUT_DIR/mem.tsv"
        return 0
    fi
    record_info "$s" "$SCEN_INFO"
    sleep 2
    idle=$(mem_snapshot)
    rm -f "$W/holdcli.status"
    start_bg "holdcli.$s.$tag" "$LAB_PY" "$LAB_DIR/holdconns.py" client --port "$FRONT" --count "$MEM_CONNS" \
        --rate 500 --status "$W/holdcli.status" --max-time 600
    local cli=$LAST_PID
    wait_for $((MEM_CONNS / 100 + 60)) hold_client_done || note="client did not finish opening"
    wait_for 30 hold_reached "$MEM_CONNS" || {
        note="${note:+$note; }backend holds $(hold_count) of $MEM_CONNS"
        note_problem "mem/$s/r$r: only $(hold_count) of $MEM_CONNS connections reached the service behind the tunnel within 30 s (client: $(cat "$W/holdcli.status" 2>/dev/null))"
    }
    sleep 2
    held=$(mem_snapshot)
    opened=$(hold_count)
    cli_status=$(cat "$W/holdcli.status" 2>/dev/null)
    scenario_alive || { note="${note:+$note; }relay died"; note_problem "mem/$s/r$r: a relay process died while holding connections"; }
    stop_pids "$cli"
    if ! wait_for 20 hold_drained; then
        closed="no ($(hold_count) left)"
        note_problem "mem/$s/r$r: $(hold_count) of $opened backend connections still open 20 s after the users closed theirs"
    fi
    sleep 1
    after=$(mem_snapshot)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$r" "$MEM_CONNS" "$idle" "$held" "$after" "$opened" \
        "${cli_status// /,}" "$closed" "$note" >>"$OUT_DIR/mem.tsv"
    tail -n1 "$OUT_DIR/mem.tsv" >&2
    stop_scenario
    wait_for 10 hold_drained || true
}

family_mem() {
    [ -f "$OUT_DIR/mem.tsv" ] || printf 'scenario\trun\ttarget_conns\tidle\theld\tafter_close\tbackend_held\tclient_status\tclosed\tnote\n' >"$OUT_DIR/mem.tsv"
    start_hold_server
    local r s
    for r in $(seq 1 "$MEM_RUNS"); do
        for s in $MEM_SCENARIOS; do
            log "=== mem round $r/$MEM_RUNS scenario $s ($MEM_CONNS connections)"
            mem_one "$s" "$r"
        done
    done
    stop_pids "$HOLD_PID"
}

# ---------------------------------------------------------------- main
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "nproc: $(nproc)"
    echo "cpu: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)"
    echo "kernel: $(uname -srm)"
    echo "memory: $(awk '/^MemTotal:/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "mgrok: $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo 'no commit yet (working tree)')$([ $need_mgrok = 1 ] && \
        echo ", $("$MGROK" --version 2>/dev/null | head -1), binary sha256 $(sha256sum "$MGROK" | cut -c1-16) built $(date -u -r "$MGROK_SRC" '+%Y-%m-%d %H:%M:%S UTC')")"
    echo "tools: $(iperf3 --version | head -1 | cut -d' ' -f1-2), $(socat -V | sed -n 2p | cut -d' ' -f1-3), $(ssh -V 2>&1 | cut -d, -f1), $(uname -s) loopback"
    echo "command: $COMMAND"
    echo "knobs: RUNS=$RUNS DUR=$DUR BASE_PORT=$BASE_PORT TESTS=\"$TESTS\" SCENARIOS=\"$SCENARIOS\" MEM_SCENARIOS=\"$MEM_SCENARIOS\" MEM_CONNS=$MEM_CONNS MEM_RUNS=$MEM_RUNS FAMILIES=\"$FAMILIES\""
} >"$OUT_DIR/info.txt"
: >"$OUT_DIR/scenarios.txt"
cat "$OUT_DIR/info.txt" >&2

for f in $FAMILIES; do
    declare -F "family_$f" >/dev/null || die "unknown family $f"
    log "##### family $f"
    "family_$f"
done

mkdir -p "$(dirname "$RESULTS")"
"$LAB_PY" "$BENCH/report.py" md "$OUT_DIR" >"$RESULTS.tmp" && mv "$RESULTS.tmp" "$RESULTS" \
    || die "report failed"
cp "$RESULTS" "$OUT_DIR/RESULTS.md" 2>/dev/null
cat "$RESULTS"
log "raw outputs in $OUT_DIR; results in $RESULTS"
