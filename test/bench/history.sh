#!/usr/bin/env bash
# test/bench/history.sh: cost of scuttlebutt.history(model, sources) for a
# delta of exactly $DELTA updates on a $BIG-key model against the same delta
# on a $SMALL-key model, side by side, plus a full dump of the big model.
#
# Both models are built with set_many() in chunks of $CHUNK keys, then
# VACUUM ANALYZE; the clock of each model is taken, then $DELTA set() calls
# (one transaction each) update existing keys, so history(model, clock)
# returns exactly $DELTA updates (checked).  The two delta queries run
# $REPS times each in one session, interleaved, after a warm-up; the table
# shows the median milliseconds (psql \timing: planning, execution and the
# local round trip) and the ratio big / small (target: <= 2).
# The full dump is SELECT count(*) FROM scuttlebutt.history('big'), median
# of $DUMP_REPS runs, and, in one more run, the backend's peak memory: VmHWM
# (includes the shared buffers it touched), RssShmem at the end, and the
# peak RssAnon (private memory) sampled every ~10 ms.
#
#   HISTORY_BIG=1000000 HISTORY_SMALL=10000 HISTORY_DELTA=100 HISTORY_REPS=50 \
#   HISTORY_DUMP_REPS=5 HISTORY_CHUNK=100000 test/bench/history.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"

BIG=${HISTORY_BIG:-1000000}
SMALL=${HISTORY_SMALL:-10000}
DELTA=${HISTORY_DELTA:-100}
REPS=${HISTORY_REPS:-50}
DUMP_REPS=${HISTORY_DUMP_REPS:-5}
CHUNK=${HISTORY_CHUNK:-100000}
TARGET=2

bench_cluster_start
bench_database bench_history

W="$BENCH_OUT/history"
mkdir -p "$W"
: >"$W/foreign"

# build MODEL N: a model of N keys, built with set_many in chunks.
build() {
	local m=$1 n=$2 lo hi
	sql -c "SELECT scuttlebutt.drop_model('$m') FROM scuttlebutt.registry WHERE name = '$m'" \
		-c "SELECT scuttlebutt.create_model('$m')" >/dev/null
	for ((lo = 1; lo <= n; lo += CHUNK)); do
		hi=$((lo + CHUNK - 1)); [ $hi -gt "$n" ] && hi=$n
		sql -c "SELECT scuttlebutt.set_many('$m', (SELECT jsonb_object_agg('k' || i, jsonb_build_object('v', i, 's', 'value ' || i)) FROM generate_series($lo, $hi) i))" >/dev/null
	done
}

t0=$(date +%s)
log "history: building $SMALL-key model 'small' and $BIG-key model 'big'"
build small "$SMALL"
build big "$BIG"
sql -c "VACUUM ANALYZE scuttlebutt.updates" -c "VACUUM ANALYZE scuttlebutt.clocks" -c "VACUUM ANALYZE scuttlebutt.registry" >/dev/null
log "history: built in $(($(date +%s) - t0)) s; updates table $(sql1 -c "SELECT pg_size_pretty(pg_total_relation_size('scuttlebutt.updates'))") with indexes"

# The clock before the last $DELTA set() calls, then those calls, spread
# over existing keys.
sql -c "DROP TABLE IF EXISTS bench_clock" -c "CREATE TABLE bench_clock (model text PRIMARY KEY, clk jsonb NOT NULL)" >/dev/null
for m in small big; do
	if [ $m = big ]; then n=$BIG; else n=$SMALL; fi
	sql -c "INSERT INTO bench_clock SELECT '$m', scuttlebutt.clock('$m')" >/dev/null
	for ((i = 1; i <= DELTA; i++)); do
		echo "SELECT scuttlebutt.set('$m', 'k' || $(((i * 7919) % n + 1)), jsonb_build_object('v', -$i));"
	done | sql >/dev/null
	got=$(sql1 -c "SELECT count(*) FROM scuttlebutt.history('$m', (SELECT clk FROM bench_clock WHERE model = '$m'))")
	[ "$got" -eq "$DELTA" ] || die "history('$m', clock) returned $got updates, expected $DELTA"
	keys=$(sql1 -c "SELECT updates FROM scuttlebutt.models WHERE name = '$m'")
	[ "$keys" -eq "$n" ] || die "model '$m' holds $keys updates, expected $n"
done
sql -c "CHECKPOINT" >/dev/null

# Delta queries: one session, warm-up, then $REPS of each, interleaved.
q() { echo "SELECT count(*), sum(length(h::text)) FROM scuttlebutt.history('$1', :'clk_$1') h;"; }
{
	echo "SELECT clk AS clk_big FROM bench_clock WHERE model = 'big' \\gset"
	echo "SELECT clk AS clk_small FROM bench_clock WHERE model = 'small' \\gset"
	echo "\\o /dev/null"
	for _ in 1 2 3 4 5; do q big; q small; done
	echo "\\timing on"
	: >"$W/labels"
	for ((r = 1; r <= REPS; r++)); do
		if [ $((r % 2)) -eq 1 ]; then order="small big"; else order="big small"; fi
		for m in $order; do q $m; echo $m >>"$W/labels"; done
	done
	echo "\\timing off"
	echo "\\o"
} >"$W/delta.psql"
quiet_gate
disturb_begin
backend_run "$W/delta" 0 <"$W/delta.psql" >"$W/delta.ms"
disturb_end "$W/foreign"
[ "$(wc -l <"$W/delta.ms")" -eq $((2 * REPS)) ] || die "history: expected $((2 * REPS)) timings, got $(wc -l <"$W/delta.ms")"
paste "$W/labels" "$W/delta.ms" >"$W/delta.tsv"
s=$(awk '$1 == "small" { print $2 }' "$W/delta.tsv" | median)
b=$(awk '$1 == "big" { print $2 }' "$W/delta.tsv" | median)
r=$(ratio "$b" "$s")
v=$(verdict "$r" '<=' "$TARGET")
record history "delta of $DELTA: ${SMALL} keys vs ${BIG} keys" "$s" "$b" "ms (median of $REPS)" "$r" "<= $TARGET" "$v"
log "history: delta small $s ms, big $b ms"

# Plans, for the record (printed when the target is missed).
for m in small big; do
	{
		echo "SELECT clk AS clk FROM bench_clock WHERE model = '$m' \\gset"
		echo "EXPLAIN (ANALYZE, BUFFERS, VERBOSE) SELECT count(*), sum(length(h::text)) FROM scuttlebutt.history('$m', :'clk') h;"
	} | sql -f - >"$W/explain.$m.txt" 2>&1
done

# Full dump of the big model, and a reference query reading the same rows
# in the same order straight from the table.
{
	echo "\\o /dev/null"
	echo "\\timing on"
	for ((r = 1; r <= DUMP_REPS; r++)); do
		echo "SELECT count(*) FROM scuttlebutt.history('big');"
	done
	echo "\\timing off"
	echo "\\o"
} >"$W/dump.psql"
quiet_gate
disturb_begin
backend_run "$W/dump" 0 <"$W/dump.psql" >"$W/dump.ms"
disturb_end "$W/foreign"
{
	echo "SELECT id AS big_id FROM scuttlebutt.registry WHERE name = 'big' \\gset"
	echo "\\o /dev/null"
	echo "\\timing on"
	for ((r = 1; r <= DUMP_REPS; r++)); do
		echo "SELECT count(*) FROM (SELECT u.doc FROM scuttlebutt.updates u WHERE u.model_id = :big_id ORDER BY u.source, u.ts) s;"
	done
	echo "\\timing off"
	echo "\\o"
} >"$W/dumpref.psql"
quiet_gate
disturb_begin
backend_run "$W/dumpref" 0 <"$W/dumpref.psql" >"$W/dumpref.ms"
disturb_end "$W/foreign"
dm=$(median <"$W/dump.ms"); rm_=$(median <"$W/dumpref.ms")
record history "full dump count(*) of ${BIG} keys" "$rm_" "$dm" "ms (median of $DUMP_REPS)" "$(ratio "$dm" "$rm_")" "-" "info"

record history "foreign CPU during timed runs (max)" "-" "$(disturb_max "$W/foreign")" "% of all CPUs" "-" "-" "info"

# Memory of a full dump, in a fresh session (sampled, not timed).
echo "SELECT count(*) FROM scuttlebutt.history('big');" | backend_run "$W/dumpmem" 1 >/dev/null
record history "full dump: backend VmHWM" "-" "$(<"$W/dumpmem.hwm")" "kB" "-" "-" "info"
record history "full dump: backend RssShmem" "-" "$(<"$W/dumpmem.shmem")" "kB" "-" "-" "info"
record history "full dump: backend peak RssAnon" "-" "$(<"$W/dumpmem.anon")" "kB" "-" "-" "info"
# The same for the whole dump sent to the client (what export() feeds).
echo "\\o /dev/null
SELECT h::text FROM scuttlebutt.history('big') h;
\\o" | backend_run "$W/dumpmem2" 1 >/dev/null
record history "dump to client: backend peak RssAnon" "-" "$(<"$W/dumpmem2.anon")" "kB" "-" "-" "info"
sql -f - <<'SQL' >"$W/explain.dump.txt" 2>&1 || true
EXPLAIN (ANALYZE, BUFFERS) SELECT count(*) FROM scuttlebutt.history('big');
SQL

if [ -z "${BENCH_QUIET:-}" ]; then
	echo
	echo "history:"
	bench_conditions
	print_table history
	if [ "$v" != PASS ]; then
		echo
		echo "history: target missed; plans of the delta queries:"
		cat "$W/explain.small.txt" "$W/explain.big.txt"
	fi
fi
