#!/usr/bin/env bash
# test/bench/libpq_apply_cost.sh: the CPU a live libpq pull costs per
# update, on each side: what the latency of one pulled set() is made of
# (libpq_latency.sh measures the latency itself).
#
# Servers a and b, model lat on both, b dials a (add_peer, synced): b's
# worker waits on a in a backend of a's ("scuttlebutt pull").  One psql
# session on a writes $N set()s of new keys, $GAP_MS ms apart, each its
# own transaction, so the pull is idle when each commits; then b must hold
# all $N.  Reported: CPU time (utime + stime, /proc) per update of b's
# worker and of a's pull backend over the writes.  With
# LIBPQ_COST_PERF=1 both processes are also recorded (perf record -g,
# 20 kHz: the CPU figures then include perf's cost) into
# $BENCH_OUT/libpq_apply_cost/perf.{worker,remote}.data, to read with
# perf report --children.
#
#   LIBPQ_COST_N=1000 LIBPQ_COST_GAP_MS=5 LIBPQ_COST_PERF=0 test/bench/libpq_apply_cost.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$BENCH_DIR/libpq_lib.sh"

N=${LIBPQ_COST_N:-1000}
GAP_MS=${LIBPQ_COST_GAP_MS:-5}
PERF=${LIBPQ_COST_PERF:-0}
W="$BENCH_OUT/libpq_apply_cost"
mkdir -p "$W"

libpq_server a
libpq_server b
for s in a b; do sqlx "$s" -c "SELECT scuttlebutt.create_model('lat')" >/dev/null; done
sqlx b -c "SELECT scuttlebutt.add_peer('lat', '$(conninfo a)')" >/dev/null
[ "$(sqlx1 b -c "SELECT scuttlebutt.wait_for_sync('lat', '60s')")" = t ] || die "b did not sync lat: $(peer_line b)"
wpid=$(worker_pid b)
for _ in $(seq 1 100); do
	rpid=$(sqlx1 a -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'scuttlebutt pull'")
	[ -n "$rpid" ] && break
	sleep 0.1
done
[ -n "$rpid" ] || die "no pull session of b's on a"
awk -v n="$N" -v gap="$GAP_MS" 'BEGIN { for (i = 1; i <= n; i++)
	printf "SELECT scuttlebutt.set('\''lat'\'', '\''k%d'\'', '\''{\"i\": %d}'\'') IS NULL;\nSELECT pg_sleep(%g);\n", i, i, gap / 1000 }' >"$W/writes.sql"
cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
quiet_gate
w0=$(cpu "$wpid")
r0=$(cpu "$rpid")
if [ "$PERF" = 1 ]; then
	perf record -F 20000 -g -p "$wpid" -o "$W/perf.worker.data" >/dev/null 2>&1 &
	p1=$!
	perf record -F 20000 -g -p "$rpid" -o "$W/perf.remote.data" >/dev/null 2>&1 &
	p2=$!
fi
sqlx a -f "$W/writes.sql" >/dev/null
for _ in $(seq 1 100); do
	[ "$(sqlx1 b -c "SELECT count(*) FROM scuttlebutt.keys('lat')")" -ge "$N" ] && break
	sleep 0.1
done
w1=$(cpu "$wpid")
r1=$(cpu "$rpid")
[ "$PERF" = 1 ] && kill -INT "$p1" "$p2" && wait "$p1" "$p2" 2>/dev/null || true
held=$(sqlx1 b -c "SELECT count(*) FROM scuttlebutt.keys('lat')")
[ "$held" -eq "$N" ] || die "b holds $held of the $N keys"
hz=$(getconf CLK_TCK)
per() { awk -v t="$1" -v hz="$hz" -v n="$N" 'BEGIN { printf "%.0f", t / hz / n * 1e6 }'; }
echo
echo "libpq_apply_cost: $N set()s on a, $GAP_MS ms apart, pulled by b; CPU per update"
libpq_conditions
printf '%-40s %s\n' "b's worker (dialer: receive, apply)" "$(per $((w1 - w0))) µs"
printf '%-40s %s\n' "a's pull backend (wait, page, send)" "$(per $((r1 - r0))) µs"
[ "$PERF" = 1 ] && echo "perf data: $W/perf.worker.data $W/perf.remote.data"
exit 0
