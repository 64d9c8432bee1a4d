#!/usr/bin/env bash
# test/bench/libpq_apply_cost.sh: the CPU a live libpq pull costs per
# update on each side, beside what logical replication's walsender and
# apply worker cost per row: what the latency of one pulled set() is made
# of (libpq_latency.sh measures the latency itself).
#
# Servers a and b.  scuttlebutt: model lat on both, b dials a (add_peer,
# synced): b's worker waits on a in a backend of a's ("scuttlebutt pull").
# logical: table kv_lat on both (as in libpq_latency.sh), published by a,
# a subscription on b (copy_data = false, synchronous_commit = off),
# created before its run and dropped after it.  One psql session on a
# writes $N rows of new keys, $GAP_MS ms apart, each its own transaction
# (set() / INSERT ... ON CONFLICT), so the replication is idle when each
# commits; then b must hold all $N.  Each side runs $REPS times, the
# sides alternating.  Reported: the median over runs of the CPU time
# (utime + stime, /proc) per update of the receiving process on b (the
# worker / the apply worker) and of the sending one on a (the pull
# backend / the walsender), and the ratio scuttlebutt / logical.
# With LIBPQ_COST_PERF=1 the four processes are also recorded (perf record
# -g, 20 kHz: the CPU figures then include perf's cost) into
# $BENCH_OUT/libpq_apply_cost/perf.<side>.<rep>.{receiver,sender}.data, to read
# with perf report --children.
#
#   LIBPQ_COST_N=1000 LIBPQ_COST_GAP_MS=5 LIBPQ_COST_REPS=3 LIBPQ_COST_PERF=0 test/bench/libpq_apply_cost.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$BENCH_DIR/libpq_lib.sh"

N=${LIBPQ_COST_N:-1000}
GAP_MS=${LIBPQ_COST_GAP_MS:-5}
REPS=${LIBPQ_COST_REPS:-3}
PERF=${LIBPQ_COST_PERF:-0}
W="$BENCH_OUT/libpq_apply_cost"
mkdir -p "$W"

lat_servers
cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
per() { awk -v t="$1" -v hz="$hz" -v n="$N" 'BEGIN { printf "%.0f\n", t / hz / n * 1e6 }'; }

# measure SIDE REP: the writes of SIDE on a (keys of run REP), until b
# holds them; CPU per update of its receiver (on b) and its sender (on a)
# appended to $W/SIDE.receiver and $W/SIDE.sender
measure() {
	local side=$1 rep=$2 rpid spid r0 s0 r1 s1 held count p1 p2
	if [ "$side" = scuttlebutt ]; then
		rpid=$(worker_pid b)
		spid=$(pid_of a "SELECT pid FROM pg_stat_activity WHERE application_name = 'scuttlebutt pull'")
		count="SELECT count(*) FROM scuttlebutt.keys('lat') k WHERE k LIKE 'r${rep}k%'"
	else
		lat_subscribe
		rpid=$(apply_worker_pid)
		spid=$(pid_of a "SELECT pid FROM pg_stat_replication WHERE application_name = 's_lat'")
		count="SELECT count(*) FROM public.kv_lat WHERE key LIKE 'r${rep}k%'"
	fi
	lat_writes "$side" "r${rep}k" "$N" "$GAP_MS" >"$W/writes.$side.sql"
	quiet_gate
	r0=$(cpu "$rpid")
	s0=$(cpu "$spid")
	if [ "$PERF" = 1 ]; then
		perf record -F 20000 -g -p "$rpid" -o "$W/perf.$side.$rep.receiver.data" >/dev/null 2>&1 &
		p1=$!
		track_pid "$p1"
		perf record -F 20000 -g -p "$spid" -o "$W/perf.$side.$rep.sender.data" >/dev/null 2>&1 &
		p2=$!
		track_pid "$p2"
	fi
	sqlx a -f "$W/writes.$side.sql" >/dev/null
	for _ in $(seq 1 100); do
		[ "$(sqlx1 b -c "$count")" -ge "$N" ] && break
		sleep 0.1
	done
	r1=$(cpu "$rpid")
	s1=$(cpu "$spid")
	[ "$PERF" = 1 ] && kill -INT "$p1" "$p2" && wait "$p1" "$p2" 2>/dev/null || true
	held=$(sqlx1 b -c "$count")
	[ "$held" -eq "$N" ] || die "$side: b holds $held of the $N keys"
	per $((r1 - r0)) >>"$W/$side.receiver"
	per $((s1 - s0)) >>"$W/$side.sender"
	log "libpq_apply_cost: $side rep=$rep: receiver $(tail -1 "$W/$side.receiver") µs, sender $(tail -1 "$W/$side.sender") µs per update; private memory after: receiver $(status_kb "$rpid" RssAnon) kB, sender $(status_kb "$spid" RssAnon) kB"
	[ "$side" = logical ] && sub_drop b s_lat
	return 0
}

SIDES=""
has_side logical && SIDES="$SIDES logical"
has_side scuttlebutt && SIDES="$SIDES scuttlebutt"
read -ra sides <<<"$SIDES"
for side in "${sides[@]}"; do : >"$W/$side.receiver"; : >"$W/$side.sender"; done
for rep in $(seq 1 "$REPS"); do
	for ((j = 0; j < ${#sides[@]}; j++)); do
		measure "${sides[$(((j + rep) % ${#sides[@]}))]}" "$rep"
	done
done
cost() { if [ -s "$W/$1.$2" ]; then median <"$W/$1.$2"; else echo -; fi; }
costratio() { if [ -s "$W/logical.$1" ] && [ -s "$W/scuttlebutt.$1" ]; then ratio "$(cost scuttlebutt "$1")" "$(cost logical "$1")"; else echo -; fi; }
echo
echo "libpq_apply_cost: $N writes on a, $GAP_MS ms apart, replicated to b; CPU per update (µs), median of $REPS runs"
libpq_conditions
printf '%-52s %10s %12s %6s\n' "process" "logical" "scuttlebutt" "ratio"
printf '%-52s %10s %12s %6s\n' "receiver on b: apply worker / worker (receive, apply)" "$(cost logical receiver)" "$(cost scuttlebutt receiver)" "$(costratio receiver)"
printf '%-52s %10s %12s %6s\n' "sender on a: walsender / pull backend (wait, page)" "$(cost logical sender)" "$(cost scuttlebutt sender)" "$(costratio sender)"
for side in "${sides[@]}"; do log "libpq_apply_cost: raw $side receiver: $(paste -sd' ' "$W/$side.receiver"); sender: $(paste -sd' ' "$W/$side.sender")"; done
[ "$PERF" = 1 ] && echo "perf data: $W/perf.*.data"
exit 0
