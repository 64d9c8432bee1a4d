#!/usr/bin/env bash
# test/bench/stream_latency.sh: live propagation of single set() calls from
# database server a to database server b over the scuttlebutt stream
# protocol: p50 and p99 latency.
#
# Both servers have model 'lat'; one stream connects them, dialed by b
# ("b dials a": a sends on an incoming connection) or by a ("a dials b": a
# sends on its outgoing one); every direction in $DIALS is measured, after
# wait_for_sync on both sides.  On b, an AFTER INSERT OR UPDATE ... FOR
# EACH ROW trigger on scuttlebutt.updates records, per key, the update's
# timestamp and clock_timestamp() into a side table.  One psql session on
# a runs $N single set() calls (each its own transaction, a new key each)
# with a pg_sleep of $GAP_MS between them, so the worker is idle when
# each one commits.
#
# Latency of a key = (b's clock_timestamp() in the trigger) - (the
# update's timestamp): that timestamp is the clock reading taken inside
# a's set() (SbNowMillis, float8 ms since the epoch) before the row is
# written; both clocks are this machine's.  So it covers: the rest of a's
# set() statement, a's commit (WAL flush, fsync on), the wake-up of a's
# worker by the commit, a's read of the new history (one short
# transaction), the send over loopback TCP, b's worker wake-up, read and
# parse, and b's apply transaction up to the row's insertion.  It does not
# cover b's commit (one more WAL flush; the "set() on a" row shows what a
# commit of this size costs on this disk) nor psql's round trip on a.
# Two info rows: the median psql \timing of the set() calls on a (its
# commit included), and the p50 per key of the latency less that key's
# set() round trip: roughly the part after a's commit returned.
# All $N keys must arrive (checked).  Each direction runs $REPS times;
# the table shows the median over runs of each run's p50 and p99
# (nearest rank), and the raw per-run figures go to the log.
# Targets: p50 <= 5 ms, p99 <= 50 ms.
#
#   LATENCY_N=500 LATENCY_GAP_MS=20 LATENCY_REPS=3 LATENCY_DIALS="b a" test/bench/stream_latency.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$BENCH_DIR/stream_lib.sh"

N=${LATENCY_N:-500}
GAP_MS=${LATENCY_GAP_MS:-20}
REPS=${LATENCY_REPS:-3}
DIALS=${LATENCY_DIALS:-b a}
TARGET_P50=5
TARGET_P99=50

W="$SERVERS_TMP/latency"
mkdir -p "$W"
stream_server a
stream_server b
for s in a b; do sqlx "$s" -c "SELECT scuttlebutt.create_model('lat')" >/dev/null; done
arrival_probe b
: >"$W/foreign"

# connect DIALER: one stream between a and b, dialed by DIALER, synced.
connect() {
	local other
	for s in a b; do sqlx "$s" -c "SELECT scuttlebutt.remove_peer(id) FROM scuttlebutt.peers" >/dev/null; done
	wait_no_connections a
	wait_no_connections b
	if [ "$1" = a ]; then other=b; else other=a; fi
	sqlx "$1" -c "SELECT scuttlebutt.add_stream_peer('lat', '127.0.0.1', ${LISTEN_OF[$other]})" >/dev/null
	for s in a b; do
		[ "$(sqlx1 "$s" -c "SELECT scuttlebutt.wait_for_sync('lat', '60s')")" = t ] || die "server $s did not sync"
	done
	[ "$(sqlx1 b -c "SELECT count(*) FROM scuttlebutt.peer_status WHERE state = 'live'")" = 1 ] ||
		die "no live stream between a and b"
}

# run DIALER REP: $N set() calls on a, then the latencies on b.
run() {
	local dial=$1 rep=$2 pre="d$1_r$2_" tag="$W/$1.$2" got
	sqlx a -c "CHECKPOINT" >/dev/null
	sqlx b -c "CHECKPOINT" >/dev/null
	awk -v n="$N" -v pre="$pre" -v gap="$GAP_MS" 'BEGIN {
		for (i = 1; i <= n; i++) {
			print "\\timing on"
			printf "SELECT scuttlebutt.set('\''lat'\'', '\''%sk%d'\'', '\''{\"i\": %d}'\'');\n", pre, i, i
			print "\\timing off"
			printf "SELECT pg_sleep(%g);\n", gap / 1000
		} }' >"$tag.sql"
	quiet_gate
	disturb_begin
	sqlx a -At -f "$tag.sql" >"$tag.out" 2>&1 || die "set() on a failed: $(tail -3 "$tag.out")"
	disturb_end "$W/foreign"
	awk '/^Time: / { print $2 }' "$tag.out" >"$tag.set_ms"
	for _ in $(seq 1 600); do
		got=$(sqlx1 b -c "SELECT count(*) FROM public.bench_arrival WHERE key LIKE '${pre}%'")
		[ "$got" -eq "$N" ] && break
		sleep 0.1
	done
	[ "$got" -eq "$N" ] || die "only $got of $N updates reached b"
	sqlx1 b -F ' ' -c "SELECT substr(key, length('${pre}k') + 1)::int, arrived_ms - ts FROM public.bench_arrival WHERE key LIKE '${pre}%' ORDER BY 1" >"$tag.keys"
	awk '{ print $2 }' "$tag.keys" >"$tag.lat"
	# per key, the latency less a's set() round trip: what follows a's commit
	paste -d' ' "$tag.keys" "$tag.set_ms" | awk '{ print $2 - $3 }' >"$tag.after"
	p50=$(pctl 50 <"$tag.lat"); p99=$(pctl 99 <"$tag.lat")
	echo "$p50" >>"$W/$dial.p50"; echo "$p99" >>"$W/$dial.p99"
	pctl 50 <"$tag.after" >>"$W/$dial.after"
	median <"$tag.set_ms" >>"$W/$dial.set"
	log "stream_latency: $dial dials, rep=$rep: p50 $p50 ms, p90 $(pctl 90 <"$tag.lat") ms, p99 $p99 ms, max $(pctl 100 <"$tag.lat") ms, min $(pctl 0 <"$tag.lat") ms; set() on a p50 $(median <"$tag.set_ms") ms; latency less set() p50 $(pctl 50 <"$tag.after") ms; foreign CPU $(tail -1 "$W/foreign")%"
}

for dial in $DIALS; do
	: >"$W/$dial.p50"; : >"$W/$dial.p99"; : >"$W/$dial.set"; : >"$W/$dial.after"
	connect "$dial"
	for rep in $(seq 1 "$REPS"); do
		run "$dial" "$rep"
	done
	if [ "$dial" = a ]; then how="a dials b"; else how="b dials a"; fi
	p50=$(printf '%.2f' "$(median <"$W/$dial.p50")"); p99=$(printf '%.2f' "$(median <"$W/$dial.p99")")
	record stream_latency "live set() a->b ($how): p50" "-" "$p50" "ms (median of $REPS runs x $N)" "-" "<= $TARGET_P50 ms" "$(verdict "$p50" '<=' "$TARGET_P50")"
	record stream_latency "live set() a->b ($how): p99" "-" "$p99" "ms (median of $REPS runs x $N)" "-" "<= $TARGET_P99 ms" "$(verdict "$p99" '<=' "$TARGET_P99")"
	record stream_latency "($how) set() on a: psql \\timing, commit incl." "-" "$(printf '%.2f' "$(median <"$W/$dial.set")")" "ms (median of run p50s)" "-" "-" "info"
	record stream_latency "($how) latency less that set() time, p50" "-" "$(printf '%.2f' "$(median <"$W/$dial.after")")" "ms (median of run p50s)" "-" "-" "info"
done

record stream_latency "foreign CPU during runs (max)" "-" "$(disturb_max "$W/foreign")" "% of all CPUs" "-" "-" "info"

if [ -z "${BENCH_QUIET:-}" ]; then
	echo
	echo "stream_latency: a's set() timestamp to b's row trigger (b's commit excluded), $N sets ${GAP_MS} ms apart per run"
	stream_conditions
	print_table stream_latency
fi
