#!/usr/bin/env bash
# test/bench/stream_memory.sh: peak memory of the replication worker of a
# server serving the initial sync of a $KEYS-key model to two fresh servers
# at once, against the same sync to one server.
#
# Server "a" holds model m (keys k1..kN, values {"v": i, "s": "value i"},
# set_many() in chunks of 100,000).  Before every run, servers "b" and "c"
# are fresh (no peer, m dropped and created again, tables truncated), no
# connection is left, all three CHECKPOINTed.  Then b and c each run, in
# sessions started together, add_stream_peer('m', a's listener) and
# wait_for_sync('m', '600s') (must be true; each must then hold $KEYS
# updates).  The "one peer" baseline is the same with b alone.
#
# While it runs, a sampler reads /proc/<a's worker pid>/status about every
# 20 ms and keeps the peak of RssAnon (the worker's private memory: heap,
# buffers of the connections, SPI results) and of VmRSS.  VmHWM is read at
# the end, after resetting it before the run (echo 5 > /proc/<pid>/clear_refs,
# when allowed); it also counts the pages of shared memory (shared_buffers)
# the worker touched, which is why the target applies to RssAnon.  The
# worker's idle RssAnon before each run and its RssAnon after are logged.
# Repetition 0 warms up and is not kept; $REPS runs per case, the two cases
# interleaved.  Table: median peaks in MB, ratio two peers / one peer.
# Target: RssAnon peak with two peers < 100 MB.
#
#   STREAM_MEM_KEYS=1000000 STREAM_MEM_REPS=3 test/bench/stream_memory.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$BENCH_DIR/stream_lib.sh"

KEYS=${STREAM_MEM_KEYS:-1000000}
REPS=${STREAM_MEM_REPS:-3}
TARGET_MB=100

W="$SERVERS_TMP/memory"
mkdir -p "$W"
stream_server a
stream_server b
stream_server c
t0=$(date +%s)
build_model a m "$KEYS"
[ "$(model_count a m)" -eq "$KEYS" ] || die "model m holds $(model_count a m) updates, expected $KEYS"
log "stream_memory: built m ($KEYS keys) on a in $(($(date +%s) - t0)) s"

# sync_to NAME PREFIX: add_stream_peer + wait_for_sync on NAME; ms into PREFIX.NAME.ms
sync_to() {
	local name=$1 pre=$2 ok
	sqlx "$name" -At -o "$pre.$name.out" >"$pre.$name.timing" 2>&1 <<SQL || { echo "psql failed" >"$pre.$name.err"; return 1; }
\\timing on
SELECT scuttlebutt.add_stream_peer('m', '127.0.0.1', ${LISTEN_OF[a]});
SELECT scuttlebutt.wait_for_sync('m', '600s');
SQL
	ok=$(sed -n 2p "$pre.$name.out")
	[ "$ok" = t ] || { echo "wait_for_sync returned '$ok'" >"$pre.$name.err"; return 1; }
	awk '/^Time: / { s += $2 } END { printf "%.0f\n", s }' "$pre.$name.timing" >"$pre.$name.ms"
}

# run CASE REP: CASE is one (b) or two (b and c).
run() {
	local case=$1 rep=$2 pre="$W/$1.$2" pid peers s spid hwm idle after
	if [ "$case" = two ]; then peers="b c"; else peers="b"; fi
	for s in b c; do empty_model "$s" m; done
	for s in a b c; do wait_no_connections "$s"; done
	for s in a b c; do sqlx "$s" -c "CHECKPOINT" >/dev/null; done
	pid=$(worker_pid a)
	[ -n "$pid" ] || die "no replication worker on a"
	echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || log "stream_memory: cannot reset VmHWM of $pid; it is the peak since the worker started"
	quiet_gate
	idle=$(status_kb "$pid" RssAnon)
	rm -f "$pre.stop"
	disturb_begin
	sample "$pid" "$pre" &
	spid=$!
	track_pid "$spid"
	local pids=()
	for s in $peers; do
		sync_to "$s" "$pre" &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p" || true; done
	hwm=$(status_kb "$pid" VmHWM); after=$(status_kb "$pid" RssAnon)
	touch "$pre.stop"
	wait "$spid"
	disturb_end "$W/foreign.all"
	for s in $peers; do
		[ -e "$pre.$s.err" ] && die "sync to $s failed: $(cat "$pre.$s.err") $(cat "$pre.$s.timing")"
		[ "$(model_count "$s" m)" -eq "$KEYS" ] || die "$s holds $(model_count "$s" m) updates after sync, expected $KEYS"
	done
	[ "$(worker_pid a)" = "$pid" ] || die "a's worker restarted during the run"
	log "stream_memory: $case rep=$rep: RssAnon peak $(($(<"$pre.anon") / 1024)) MB (idle $((idle / 1024)) MB, after $((after / 1024)) MB), VmRSS peak $(($(<"$pre.rss") / 1024)) MB, VmHWM $((hwm / 1024)) MB, $(<"$pre.samples") samples; foreign CPU $(tail -1 "$W/foreign.all")%; sync $(for s in $peers; do printf '%s %.1f s ' "$s" "$(awk -v ms="$(<"$pre.$s.ms")" 'BEGIN { print ms / 1000 }')"; done)"
	if [ "$rep" -gt 0 ]; then
		echo "$(<"$pre.anon")" >>"$W/$case.anon"
		tail -1 "$W/foreign.all" >>"$W/foreign"
		echo "$hwm" >>"$W/$case.hwm"
		echo "$idle" >>"$W/$case.idle"
		for s in $peers; do cat "$pre.$s.ms"; done | sort -n | tail -1 >>"$W/$case.ms"
	fi
}

for c in one two; do for f in anon hwm idle ms; do : >"$W/$c.$f"; done; done
: >"$W/foreign"
for rep in $(seq 0 "$REPS"); do
	if [ $((rep % 2)) -eq 1 ]; then order="one two"; else order="two one"; fi
	for c in $order; do run "$c" "$rep"; done
done

mb() { awk -v kb="$1" 'BEGIN { printf "%.1f", kb / 1024 }'; }
b=$(mb "$(median <"$W/one.anon")"); e=$(mb "$(median <"$W/two.anon")")
record stream_memory "worker RssAnon peak, $KEYS-key sync: 1 peer (baseline) vs 2" "$b" "$e" "MB (median of $REPS)" "$(ratio "$e" "$b")" "2 peers < $TARGET_MB MB" "$(verdict "$e" '<=' "$TARGET_MB")"
record stream_memory "worker RssAnon peak, max over runs" "$(mb "$(sort -n "$W/one.anon" | tail -1)")" "$(mb "$(sort -n "$W/two.anon" | tail -1)")" "MB" "-" "-" "info"
record stream_memory "worker VmHWM (incl. shared memory touched)" "$(mb "$(median <"$W/one.hwm")")" "$(mb "$(median <"$W/two.hwm")")" "MB (median of $REPS)" "-" "-" "info"
record stream_memory "worker RssAnon idle, before the run" "$(mb "$(median <"$W/one.idle")")" "$(mb "$(median <"$W/two.idle")")" "MB (median of $REPS)" "-" "-" "info"
record stream_memory "sync time (slowest peer)" "$(awk -v ms="$(median <"$W/one.ms")" 'BEGIN { printf "%.2f", ms / 1000 }')" "$(awk -v ms="$(median <"$W/two.ms")" 'BEGIN { printf "%.2f", ms / 1000 }')" "s (median of $REPS)" "-" "-" "info"

record stream_memory "foreign CPU during runs (max)" "-" "$(disturb_max "$W/foreign")" "% of all CPUs" "-" "-" "info"

if [ -z "${BENCH_QUIET:-}" ]; then
	echo
	echo "stream_memory: a's replication worker serving a $KEYS-key initial sync; baseline = 1 peer, extension column = 2 peers at once"
	stream_conditions
	print_table stream_memory
fi
