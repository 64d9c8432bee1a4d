#!/usr/bin/env bash
# test/bench/stream_server_sync.sh: initial sync of a $N-key model from one
# database server to a fresh one over the scuttlebutt stream protocol, for
# each size in $SIZES, and how the time grows with the size.
#
# Server "a" holds models m<N> (keys k1..kN, values {"v": i, "s": "value
# i"}, written with set_many() in chunks of 100,000).  Before every run,
# server "b" is fresh: no peer, model m<N> dropped and created again, its
# tables truncated, both servers CHECKPOINTed, no connection left on
# either.  The run, in one psql session on b (\timing, summed):
#   SELECT scuttlebutt.add_stream_peer('m<N>', '127.0.0.1', <a's listener>);
#   SELECT scuttlebutt.wait_for_sync('m<N>', '600s');   -- must be true
# i.e. from the peer's insertion to the moment b's worker has received a's
# "SYNC" and applied (committed) everything before it.  Then b must hold N
# updates and the same clock as a (checked).  Repetition 0 warms up and is
# not kept; then $REPS runs per size, sizes interleaved.
# Table: median seconds per size (target for 1,000,000: <= 10 s) and
# seconds per 100,000 keys at the smallest and largest size, whose ratio
# shows the growth (1 = linear; target <= 1.5).  Info rows: the CPU time
# of both workers during the run (utime + stime from /proc/<pid>/stat; on
# a shared machine the elapsed time also counts waiting for a CPU), and
# the largest size's first run (repetition 0: b's first sync, which also
# creates its WAL segments).  The load average is logged with every run.
#
#   SERVER_SYNC_SIZES="100000 1000000" SERVER_SYNC_REPS=3 test/bench/stream_server_sync.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$BENCH_DIR/stream_lib.sh"

SIZES=${SERVER_SYNC_SIZES:-100000 1000000}
REPS=${SERVER_SYNC_REPS:-3}
TARGET_1M=10
TARGET_GROWTH=1.5

W="$SERVERS_TMP/server_sync"
mkdir -p "$W"
stream_server a
stream_server b
: >"$W/foreign"

for n in $SIZES; do
	t0=$(date +%s)
	build_model a "m$n" "$n"
	[ "$(model_count a "m$n")" -eq "$n" ] || die "model m$n holds $(model_count a "m$n") updates, expected $n"
	log "stream_server_sync: built m$n on a in $(($(date +%s) - t0)) s"
	: >"$W/m$n.ms"; : >"$W/m$n.cpu_a"; : >"$W/m$n.cpu_b"
done
log "stream_server_sync: a's updates table $(sqlx1 a -c "SELECT pg_size_pretty(pg_total_relation_size('scuttlebutt.updates'))") with indexes"

HZ=$(getconf CLK_TCK)
# cpu_ticks PID: user + system CPU time of PID, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# run N REP: one timed initial sync of m<N> from a to a fresh b.
run() {
	local n=$1 rep=$2 m="m$1" tag="$W/m$1.$2" ms ok got
	empty_model b "$m"
	wait_no_connections a
	wait_no_connections b
	sqlx a -c "CHECKPOINT" >/dev/null
	sqlx b -c "VACUUM ANALYZE scuttlebutt.updates" -c "VACUUM ANALYZE scuttlebutt.clocks" -c "CHECKPOINT" >/dev/null
	pa=$(worker_pid a); pb=$(worker_pid b)
	ca=$(cpu_ticks "$pa"); cb=$(cpu_ticks "$pb")
	load=$(cut -d' ' -f1-3 /proc/loadavg)
	quiet_gate
	disturb_begin
	sqlx b -At -o "$tag.out" >"$tag.timing" 2>&1 <<SQL || die "sync of $m failed: $(cat "$tag.timing")"
\\timing on
SELECT scuttlebutt.add_stream_peer('$m', '127.0.0.1', ${LISTEN_OF[a]});
SELECT scuttlebutt.wait_for_sync('$m', '600s');
SQL
	disturb_end "$W/foreign.all"
	ok=$(sed -n 2p "$tag.out")
	[ "$ok" = t ] || die "wait_for_sync('$m') on b returned '$ok': $(cat "$tag.out")"
	ms=$(awk '/^Time: / { s += $2 } END { printf "%.3f", s }' "$tag.timing")
	cpu_a=$(awk -v t="$(( $(cpu_ticks "$pa") - ca ))" -v hz="$HZ" 'BEGIN { printf "%.2f", t / hz }')
	cpu_b=$(awk -v t="$(( $(cpu_ticks "$pb") - cb ))" -v hz="$HZ" 'BEGIN { printf "%.2f", t / hz }')
	got=$(model_count b "$m")
	[ "$got" -eq "$n" ] || die "b holds $got updates of $m after sync, expected $n"
	[ "$(sqlx1 b -c "SELECT scuttlebutt.clock('$m')")" = "$(sqlx1 a -c "SELECT scuttlebutt.clock('$m')")" ] ||
		die "b's clock of $m differs from a's after sync"
	sqlx1 b -c "SELECT format('b: sent %s, received %s, bytes_in %s', sent, received, bytes_in) FROM scuttlebutt.peer_status" >"$tag.status"
	if [ "$rep" -gt 0 ]; then
		echo "$ms" >>"$W/$m.ms"; echo "$cpu_a" >>"$W/$m.cpu_a"; echo "$cpu_b" >>"$W/$m.cpu_b"
		tail -1 "$W/foreign.all" >>"$W/foreign"
	else
		echo "$ms" >"$W/$m.first"
	fi
	log "stream_server_sync: $n keys rep=$rep: $(awk -v ms="$ms" 'BEGIN { printf "%.2f s", ms / 1000 }'); worker CPU a $cpu_a s, b $cpu_b s; foreign CPU $(tail -1 "$W/foreign.all")%; load before $load; $(cat "$tag.status")"
}

for rep in $(seq 0 "$REPS"); do
	for n in $SIZES; do
		run "$n" "$rep"
	done
done

first="" last=""
for n in $SIZES; do
	s=$(awk -v ms="$(median <"$W/m$n.ms")" 'BEGIN { printf "%.3f", ms / 1000 }')
	per=$(awk -v s="$s" -v n="$n" 'BEGIN { printf "%.3f", s / (n / 100000) }')
	if [ "$n" -eq 1000000 ]; then
		record stream_server_sync "server to server initial sync, $n keys" "-" "$s" "s (median of $REPS)" "-" "<= $TARGET_1M s" "$(verdict "$s" '<=' "$TARGET_1M")"
	else
		record stream_server_sync "server to server initial sync, $n keys" "-" "$s" "s (median of $REPS)" "-" "-" "-"
	fi
	record stream_server_sync "worker CPU during the $n-key sync: a (source), b" "$(median <"$W/m$n.cpu_a")" "$(median <"$W/m$n.cpu_b")" "CPU s (median of $REPS)" "-" "-" "info"
	log "stream_server_sync: raw $n keys ms: $(paste -sd' ' "$W/m$n.ms"); first run $(<"$W/m$n.first") ms"
	[ -z "$first" ] && first="$n $per"
	last="$n $per"
done
read -r n1 p1 <<<"$first"
read -r n2 p2 <<<"$last"
record stream_server_sync "first run, $n2 keys (new WAL segments on b; not in the median)" "-" "$(awk -v ms="$(<"$W/m$n2.first")" 'BEGIN { printf "%.3f", ms / 1000 }')" "s (1 run)" "-" "-" "info"
if [ "$n1" != "$n2" ]; then
	r=$(ratio "$p2" "$p1")
	record stream_server_sync "s per 100k keys: $n1 (baseline) vs $n2 keys" "$p1" "$p2" "s per 100,000 keys" "$r" "<= $TARGET_GROWTH" "$(verdict "$r" '<=' "$TARGET_GROWTH")"
fi

record stream_server_sync "foreign CPU during runs (max)" "-" "$(disturb_max "$W/foreign")" "% of all CPUs" "-" "-" "info"

if [ -z "${BENCH_QUIET:-}" ]; then
	echo
	echo "stream_server_sync: b (fresh) dials a; add_stream_peer + wait_for_sync on b; ratio = growth of s per 100k keys"
	stream_conditions
	print_table stream_server_sync
fi
