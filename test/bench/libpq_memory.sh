#!/usr/bin/env bash
# test/bench/libpq_memory.sh: peak memory of the dialing server's
# replication worker while it pulls two $KEYS-key models from two servers
# at once over libpq, against pulling one.
#
# Server a holds model m1, server c model m2, each keys k1..k<KEYS> with
# values {"v": i, "s": "value i"} (set_many() in chunks of 100,000; both
# built at once).  Before every run, server b is fresh (no peer, m1 and m2
# dropped and created again, tables truncated), no connection is left
# between the servers, all three are CHECKPOINTed.  Then one psql session
# on b adds, in one transaction, the peers
#   one:  add_peer('m1', <a's conninfo>)
#   two:  add_peer('m1', <a's conninfo>), add_peer('m2', <c's conninfo>)
# and runs wait_for_sync('m1', '600s') (and 'm2'); each must be true and b
# must then hold $KEYS updates of each model pulled.
# While it runs, a sampler reads /proc/<b's worker pid>/status (the
# backend_type 'scuttlebutt replication worker' of pg_stat_activity) about
# every 20 ms and keeps the peak of RssAnon (the worker's private memory:
# heap, libpq's buffers and results) and of VmRSS.  VmHWM is read at the
# end, after resetting it (echo 5 > /proc/<pid>/clear_refs); it also
# counts the shared buffers the worker touched, which is why the target is
# on RssAnon.  The worker's idle RssAnon before each run is logged; the
# worker must not restart during a run (checked).
# $REPS runs per case, the two cases alternating (no warm-up run: the
# memory does not depend on it).  Table: median peaks in MB, ratio two /
# one; target: RssAnon peak pulling two models < 64 MB (issue 14).  Scuttlebutt
# only (LIBPQ_SIDES=logical skips it).
#
#   LIBPQ_MEM_KEYS=1000000 LIBPQ_MEM_REPS=2 test/bench/libpq_memory.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$BENCH_DIR/libpq_lib.sh"

KEYS=${LIBPQ_MEM_KEYS:-1000000}
REPS=${LIBPQ_MEM_REPS:-2}
TARGET_MB=64

if ! has_side scuttlebutt; then
	log "libpq_memory: scuttlebutt not measured (LIBPQ_SIDES=$LIBPQ_SIDES): nothing to do"
	exit 0
fi

W="$SERVERS_TMP/memory"
mkdir -p "$W"
libpq_server a
libpq_server b
libpq_server c
t0=$(date +%s)
build_model a m1 "$KEYS" &
p1=$!
build_model c m2 "$KEYS" &
p2=$!
wait "$p1" || die "building m1 on a failed"
wait "$p2" || die "building m2 on c failed"
[ "$(model_count a m1)" -eq "$KEYS" ] || die "model m1 holds $(model_count a m1) updates, expected $KEYS"
[ "$(model_count c m2)" -eq "$KEYS" ] || die "model m2 holds $(model_count c m2) updates, expected $KEYS"
log "libpq_memory: built m1 on a and m2 on c ($KEYS keys each) in $(($(date +%s) - t0)) s"

# run CASE REP: CASE is one (m1 from a) or two (m1 from a, m2 from c).
run() {
	local case=$1 rep=$2 pre="$W/$1.$2" pid spid hwm idle after ok1 ok2 t_start t_end
	empty_models b m1 m2
	wait_no_connections a b c
	for s in a b c; do sqlx "$s" -c "CHECKPOINT" >/dev/null; done
	pid=$(worker_pid b)
	[ -n "$pid" ] || die "no replication worker on b"
	echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || log "libpq_memory: cannot reset VmHWM of $pid; it is the peak since the worker started"
	{
		echo "SELECT extract(epoch FROM clock_timestamp()) * 1000;"
		echo "BEGIN;"
		echo "SELECT scuttlebutt.add_peer('m1', '$(conninfo a)') IS NULL;"
		[ "$case" = two ] && echo "SELECT scuttlebutt.add_peer('m2', '$(conninfo c)') IS NULL;"
		echo "COMMIT;"
		echo "SELECT 'sync_m1', scuttlebutt.wait_for_sync('m1', '600s');"
		[ "$case" = two ] && echo "SELECT 'sync_m2', scuttlebutt.wait_for_sync('m2', '600s');"
		echo "SELECT extract(epoch FROM clock_timestamp()) * 1000;"
	} >"$pre.sql"
	quiet_gate
	idle=$(status_kb "$pid" RssAnon)
	rm -f "$pre.stop"
	disturb_begin
	sample "$pid" "$pre" &
	spid=$!
	track_pid "$spid"
	sqlx1 b -F ' ' -f "$pre.sql" >"$pre.out" 2>&1 || { touch "$pre.stop"; die "sync on b failed: $(cat "$pre.out")"; }
	hwm=$(status_kb "$pid" VmHWM); after=$(status_kb "$pid" RssAnon)
	touch "$pre.stop"
	wait "$spid"
	disturb_end "$W/foreign.all"
	t_start=$(head -1 "$pre.out"); t_end=$(tail -1 "$pre.out")
	ok1=$(awk '$1 == "sync_m1" { print $2 }' "$pre.out")
	[ "$ok1" = t ] || die "wait_for_sync('m1') on b returned '$ok1': $(cat "$pre.out"); b: $(peer_line b)"
	[ "$(model_count b m1)" -eq "$KEYS" ] || die "b holds $(model_count b m1) updates of m1 after sync, expected $KEYS"
	if [ "$case" = two ]; then
		ok2=$(awk '$1 == "sync_m2" { print $2 }' "$pre.out")
		[ "$ok2" = t ] || die "wait_for_sync('m2') on b returned '$ok2': $(cat "$pre.out"); b: $(peer_line b)"
		[ "$(model_count b m2)" -eq "$KEYS" ] || die "b holds $(model_count b m2) updates of m2 after sync, expected $KEYS"
	fi
	[ "$(worker_pid b)" = "$pid" ] || die "b's worker restarted during the run (was $pid, now $(worker_pid b)); see ${DATA_OF[b]}/../server.log"
	local ms
	ms=$(awk -v a="$t_start" -v b="$t_end" 'BEGIN { printf "%.0f", b - a }')
	log "libpq_memory: $case rep=$rep: RssAnon peak $(($(<"$pre.anon") / 1024)) MB (idle $((idle / 1024)) MB, after $((after / 1024)) MB), VmRSS peak $(($(<"$pre.rss") / 1024)) MB, VmHWM $((hwm / 1024)) MB, $(<"$pre.samples") samples; sync $(awk -v ms="$ms" 'BEGIN { printf "%.1f", ms / 1000 }') s; foreign CPU $(tail -1 "$W/foreign.all")%; b: $(peer_line b)"
	echo "$(<"$pre.anon")" >>"$W/$case.anon"
	echo "$hwm" >>"$W/$case.hwm"
	echo "$idle" >>"$W/$case.idle"
	echo "$ms" >>"$W/$case.ms"
	tail -1 "$W/foreign.all" >>"$W/foreign"
}

for c in one two; do for f in anon hwm idle ms; do : >"$W/$c.$f"; done; done
: >"$W/foreign"
for rep in $(seq 1 "$REPS"); do
	if [ $((rep % 2)) -eq 1 ]; then order="two one"; else order="one two"; fi
	for c in $order; do run "$c" "$rep"; done
done

mb() { awk -v kb="$1" 'BEGIN { printf "%.1f", kb / 1024 }'; }
b=$(mb "$(median <"$W/one.anon")"); e=$(mb "$(median <"$W/two.anon")")
record libpq_memory "dialer's worker RssAnon peak pulling $KEYS keys: 1 peer (baseline) vs 2 at once" "$b" "$e" "MB (median of $REPS)" "$(ratio "$e" "$b")" "2 peers < $TARGET_MB MB" "$(verdict "$e" '<=' "$TARGET_MB")"
record libpq_memory "worker RssAnon peak, max over runs" "$(mb "$(sort -n "$W/one.anon" | tail -1)")" "$(mb "$(sort -n "$W/two.anon" | tail -1)")" "MB" "-" "-" "info"
record libpq_memory "worker VmHWM (incl. shared memory touched)" "$(mb "$(median <"$W/one.hwm")")" "$(mb "$(median <"$W/two.hwm")")" "MB (median of $REPS)" "-" "-" "info"
record libpq_memory "worker RssAnon idle, before the run" "$(mb "$(median <"$W/one.idle")")" "$(mb "$(median <"$W/two.idle")")" "MB (median of $REPS)" "-" "-" "info"
record libpq_memory "sync time (add_peer to the last wait_for_sync)" "$(awk -v ms="$(median <"$W/one.ms")" 'BEGIN { printf "%.2f", ms / 1000 }')" "$(awk -v ms="$(median <"$W/two.ms")" 'BEGIN { printf "%.2f", ms / 1000 }')" "s (median of $REPS)" "-" "-" "info"
record libpq_memory "foreign CPU during runs (max)" "-" "$(disturb_max "$W/foreign")" "% of all CPUs" "-" "-" "info"

if [ -z "${BENCH_QUIET:-}" ]; then
	echo
	echo "libpq_memory: b's replication worker pulling $KEYS-key models over libpq; baseline = 1 peer (m1 from a), extension column = 2 peers at once (m1 from a, m2 from c)"
	libpq_conditions
	print_table libpq_memory
fi
