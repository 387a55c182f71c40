#!/usr/bin/env bash
# demo.sh: a server, a client and a small demo web service, all on
# loopback; prints the public address and a command to try it. Ctrl+C ends
# everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${MGROK_BIN:-build/mgrok}
SERVER_PORT=${SERVER_PORT:-9000}
DEMO_PORT=${DEMO_PORT:-3000}
START_PORT=${START_PORT:-10000}
HTTP_PORT=${HTTP_PORT:-8080}
ADMIN_PORT=${ADMIN_PORT:-9100}
INSPECT_PORT=${INSPECT_PORT:-4040}
TOKEN=${TOKEN:-demo-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')}
work=$(mktemp -d /tmp/mgrok-demo.XXXXXX)
pids=()
cleanup() {
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill -INT "${pids[$i]}" 2>/dev/null || true
	done
	sleep 0.5
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

# the demo service: a tiny web page served by Python's http.server
mkdir -p "$work/www"
cat >"$work/www/index.html" <<HTML
<!doctype html><title>mgrok demo</title>
<h1>Hello through mgrok</h1><p>This page is served on 127.0.0.1:$DEMO_PORT and reached through the tunnel.</p>
HTML
/usr/bin/python3 -m http.server "$DEMO_PORT" --bind 127.0.0.1 --directory "$work/www" \
	>"$work/demo.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do
	(exec 3<>"/dev/tcp/127.0.0.1/$DEMO_PORT") 2>/dev/null && break
	sleep 0.1
done

# HTTP tunnels get DEMO.localhost: curl and browsers resolve *.localhost
# to loopback by themselves
"$BIN" server --addr "127.0.0.1:$SERVER_PORT" --bind-addr 127.0.0.1 \
	--start-port "$START_PORT" --token "$TOKEN" --domain localhost \
	--http-addr "127.0.0.1:$HTTP_PORT" --admin-addr "127.0.0.1:$ADMIN_PORT" \
	2>"$work/server.log" &
pids+=($!)
for _ in $(seq 1 50); do
	grep -q "listening on" "$work/server.log" && break
	sleep 0.1
done
grep -q "listening on" "$work/server.log" || { cat "$work/server.log"; exit 1; }

XDG_STATE_HOME="$work/state" "$BIN" tcp "127.0.0.1:$DEMO_PORT" \
	--server "127.0.0.1:$SERVER_PORT" --token "$TOKEN" --inspect-addr off \
	>"$work/client.out" 2>"$work/client.log" &
pids+=($!)
XDG_STATE_HOME="$work/state-http" "$BIN" http "127.0.0.1:$DEMO_PORT" \
	--subdomain demo --server "127.0.0.1:$SERVER_PORT" --token "$TOKEN" \
	--inspect-addr "127.0.0.1:$INSPECT_PORT" \
	>"$work/http.out" 2>"$work/http.log" &
pids+=($!)
url=""
for _ in $(seq 1 50); do
	url=$(grep -o 'tcp://[^ ]*' "$work/client.out" || true)
	[ -n "$url" ] && break
	sleep 0.1
done
[ -n "$url" ] || { cat "$work/client.log"; exit 1; }
hostport=${url#tcp://}
web=""
for _ in $(seq 1 50); do
	web=$(grep -o 'http://demo[^ ]*' "$work/http.out" || true)
	[ -n "$web" ] && break
	sleep 0.1
done
echo
echo "mgrok demo is running:"
echo "  server       127.0.0.1:$SERVER_PORT (token $TOKEN)"
echo "  demo service http://127.0.0.1:$DEMO_PORT/"
echo "  public       $url (TCP tunnel)"
echo "               ${web:-(the HTTP tunnel did not come up: $work/http.log)} (HTTP tunnel)"
echo "  dashboard    http://127.0.0.1:$ADMIN_PORT/   (metrics: /metrics)"
echo "  inspector    http://127.0.0.1:$INSPECT_PORT/   (every request through the HTTP tunnel)"
echo
echo "Try it:  curl http://$hostport/"
[ -n "$web" ] && echo "         curl $web/"
echo
curl -s --max-time 5 "http://$hostport/" | sed 's/^/  | /' || true
[ -n "$web" ] && curl -s --max-time 5 "$web/" >/dev/null || true
echo
if [ -n "${DEMO_ONCE:-}" ]; then
	exit 0
fi
echo "Ctrl+C to stop."
while kill -0 "${pids[1]}" 2>/dev/null && kill -0 "${pids[2]}" 2>/dev/null &&
	kill -0 "${pids[3]}" 2>/dev/null; do
	sleep 1
done
