# lib.sh - helpers for bench/run.sh (source it, do not run it), from the team's loopback lab.
# Every background process is started through start_bg, recorded by PID, and
# ended by PID (with its descendants, found via /proc ppid links) on exit.
# Nothing here sends traffic anywhere but 127.0.0.1.

LAB_DIR=${LAB_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
LAB_PY=${LAB_PY:-/usr/bin/python3}
LAB_PIDS=()
LAB_WORK=""

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

# lab_workdir PREFIX: make a private temp dir (world-traversable so nginx
# workers running as nobody can read the docroot), remembered for cleanup.
lab_workdir() {
    LAB_WORK=$(mktemp -d "/tmp/${1:-lab}.XXXXXX") || die "mktemp failed"
    chmod 755 "$LAB_WORK"
}

# descendants PID: print all descendant PIDs (depth-first, children first).
descendants() {
    local p=$1 c
    for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do
        descendants "$c"
        echo "$c"
    done
}

# start_bg NAME CMD...: start CMD in background, stdout+stderr to $LAB_WORK/NAME.log
# Sets global LAST_PID.
start_bg() {
    local name=$1; shift
    "$@" >"$LAB_WORK/$name.log" 2>&1 &
    LAST_PID=$!
    LAB_PIDS+=("$LAST_PID")
    log "started $name pid=$LAST_PID: $*"
}

# kill_tree PID: TERM the process and its descendants by PID, bounded wait, then KILL.
kill_tree() {
    local root=$1 all p i
    [ -d "/proc/$root" ] || return 0
    all="$(descendants "$root") $root"
    for p in $all; do kill -TERM "$p" 2>/dev/null; done
    for i in $(seq 1 30); do              # at most 3 s
        local alive=0
        for p in $all; do [ -d "/proc/$p" ] && ! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    for p in $all; do kill -KILL "$p" 2>/dev/null; done
    wait "$root" 2>/dev/null
    return 0
}

# stop_pids PID...: kill_tree each, and drop them from LAB_PIDS.
stop_pids() {
    local p q keep=()
    for p in "$@"; do kill_tree "$p"; done
    for q in "${LAB_PIDS[@]}"; do
        local drop=0
        for p in "$@"; do [ "$p" = "$q" ] && drop=1; done
        [ $drop = 0 ] && keep+=("$q")
    done
    LAB_PIDS=("${keep[@]}")
}

lab_cleanup() {
    local i
    for (( i=${#LAB_PIDS[@]}-1; i>=0; i-- )); do kill_tree "${LAB_PIDS[$i]}"; done
    LAB_PIDS=()
    if [ -n "$LAB_WORK" ] && [ -d "$LAB_WORK" ]; then
        if [ -n "${KEEP_WORK:-}" ]; then log "work dir kept: $LAB_WORK"; else rm -rf "$LAB_WORK"; fi
    fi
}
trap lab_cleanup EXIT
trap 'exit 130' INT TERM

# is_listening PORT: true if something listens on 127.0.0.1:PORT (no connection made).
is_listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

# wait_port PORT [TIMEOUT_S]: bounded wait until PORT listens.
wait_port() {
    local port=$1 t=${2:-10} i
    for i in $(seq 1 $((t * 10))); do
        is_listening "$port" && return 0
        sleep 0.1
    done
    die "port $port did not start listening within ${t}s"
}

# ensure_free PORT...: refuse to start if a port is already in use (not ours).
ensure_free() {
    local p
    for p in "$@"; do is_listening "$p" && die "port $p already in use; set BASE_PORT to something else"; done
    return 0
}

# ensure_pkgs PKG...: apt-get install what is missing (idempotent).
ensure_pkgs() {
    local missing=() p
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    [ ${#missing[@]} = 0 ] && return 0
    log "installing: ${missing[*]}"
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
}
