#!/bin/sh
# run.sh: build the libFuzzer harnesses and run each one for a set time.
#
#   tests/fuzz/run.sh [fuzz_NAME ...]     (default: every tests/fuzz/fuzz_*.c)
#
# Environment: FUZZ_TIME seconds per harness (default 600), FUZZ_OUT the
# directory for logs, working corpora and crash files (default a new
# directory under /tmp), FUZZ_BUILD=0 to skip `make fuzz`, FUZZ_BIN the
# directory of the harness binaries (default build-fuzz). Harnesses run one
# at a time, niced, in one process each (-jobs=1 -workers=1), RSS capped at
# 2 GiB, the harness's own stdout and stderr closed (libFuzzer and the
# sanitizers still report). The checked-in seeds are copied, never written
# to: an input worth keeping is added to tests/fuzz/corpus/NAME/ by hand
# (as found-*).
# Prints one line per harness: executions, seconds, cov, ft, crash files.
# Exit status 1 if any harness left a crash, timeout or leak file.
set -eu

top=$(cd "$(dirname "$0")/../.." && pwd)
time_s=${FUZZ_TIME:-600}
out=${FUZZ_OUT:-$(mktemp -d /tmp/mgrok-fuzz.XXXXXX)}
mkdir -p "$out"
cd "$top"

if [ "$#" -eq 0 ]; then
	set -- $(ls tests/fuzz/fuzz_*.c | sed 's|.*/||; s|\.c$||')
fi
if [ "${FUZZ_BUILD:-1}" != 0 ]; then
	nice -n 19 make -j2 fuzz >"$out/build.log" 2>&1 || {
		echo "run.sh: make fuzz failed, see $out/build.log" >&2
		exit 2
	}
fi

status=0
for name in "$@"; do
	bin=${FUZZ_BIN:-$top/build-fuzz}/$name
	seeds=$top/tests/fuzz/corpus/$name
	dir=$out/$name
	if [ ! -x "$bin" ]; then
		echo "run.sh: no harness $bin" >&2
		status=1
		continue
	fi
	rm -rf "$dir"
	mkdir -p "$dir/corpus" "$dir/artifacts"
	[ -d "$seeds" ] && cp "$seeds"/* "$dir/corpus/" 2>/dev/null || true
	# -jobs=1 -workers=1 runs one child whose output goes to fuzz-0.log in
	# the current directory: run from the harness's own directory.
	(cd "$dir" && nice -n 19 "$bin" -max_total_time="$time_s" \
	    -jobs=1 -workers=1 -rss_limit_mb=2048 -timeout=30 -close_fd_mask=3 \
	    -print_final_stats=1 -artifact_prefix="$dir/artifacts/" \
	    corpus >"$dir/run.log" 2>&1) || true
	log=$dir/fuzz-0.log
	[ -f "$log" ] || log=$dir/run.log
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)
	last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -n 1 || true)
	cov=$(echo "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
	ft=$(echo "$last" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
	found=$(ls "$dir/artifacts" | tr '\n' ' ')
	printf '%-16s execs=%s secs=%s cov=%s ft=%s findings=%s\n' "$name" \
	    "${execs:-?}" "${secs:-?}" "${cov:-?}" "${ft:-?}" "${found:-none}"
	if [ -n "$found" ]; then
		status=1
		grep -m 1 -A 12 -E '^==[0-9]+==ERROR|^SUMMARY|deadly signal' \
		    "$log" | head -n 20 || true
	fi
done
echo "run.sh: logs in $out"
exit $status
