#!/usr/bin/env bash
# bench/run.sh - mgrok against its comparison peers, on 127.0.0.1 only (`make bench`).
#
#   bench/run.sh                      # RUNS=3 DUR=10, all families, writes bench/RESULTS.md
#   QUICK=1 bench/run.sh              # smoke test: RUNS=1 DUR=2 (writes $OUT_DIR/RESULTS.md)
#   SCENARIOS="direct socat2big" FAMILIES=tcp QUICK=1 bench/run.sh
#
# Families (FAMILIES, default "tcp mem udp tls http"), each one function family_<name> that
# appends rows to $OUT_DIR/<name>.tsv; bench/report.py turns every TSV present into a
# section of RESULTS.md plus computed target rows:
#   tcp   iperf3 through each scenario: 1 stream and -P 8 (TESTS), DUR s, RUNS rounds,
#         rounds interleaved across scenarios; relay CPU seconds from the lab's procmon.py.
#   mem   VmRSS of the relay processes at idle and while holding MEM_CONNS (1000) idle
#         proxied connections end to end (a counting holder service behind the tunnel).
#   udp   iperf3 -u (UDP_SCENARIOS "direct socat2u mgroku"), same iperf3 options on every
#         path (UDP_IPERF_OPTS, default -w 4M): 1400-byte datagrams at 1 Gbit/s offered
#         (DUR s); a bounded search for the highest offered rate with < 1 % loss (steps 2, 3,
#         4 Gbit/s after the 1 Gbit/s test, then UDP_BISECT (2) bisections; probes of
#         UDP_PROBE_DUR s); 64-byte datagrams at UDP_PPS (200000) packets/s offered (DUR/2 s).
#   tls   iperf3 1 stream and -P 8 (TLS_TESTS) through TLS tunnels (TLS_SCENARIOS "mgroktls
#         stunnel ssh"), and new TLS connections per second (CONN_TESTS "conn1 conn8":
#         1 or 8 at a time, CONN_COUNT (2000) or DUR s, whichever first) through
#         `mgrok connect` (stream proxy, mTLS) and the stunnel pair (mTLS, no resumption)
#         to a service that sends one byte and closes (bench/connrate.py).
#   http  wrk -t2 -c64, wrk -t1 -c1, and wrk -t1 -c1 with every process on CPU 0
#         (HTTP_TESTS "wrk64 wrk1 wrk1cpu0") --latency on nginx's 100-byte page
#         (HTTP_SCENARIOS "direct mgrokhttp mgrok socat2"), and the machine's round-trip
#         floor (bench/pingpong.py).
# Scenarios (SCENARIOS for tcp, MEM_SCENARIOS for mem); each is start_<name> TARGET_PORT,
# which sets FRONT (the port users connect to), ROOTS (name=pid, the relay processes)
# and SCEN_PIDS; stop_scenario ends them. Reusable by later families (UDP, TLS, HTTP):
#   direct      user -> backend
#   socat2big   user -> socat -b 131072 -> socat -b 131072 -> backend (fork mode)
#   socat2      same with socat's default 8 KiB buffers;  socat1 / socat1big: one hop
#   ssh         user -> sshd [-R listener] => one SSH conn (aes128-gcm) => ssh -> backend
#   mgrok       user -> mgrok server => one tunnel conn => mgrok tcp (client) -> backend
#   socat2u     UDP: socat UDP4-LISTEN,fork -> socat UDP4-LISTEN,fork -> backend (rcvbuf 4 MiB),
#               plus a two-hop TCP socat chain on the same port numbers (iperf3's control)
#   mgroku      mgrok udp + mgrok tcp clients (two --client-id) on the same public port
#   mgroktls    mgrok with --tls (mgrok certs; mTLS: --tls-client-ca, client certificates),
#               --stream-allow to the conn service, and `mgrok connect --listen` beside it
#   stunnel     stunnel client =TLS 1.3=> stunnel server (mTLS, sessionResume = no)
#   mgrokhttp   user -> mgrok server HTTP vhost (Host: b.tun.test) => mgrok http -> backend
#   mgrokhttpbp the same with --busy-poll $BUSY_POLL_US on the server and the client
#
# Env knobs: RUNS (3) DUR (10) QUICK (1 = RUNS=1 DUR=2) BASE_PORT (26200; uses BASE_PORT..+199)
#   SCENARIOS ("direct socat2big ssh mgrok") TESTS ("iperf1 iperfP8"; also iperfR)
#   MEM_SCENARIOS ("mgrok ssh") MEM_CONNS (1000) MEM_RUNS (=RUNS) FAMILIES ("tcp mem udp tls http")
#   UDP_SCENARIOS UDP_IPERF_OPTS UDP_BISECT UDP_PROBE_DUR UDP_PPS TLS_SCENARIOS TLS_TESTS
#   CONN_SCENARIOS ("mgroktls stunnel") CONN_TESTS CONN_COUNT HTTP_SCENARIOS HTTP_TESTS
#   (see the families above). KEEP_FROM (default: the run directory named at the end of the
#   current RESULTS, when FAMILIES is not all five and QUICK is off; "none" to disable): the
#   sections of families not run now are kept from that earlier run (its TSVs are copied, and
#   RESULTS says which families come from which run).
#   OUT_DIR (raw outputs; /tmp/mgrok-bench/run-DATE) RESULTS (bench/RESULTS.md, or
#   $OUT_DIR/RESULTS.md when QUICK=1) QUIET_WAIT (60 s max wait for a quiet machine per test)
#   SSH_CIPHER (aes128-gcm@openssh.com) MGROK (build/mgrok) MGROK_SERVER_ARGS / MGROK_CLIENT_ARGS
#   (extra arguments) LAB_DIR (bench/lab: lib.sh, procmon.py, holdconns.py) KEEP_WORK (keep temp dir)
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
         MGROK_SERVER_ARGS MGROK_CLIENT_ARGS UDP_SCENARIOS UDP_IPERF_OPTS UDP_BISECT UDP_PROBE_DUR UDP_PPS \
         TLS_SCENARIOS TLS_TESTS CONN_SCENARIOS CONN_TESTS CONN_COUNT HTTP_SCENARIOS HTTP_TESTS; do
    [ -n "${!v+x}" ] && ENV_SET+="$v=$(printf '%q' "${!v}") "
done

LAB_DIR=${LAB_DIR:-$BENCH/lab}
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
UDP_PROBE_DUR=${UDP_PROBE_DUR:-$([ "$DUR" -ge 8 ] && echo 2 || echo 1)}
BASE_PORT=${BASE_PORT:-26200}
SCENARIOS=${SCENARIOS:-"direct socat2big ssh mgrok"}
TESTS=${TESTS:-"iperf1 iperfP8"}
MEM_SCENARIOS=${MEM_SCENARIOS:-"mgrok ssh"}
MEM_CONNS=${MEM_CONNS:-1000}
MEM_RUNS=${MEM_RUNS:-$RUNS}
FAMILIES=${FAMILIES:-"tcp mem udp tls http"}
UDP_SCENARIOS=${UDP_SCENARIOS:-"direct socat2u mgroku"}
UDP_IPERF_OPTS=${UDP_IPERF_OPTS:-"-w 4M"}
UDP_BISECT=${UDP_BISECT:-2}
UDP_PPS=${UDP_PPS:-200000}
TLS_SCENARIOS=${TLS_SCENARIOS:-"mgroktls stunnel ssh"}
TLS_TESTS=${TLS_TESTS:-"iperf1 iperfP8"}
CONN_SCENARIOS=${CONN_SCENARIOS:-"mgroktls stunnel"}
CONN_TESTS=${CONN_TESTS:-"conn1 conn8"}
CONN_COUNT=${CONN_COUNT:-2000}
HTTP_SCENARIOS=${HTTP_SCENARIOS:-"direct mgrokhttp mgrokhttpbp mgrok socat2"}
BUSY_POLL_US=${BUSY_POLL_US:-200}
HTTP_TESTS=${HTTP_TESTS:-"wrk64 wrk1 wrk1cpu0"}
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
HTTP_PORT=$((BASE_PORT + 3))     # nginx, 100-byte page
CONN_PORT=$((BASE_PORT + 4))     # connrate.py service: one byte, then close
ALL_SCENARIOS="direct socat1 socat1big socat2 socat2big ssh mgrok socat2u mgroku stunnel mgroktls mgrokhttp mgrokhttpbp"

# ---------------------------------------------------------------- setup
ensure_pkgs iperf3 socat openssh-server openssh-client python3 procps iproute2 openssl
case " $FAMILIES " in *" tls "*) ensure_pkgs stunnel4 ;; esac
case " $FAMILIES " in *" http "*) ensure_pkgs wrk nginx-light curl ;; esac
ulimit -n 20000 2>/dev/null || ulimit -n 8192 2>/dev/null || true
[ "$(ulimit -n)" -ge 8192 ] || die "ulimit -n is $(ulimit -n); need >= 8192"

ALL_USED=""
for f in $FAMILIES; do
    case $f in
        tcp) ALL_USED+=" $SCENARIOS" ;; mem) ALL_USED+=" $MEM_SCENARIOS" ;; udp) ALL_USED+=" $UDP_SCENARIOS" ;;
        tls) ALL_USED+=" $TLS_SCENARIOS $CONN_SCENARIOS" ;; http) ALL_USED+=" $HTTP_SCENARIOS" ;;
    esac
done
for s in $ALL_USED; do
    case " $ALL_SCENARIOS " in *" $s "*) ;; *) die "unknown scenario $s (known: $ALL_SCENARIOS)" ;; esac
done

need_mgrok=0
case " $ALL_USED " in *" mgrok"*) need_mgrok=1 ;; esac

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
    b=$((BASE_PORT + 100 + $(scen_index "$s") * 6))     # 6 ports per scenario: b+0..b+5
    P_FRONT=$((b + 1)); P_MID=$((b + 2)); P_AUX1=$((b + 3)); P_AUX2=$((b + 4)); P_CTL=$((b + 5))
    ROOTS=(); ROOT_PIDS=(); SCEN_PIDS=(); SCEN_INFO=""; SCEN_ERR=""; FRONT=""; FRONT_CONN=""; WRK_HDR=()
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

# ---- UDP: two socat hops (UDP relay plus a TCP relay on the same port numbers for iperf3's control)
udp_up() { ss -Hlun "sport = :$1" 2>/dev/null | grep -q .; }
start_socat2u() {
    local target=$1 ub="rcvbuf=4194304"
    socat_hop hopB_tcp "$P_MID" "$target"; socat_hop hopA_tcp "$P_FRONT" "$P_MID"
    start_bg "hopB_udp.$2" socat UDP4-LISTEN:$P_MID,bind=127.0.0.1,reuseaddr,fork,$ub UDP4:127.0.0.1:$target,$ub
    add_root hopB_udp "$LAST_PID"
    start_bg "hopA_udp.$2" socat UDP4-LISTEN:$P_FRONT,bind=127.0.0.1,reuseaddr,fork,$ub UDP4:127.0.0.1:$P_MID,$ub
    add_root hopA_udp "$LAST_PID"
    wait_for 10 port_up $P_MID && wait_for 10 port_up $P_FRONT && wait_for 10 udp_up $P_MID && wait_for 10 udp_up $P_FRONT \
        || { SCEN_ERR="socat relays did not come up"; return 1; }
    FRONT=$P_FRONT; SCEN_INFO="two socat hops: UDP4-LISTEN,fork -> UDP4 (rcvbuf 4 MiB, -b 8192) and TCP (default -b 8192) on the same ports"
}

# ---- UDP: mgrok udp + mgrok tcp on the same public port (two clients, two client ids, one server)
mgrok_uclient_ready() { grep -q "udp://127.0.0.1:$P_FRONT" "$W/mgrok-uclient.$1.log" 2>/dev/null && udp_up $P_FRONT; }
start_mgroku() {
    local target=$1 tag=$2
    ensure_free $P_CTL $P_FRONT
    # shellcheck disable=SC2086
    start_bg "mgrok-server.$tag" "$MGROK" server --addr 127.0.0.1:$P_CTL --bind-addr 127.0.0.1 \
        --start-port $P_FRONT --token bench $MGROK_SERVER_ARGS
    add_root server "$LAST_PID"
    wait_for 10 mgrok_server_ready "$tag" || { SCEN_ERR="mgrok server: no 'listening on 127.0.0.1:$P_CTL' within 10 s"; return 1; }
    # shellcheck disable=SC2086
    start_bg "mgrok-client.$tag" "$MGROK" tcp 127.0.0.1:$target --server 127.0.0.1:$P_CTL --token bench \
        --remote-port $P_FRONT --client-id 0000000000000000000000000000000a $MGROK_CLIENT_ARGS
    add_root client_tcp "$LAST_PID"
    # shellcheck disable=SC2086
    start_bg "mgrok-uclient.$tag" "$MGROK" udp 127.0.0.1:$target --server 127.0.0.1:$P_CTL --token bench \
        --remote-port $P_FRONT --client-id 0000000000000000000000000000000b $MGROK_CLIENT_ARGS
    add_root client_udp "$LAST_PID"
    wait_for 15 mgrok_client_ready "$tag" || { SCEN_ERR="mgrok tcp client: no 'tcp://127.0.0.1:$P_FRONT' within 15 s"; return 1; }
    wait_for 15 mgrok_uclient_ready "$tag" || { SCEN_ERR="mgrok udp client: no 'udp://127.0.0.1:$P_FRONT' within 15 s"; return 1; }
    SCEN_INFO="$("$MGROK" --version 2>/dev/null | head -1); mgrok udp + mgrok tcp, two clients (--client-id ...a, ...b), one server, same public port"
    FRONT=$P_FRONT
}

# ---- TLS: certificates from `mgrok certs` (ECDSA P-256 CA, server and client certificates)
make_pki() {
    [ -f "$W/pki/server.pem" ] && return 0
    "$MGROK" certs --out "$W/pki" --hosts 127.0.0.1,localhost >"$W/certs.log" 2>&1 || die "mgrok certs failed: $(tail -3 "$W/certs.log")"
}
mgrok_connect_ready() { grep -q "Listening on 127.0.0.1:$P_MID" "$W/mgrok-connect.$1.log" 2>/dev/null && port_up $P_MID; }
start_mgroktls() {
    local target=$1 tag=$2 P="$W/pki"
    make_pki
    ensure_free $P_CTL $P_FRONT $P_MID
    # shellcheck disable=SC2086
    start_bg "mgrok-server.$tag" "$MGROK" server --addr 127.0.0.1:$P_CTL --bind-addr 127.0.0.1 \
        --start-port $P_FRONT --token bench --tls --tls-cert $P/server.pem --tls-key $P/server.key \
        --tls-client-ca $P/ca.pem --stream-allow 127.0.0.1:$CONN_PORT $MGROK_SERVER_ARGS
    add_root server "$LAST_PID"
    wait_for 10 mgrok_server_ready "$tag" || { SCEN_ERR="mgrok server: no 'listening on 127.0.0.1:$P_CTL' within 10 s"; return 1; }
    # shellcheck disable=SC2086
    start_bg "mgrok-client.$tag" "$MGROK" tcp 127.0.0.1:$target --server 127.0.0.1:$P_CTL --token bench \
        --remote-port $P_FRONT --tls --tls-ca $P/ca.pem --tls-cert $P/client.pem --tls-key $P/client.key $MGROK_CLIENT_ARGS
    add_root client "$LAST_PID"
    start_bg "mgrok-connect.$tag" "$MGROK" connect --server 127.0.0.1:$P_CTL --to 127.0.0.1:$CONN_PORT \
        --listen 127.0.0.1:$P_MID --tls-ca $P/ca.pem --tls-cert $P/client.pem --tls-key $P/client.key
    add_root connect "$LAST_PID"
    wait_for 15 mgrok_client_ready "$tag" || { SCEN_ERR="mgrok client: no 'tcp://127.0.0.1:$P_FRONT' within 15 s"; return 1; }
    wait_for 15 mgrok_connect_ready "$tag" || { SCEN_ERR="mgrok connect: no 'Listening on 127.0.0.1:$P_MID' within 15 s"; return 1; }
    SCEN_INFO="$("$MGROK" --version 2>/dev/null | head -1); --tls with mTLS (mgrok certs, ECDSA P-256), tunnel: mgrok tcp --tls; new connections: mgrok connect --listen (one TLS connection to the server per local connection)"
    FRONT=$P_FRONT; FRONT_CONN=$P_MID
}

# stunnel pair as the lab's baselines.sh starts it, plus client certificates (verifyChain) and no
# session resumption, so each user connection costs a full handshake as through mgrok connect.
start_stunnel() {
    local target=$1 tag=$2 P="$W/pki"
    make_pki
    ensure_free $P_FRONT $P_MID $P_AUX1 $P_AUX2
    cat >"$W/stunnel-server.$tag.conf" <<EOC
foreground = yes
pid =
debug = 5
output = $W/stunnel-server.$tag.out
cert = $P/server.pem
key = $P/server.key
CAfile = $P/ca.pem
verifyChain = yes
sessionResume = no
[tunnel]
accept = 127.0.0.1:$P_MID
connect = 127.0.0.1:$target
[conn]
accept = 127.0.0.1:$P_AUX2
connect = 127.0.0.1:$CONN_PORT
EOC
    cat >"$W/stunnel-client.$tag.conf" <<EOC
foreground = yes
pid =
debug = 5
output = $W/stunnel-client.$tag.out
client = yes
cert = $P/client.pem
key = $P/client.key
CAfile = $P/ca.pem
verifyChain = yes
sessionResume = no
[tunnel]
accept = 127.0.0.1:$P_FRONT
connect = 127.0.0.1:$P_MID
[conn]
accept = 127.0.0.1:$P_AUX1
connect = 127.0.0.1:$P_AUX2
EOC
    start_bg "stunnel-server.$tag" stunnel4 "$W/stunnel-server.$tag.conf"
    add_root stunnel_srv "$LAST_PID"
    start_bg "stunnel-client.$tag" stunnel4 "$W/stunnel-client.$tag.conf"
    add_root stunnel_cli "$LAST_PID"
    local p
    for p in $P_FRONT $P_MID $P_AUX1 $P_AUX2; do wait_for 10 port_up $p || { SCEN_ERR="stunnel did not listen on $p"; return 1; }; done
    SCEN_INFO="$(stunnel4 -version 2>&1 | grep -m1 -o 'stunnel [0-9.]*'), mTLS (verifyChain, mgrok certs), sessionResume = no; $(echo | timeout 5 openssl s_client \
        -connect 127.0.0.1:$P_AUX2 -cert $P/client.pem -key $P/client.key -CAfile $P/ca.pem -brief 2>&1 | grep -E '^(Protocol version|Ciphersuite)' | tr '\n' ' ')"
    FRONT=$P_FRONT; FRONT_CONN=$P_AUX1
}

# ---- HTTP: the server's HTTP vhost (--domain tun.test --http-addr), `mgrok http --subdomain b`
mgrok_hclient_ready() { grep -q "http://b.tun.test:$P_MID" "$W/mgrok-client.$1.log" 2>/dev/null; }
start_mgrokhttp() {
    local target=$1 tag=$2
    ensure_free $P_CTL $P_MID
    # shellcheck disable=SC2086
    start_bg "mgrok-server.$tag" "$MGROK" server --addr 127.0.0.1:$P_CTL --bind-addr 127.0.0.1 \
        --start-port $P_FRONT --token bench --domain tun.test --http-addr 127.0.0.1:$P_MID $MGROK_SERVER_ARGS
    add_root server "$LAST_PID"
    wait_for 10 mgrok_server_ready "$tag" || { SCEN_ERR="mgrok server: no 'listening on 127.0.0.1:$P_CTL' within 10 s"; return 1; }
    wait_for 10 port_up $P_MID || { SCEN_ERR="mgrok server: HTTP listener $P_MID not up"; return 1; }
    # shellcheck disable=SC2086
    start_bg "mgrok-client.$tag" "$MGROK" http 127.0.0.1:$target --server 127.0.0.1:$P_CTL --token bench \
        --subdomain b $MGROK_CLIENT_ARGS
    add_root client "$LAST_PID"
    wait_for 15 mgrok_hclient_ready "$tag" || { SCEN_ERR="mgrok http client: no 'http://b.tun.test:$P_MID' within 15 s"; return 1; }
    SCEN_INFO="$("$MGROK" --version 2>/dev/null | head -1); HTTP vhost, Host: b.tun.test"
    FRONT=$P_MID; WRK_HDR=(-H "Host: b.tun.test")
}

start_mgrokhttpbp() {
    MGROK_SERVER_ARGS="$MGROK_SERVER_ARGS --busy-poll $BUSY_POLL_US" \
        MGROK_CLIENT_ARGS="$MGROK_CLIENT_ARGS --busy-poll $BUSY_POLL_US" start_mgrokhttp "$@" || return 1
    SCEN_INFO="$SCEN_INFO; --busy-poll $BUSY_POLL_US on the server and the client"
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
tcp_test() { # scenario test run [family: tcp (default) or tls; rows go to $OUT_DIR/<family>.tsv]
    local s=$1 t=$2 r=$3 fam=${4:-tcp} tag="$1.$2.r$3" cmd rc
    [ "$fam" = tcp ] || tag="$fam.$tag"
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
        note_problem "$fam/$s/$t/r$r: a relay process died during the test (rc=$rc); see $OUT_DIR/logs"
    elif [ $rc != 0 ]; then
        note_problem "$fam/$s/$t/r$r: iperf3 failed (rc=$rc): $(grep -o '"error":[^}]*' "$OUT_DIR/raw/$tag.json" | head -1) $(head -c 300 "$OUT_DIR/raw/$tag.err")"
    fi
    "$LAB_PY" "$BENCH/report.py" tcprow "$s" "$t" "$r" "$OUT_DIR/raw/$tag.json" "$OUT_DIR/raw/$tag.mon.json" "$note" \
        >>"$OUT_DIR/$fam.tsv"
    tail -n1 "$OUT_DIR/$fam.tsv" | cut -f1-8 >&2
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

# ---------------------------------------------------------------- shared by the udp, tls, http families
# mon_run TAG SECONDS CMD...: run CMD under the lab's procmon.py (relay CPU, quiet-machine wait);
# CMD's stdout -> raw/TAG.out, procmon JSON -> raw/TAG.mon.json. Returns CMD's status.
mon_run() {
    local tag=$1 secs=$2; shift 2
    timeout $((secs + QUIET_WAIT + 60)) "$LAB_PY" "$LAB_DIR/procmon.py" "${ROOTS[@]}" --interval 0.5 --settle 1.0 \
        --self $$ --wait-quiet "$QUIET_WAIT" --timeout $((secs + 30)) --stdout "$OUT_DIR/raw/$tag.out" \
        -- "$@" >"$OUT_DIR/raw/$tag.mon.json" 2>"$OUT_DIR/raw/$tag.err"
}
# after_test FAMILY/SCEN/TEST/RUN RC WHAT: note_problem when a relay died or the load generator failed;
# prints the note for the row.
after_test() {
    local what=$1 rc=$2 gen=$3 note=""
    [ "$rc" = 0 ] || note="rc=$rc"
    if ! scenario_alive; then
        note="$note relay process died"
        note_problem "$what: a relay process died during the test (rc=$rc); see $OUT_DIR/logs"
    elif [ "$rc" != 0 ]; then
        note_problem "$what: $gen failed (rc=$rc): $(grep -o '"error":[^}]*' "$OUT_DIR/raw/${what//\//.}.out" 2>/dev/null | head -1) $(head -c 300 "$OUT_DIR/raw/${what//\//.}.err" 2>/dev/null | tr '\n' ' ')"
    fi
    echo "$note"
}
in_list() { case " $2 " in *" $1 "*) return 0 ;; esac; return 1; }
fail_rows() { # file scenario run tests... : rows for a scenario that did not start
    local f=$1 s=$2 r=$3 t; shift 3
    for t in "$@"; do printf '%s\t%s\t%s\tstart failed\n' "$s" "$t" "$r" >>"$OUT_DIR/$f.tsv"; done
}

# ---------------------------------------------------------------- family: udp (iperf3 -u)
# UDP datagrams the kernel dropped because a receiving socket's buffer was full (system-wide,
# /proc/net/snmp Udp RcvbufErrors): on loopback that is iperf3's server socket, a relay's socket,
# or mgrok's public / local sockets. Its change over a test goes into the row (kernel_rcvbuf_drops).
udp_rcvbuf_errors() {
    awk '/^Udp:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "RcvbufErrors") c = i; h = 1 } else { print $c; exit } }' /proc/net/snmp
}
# udp_test SCEN TEST RUN BITS_PER_S LEN SECONDS MON: one iperf3 -u run, one udp.tsv row; U_PASS=1
# when it finished with < 1 % loss.
udp_test() {
    local s=$1 t=$2 r=$3 bps=$4 len=$5 secs=$6 mon=$7 tag rc note cmd
    U_PROBE=$((${U_PROBE:-0} + 1))
    tag="udp.$s.$t.r$r.$U_PROBE"
    # shellcheck disable=SC2206
    cmd=(iperf3 -c 127.0.0.1 -p "$FRONT" -u -l "$len" -b "$bps" $UDP_IPERF_OPTS -t "$secs" -J --connect-timeout 5000)
    ensure_iperf_server
    local rb0 rb1
    rb0=$(udp_rcvbuf_errors)
    if [ "$mon" = 1 ]; then
        mon_run "$tag" "$secs" "${cmd[@]}"; rc=$?
    else
        timeout $((secs + 30)) "${cmd[@]}" >"$OUT_DIR/raw/$tag.out" 2>"$OUT_DIR/raw/$tag.err"; rc=$?
        echo '{}' >"$OUT_DIR/raw/$tag.mon.json"
    fi
    rb1=$(udp_rcvbuf_errors)
    note=$(after_test "udp/$s/$t/r$r.$U_PROBE" $rc "iperf3 -u (-l $len -b $bps)")
    "$LAB_PY" "$BENCH/report.py" udprow "$s" "$t" "$r" "$bps" "$len" "$OUT_DIR/raw/$tag.out" "$OUT_DIR/raw/$tag.mon.json" "$note" \
        "$((rb1 - rb0))" >>"$OUT_DIR/udp.tsv"
    tail -n1 "$OUT_DIR/udp.tsv" | cut -f1-10 >&2
    U_PASS=$(tail -n1 "$OUT_DIR/udp.tsv" | awk -F'\t' '$8 != "" && $8 + 0 < 1 && $13 == "" {print 1; exit} {print 0}')
}

# mgrok's own UDP counters (from the summaries it logs on SIGTERM) for one round
udp_counters() { # scen run tag
    local srv cli
    srv=$(grep -h 'udp "udp-' "$W/mgrok-server.$3.log" 2>/dev/null | tail -1 | sed 's/^.*INFO  *//')
    cli=$(grep -h 'udp://' "$W/mgrok-uclient.$3.log" 2>/dev/null | grep -v Forwarding | tail -1 | sed 's/^mgrok: *//')
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "${srv:-no server summary}" "${cli:-no client summary}" >>"$OUT_DIR/udp_counters.tsv"
}

family_udp() {
    [ -f "$OUT_DIR/udp.tsv" ] || printf 'scenario\ttest\trun\ttarget_mbps\tlen\tsent_gbps\trecv_gbps\tlost_pct\tsent_pps\trecv_pps\trelay_cpu_s\tother_cpu_pct\terror\tkernel_rcvbuf_drops\n' >"$OUT_DIR/udp.tsv"
    start_iperf_server
    local r s lo hi m i pps_bps=$((UDP_PPS * 64 * 8)) pdur=$(( DUR / 2 > 0 ? DUR / 2 : 1 ))
    for r in $(seq 1 "$RUNS"); do
        for s in $UDP_SCENARIOS; do
            log "=== udp round $r/$RUNS scenario $s"
            if ! start_scenario "$s" "$IPERF_PORT" "udp.r$r"; then
                scen_failed udp "$s" "udp.r$r"; fail_rows udp "$s" "$r" u1g pps64; continue
            fi
            record_info "$s" "$SCEN_INFO"
            # 1400-byte datagrams at 1 Gbit/s offered; it is also the first step of the search
            udp_test "$s" u1g "$r" 1000000000 1400 "$DUR" 1
            lo=0; hi=""
            if [ "$U_PASS" = 1 ]; then
                lo=1000
                for m in 2000 3000 4000; do
                    scenario_alive || break
                    udp_test "$s" probe "$r" "${m}000000" 1400 "$UDP_PROBE_DUR" 0
                    if [ "$U_PASS" = 1 ]; then lo=$m; else hi=$m; break; fi
                done
            else
                hi=1000
            fi
            if [ -n "$hi" ]; then
                for i in $(seq 1 "$UDP_BISECT"); do
                    scenario_alive || break
                    m=$(( (lo + hi) / 2 ))
                    udp_test "$s" probe "$r" "${m}000000" 1400 "$UDP_PROBE_DUR" 0
                    if [ "$U_PASS" = 1 ]; then lo=$m; else hi=$m; fi
                done
            fi
            log "udp $s round $r: highest offered rate with < 1 % loss: $lo Mbit/s (first failing: ${hi:-none tried})"
            # 64-byte datagrams at UDP_PPS packets/s offered
            if scenario_alive; then udp_test "$s" pps64 "$r" "$pps_bps" 64 "$pdur" 1
            else printf '%s\tpps64\t%s\t\t\t\t\t\t\t\t\t\trelay dead\n' "$s" "$r" >>"$OUT_DIR/udp.tsv"; fi
            # stop the clients before the server, so both log their UDP summaries
            local k
            for (( k=${#SCEN_PIDS[@]}-1; k>=0; k-- )); do stop_pids "${SCEN_PIDS[$k]}"; done
            SCEN_PIDS=()
            [ "$s" = mgroku ] && udp_counters "$s" "$r" "udp.r$r"
            sleep 0.3
        done
    done
    stop_pids "$IPERF_PID"
}

# ---------------------------------------------------------------- family: tls (throughput + new connections/s)
start_conn_server() {
    ensure_free "$CONN_PORT"
    start_bg conn-server "$LAB_PY" "$BENCH/connrate.py" server --port "$CONN_PORT" --max-time 7200
    CONN_PID=$LAST_PID
    wait_port "$CONN_PORT"
}
conn_test() { # scenario test run
    local s=$1 t=$2 r=$3 tag="conn.$1.$2.r$3" rc note conc=${2#conn}
    alive "$CONN_PID" || { stop_pids "$CONN_PID"; start_conn_server; }
    mon_run "$tag" "$DUR" "$LAB_PY" "$BENCH/connrate.py" client --port "$FRONT_CONN" --count "$CONN_COUNT" \
        --conc "$conc" --max-time "$DUR"
    rc=$?
    note=$(after_test "conn/$s/$t/r$r" $rc "connrate.py client")
    "$LAB_PY" "$BENCH/report.py" connrow "$s" "$t" "$r" "$OUT_DIR/raw/$tag.out" "$OUT_DIR/raw/$tag.mon.json" "$note" \
        >>"$OUT_DIR/conn.tsv"
    tail -n1 "$OUT_DIR/conn.tsv" | cut -f1-10 >&2
}

family_tls() {
    [ -f "$OUT_DIR/tls.tsv" ] || printf 'scenario\ttest\trun\tgbps\trelay_cpu_s\twall_s\tother_cpu_pct\tretrans\trelay_peak_rss_kb\terror\troots\n' >"$OUT_DIR/tls.tsv"
    [ -f "$OUT_DIR/conn.tsv" ] || printf 'scenario\ttest\trun\tconc\tok\tfailed\tseconds\tconn_per_s\tp50_ms\tp99_ms\trelay_cpu_s\tother_cpu_pct\terror\n' >"$OUT_DIR/conn.tsv"
    start_iperf_server
    start_conn_server
    local r s t all=""
    for s in $TLS_SCENARIOS $CONN_SCENARIOS; do in_list "$s" "$all" || all+=" $s"; done
    for r in $(seq 1 "$RUNS"); do
        for s in $all; do
            log "=== tls round $r/$RUNS scenario $s"
            if ! start_scenario "$s" "$IPERF_PORT" "tls.r$r"; then
                scen_failed tls "$s" "tls.r$r"
                in_list "$s" "$TLS_SCENARIOS" && fail_rows tls "$s" "$r" $TLS_TESTS
                in_list "$s" "$CONN_SCENARIOS" && fail_rows conn "$s" "$r" $CONN_TESTS
                continue
            fi
            record_info "$s" "$SCEN_INFO"
            if in_list "$s" "$TLS_SCENARIOS"; then
                for t in $TLS_TESTS; do
                    if scenario_alive; then tcp_test "$s" "$t" "$r" tls
                    else fail_rows tls "$s" "$r" "$t"; fi
                done
            fi
            if in_list "$s" "$CONN_SCENARIOS"; then
                if [ -z "$FRONT_CONN" ]; then
                    note_problem "tls/$s: no new-connection front for this scenario"
                else
                    for t in $CONN_TESTS; do
                        if scenario_alive; then conn_test "$s" "$t" "$r"
                        else fail_rows conn "$s" "$r" "$t"; fi
                    done
                fi
            fi
            stop_scenario
        done
    done
    stop_pids "$IPERF_PID" "$CONN_PID"
}

# ---------------------------------------------------------------- family: http (wrk)
start_nginx() {
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
    sendfile off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path $W/nginx/body;
    proxy_temp_path $W/nginx/proxy;
    fastcgi_temp_path $W/nginx/fastcgi;
    uwsgi_temp_path $W/nginx/uwsgi;
    scgi_temp_path $W/nginx/scgi;
    server {
        listen 127.0.0.1:$HTTP_PORT backlog=4096;
        root $W/www;
        default_type application/octet-stream;
    }
}
EOC
    ensure_free "$HTTP_PORT"
    start_bg nginx nginx -p "$W/nginx/" -c "$W/nginx/nginx.conf" -e "$W/nginx/error.log"
    NGINX_PID=$LAST_PID
    wait_port "$HTTP_PORT"
}
http_check() { # fetch the page once through FRONT; 0 when the 100-byte body came back
    local body
    body=$(curl -s --max-time 5 "${WRK_HDR[@]}" "http://127.0.0.1:$FRONT/100b" 2>/dev/null)
    [ "${#body}" = 100 ]
}
# pin_tree CPUS PID...: CPU affinity of each process, its threads and its descendants
# (children forked later, such as socat's, inherit it)
pin_tree() {
    local cpus=$1 p c; shift
    for p in "$@"; do
        [ -n "$p" ] || continue
        taskset -a -p -c "$cpus" "$p" >/dev/null 2>&1
        for c in $(pgrep -P "$p"); do pin_tree "$cpus" "$c"; done
    done
}
ALL_CPUS="0-$(($(nproc) - 1))"
wrk_test() { # scenario test run
    local s=$1 t=$2 r=$3 tag="http.$1.$2.r$3" rc note cmd
    case $t in
        wrk64) cmd=(wrk -t2 -c64 -d"${DUR}s" --latency --timeout 5s "${WRK_HDR[@]}" "http://127.0.0.1:$FRONT/100b") ;;
        wrk1)  cmd=(wrk -t1 -c1 -d"${DUR}s" --latency --timeout 5s "${WRK_HDR[@]}" "http://127.0.0.1:$FRONT/100b") ;;
        # the same with wrk, nginx and every relay process on CPU 0: no wake-up crosses CPUs,
        # so the figure is the relays' own cost rather than this VM's cross-CPU wake-up latency
        wrk1cpu0) cmd=(taskset -c 0 wrk -t1 -c1 -d"${DUR}s" --latency --timeout 5s "${WRK_HDR[@]}" "http://127.0.0.1:$FRONT/100b")
                  pin_tree 0 "${SCEN_PIDS[@]}" "$NGINX_PID" ;;
        *) die "unknown test $t" ;;
    esac
    mon_run "$tag" "$DUR" "${cmd[@]}"; rc=$?
    [ "$t" = wrk1cpu0 ] && pin_tree "$ALL_CPUS" "${SCEN_PIDS[@]}" "$NGINX_PID"
    note=$(after_test "http/$s/$t/r$r" $rc "wrk")
    "$LAB_PY" "$BENCH/report.py" wrkrow "$s" "$t" "$r" "$OUT_DIR/raw/$tag.out" "$OUT_DIR/raw/$tag.mon.json" "$note" \
        >>"$OUT_DIR/http.tsv"
    tail -n1 "$OUT_DIR/http.tsv" | cut -f1-9 >&2
}

family_http() {
    [ -f "$OUT_DIR/http.tsv" ] || printf 'scenario\ttest\trun\treq_s\tp50_us\tp99_us\tsocket_errors\tnon2xx\trelay_cpu_s\tother_cpu_pct\terror\n' >"$OUT_DIR/http.tsv"
    start_nginx
    local r s t
    # the machine's floor: a 1-byte round trip between two processes, any CPUs and both on CPU 0
    { echo "any $("$LAB_PY" "$BENCH/pingpong.py")"; echo "cpu0 $("$LAB_PY" "$BENCH/pingpong.py" cpu0)"; } \
        >"$OUT_DIR/pingpong.txt" 2>&1
    for r in $(seq 1 "$RUNS"); do
        for s in $HTTP_SCENARIOS; do
            log "=== http round $r/$RUNS scenario $s"
            if ! start_scenario "$s" "$HTTP_PORT" "http.r$r"; then
                scen_failed http "$s" "http.r$r"; fail_rows http "$s" "$r" $HTTP_TESTS; continue
            fi
            record_info "$s" "$SCEN_INFO"
            http_check || note_problem "http/$s/r$r: the 100-byte page did not come back through port $FRONT ${WRK_HDR[*]}: $(curl -s -i --max-time 5 "${WRK_HDR[@]}" "http://127.0.0.1:$FRONT/100b" 2>&1 | head -c 200 | tr '\r\n' '  ')"
            for t in $HTTP_TESTS; do
                if scenario_alive; then wrk_test "$s" "$t" "$r"
                else fail_rows http "$s" "$r" "$t"; fi
            done
            stop_scenario
        done
    done
    stop_pids "$NGINX_PID"
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
    echo "knobs_udp: UDP_SCENARIOS=\"$UDP_SCENARIOS\" UDP_IPERF_OPTS=\"$UDP_IPERF_OPTS\" UDP_BISECT=$UDP_BISECT UDP_PROBE_DUR=$UDP_PROBE_DUR UDP_PPS=$UDP_PPS"
    echo "knobs_tls: TLS_SCENARIOS=\"$TLS_SCENARIOS\" TLS_TESTS=\"$TLS_TESTS\" CONN_SCENARIOS=\"$CONN_SCENARIOS\" CONN_TESTS=\"$CONN_TESTS\" CONN_COUNT=$CONN_COUNT"
    echo "knobs_http: HTTP_SCENARIOS=\"$HTTP_SCENARIOS\" HTTP_TESTS=\"$HTTP_TESTS\" BUSY_POLL_US=$BUSY_POLL_US"
    echo "tools2: $(stunnel4 -version 2>&1 | grep -m1 -o 'stunnel [0-9.]*'), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $(/usr/sbin/nginx -v 2>&1 | sed 's/.*: //'), $(openssl version | cut -d' ' -f1-2)"
} >"$OUT_DIR/info.txt"
: >"$OUT_DIR/scenarios.txt"
cat "$OUT_DIR/info.txt" >&2

for f in $FAMILIES; do
    declare -F "family_$f" >/dev/null || die "unknown family $f"
    log "##### family $f"
    "family_$f"
done

# families not run now: keep their figures from an earlier run (KEEP_FROM)
KEEP_FROM=${KEEP_FROM:-}
if [ -z "$KEEP_FROM" ] && [ "$QUICK" != 1 ] && [ -f "$RESULTS" ]; then
    KEEP_FROM=$(sed -n 's/^Raw outputs.* were in `\(.*\)`.*$/\1/p' "$RESULTS" | tail -1)
fi
if [ -n "$KEEP_FROM" ] && [ "$KEEP_FROM" != none ] && [ -d "$KEEP_FROM" ]; then
    kept=""
    for f in tcp mem udp tls http; do
        in_list "$f" "$FAMILIES" && continue
        [ -f "$KEEP_FROM/$f.tsv" ] || continue
        cp "$KEEP_FROM/$f.tsv" "$OUT_DIR/"
        o=$(awk -F'\t' -v f="$f" '$1 == f {print $2; exit}' "$KEEP_FROM/origin.txt" 2>/dev/null)
        [ -n "$o" ] || o="$KEEP_FROM ($(sed -n 's/^date: //p' "$KEEP_FROM/info.txt"); command \`$(sed -n 's/^command: //p' "$KEEP_FROM/info.txt")\`; mgrok $(sed -n 's/^mgrok: //p' "$KEEP_FROM/info.txt" | cut -d, -f1-2))"
        printf '%s\t%s\n' "$f" "$o" >>"$OUT_DIR/origin.txt"
        echo "kept_$f: from the earlier run in $o, not rerun now" >>"$OUT_DIR/info.txt"
        case $f in udp) cp "$KEEP_FROM/udp_counters.tsv" "$OUT_DIR/" 2>/dev/null ;; tls) cp "$KEEP_FROM/conn.tsv" "$OUT_DIR/" 2>/dev/null ;; esac
        kept+=" $f"
    done
    if [ -n "$kept" ]; then
        while IFS= read -r l; do grep -qxF "$l" "$OUT_DIR/scenarios.txt" || echo "$l" >>"$OUT_DIR/scenarios.txt"; done <"$KEEP_FROM/scenarios.txt"
    fi
fi

mkdir -p "$(dirname "$RESULTS")"
"$LAB_PY" "$BENCH/report.py" md "$OUT_DIR" >"$RESULTS.tmp" || die "report failed"
# bench/inspect.sh's, bench/policy.sh's and bench/cluster.sh's sections are their own runs':
# carried over as they were
for sec in inspect policy cluster; do
    if [ -f "$RESULTS" ] && grep -q "^<!-- bench/$sec.sh: begin -->" "$RESULTS"; then
        { echo; sed -n "/^<!-- bench\/$sec.sh: begin -->/,/^<!-- bench\/$sec.sh: end -->/p" "$RESULTS"; } \
            >>"$RESULTS.tmp"
    fi
done
mv "$RESULTS.tmp" "$RESULTS"
cp "$RESULTS" "$OUT_DIR/RESULTS.md" 2>/dev/null
cat "$RESULTS"
log "raw outputs in $OUT_DIR; results in $RESULTS"
