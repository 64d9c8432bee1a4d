#!/usr/bin/env bash
# test/bench/set_many.sh: bulk write rate of scuttlebutt.set_many() against
# one plain INSERT ... SELECT FROM jsonb_each() ... ON CONFLICT DO UPDATE of
# the same rows, side by side.
#
# The input, a jsonb object of $KEYS keys, is prepared beforehand in a table
# stored uncompressed (STORAGE EXTERNAL) and read by both statements, so both
# pay the same input cost.  Two cases:
#   empty: into an empty model / table (both truncated, then CHECKPOINT)
#   full:  into a model / table already holding the same keys (every row
#          is updated to a new value; VACUUM and CHECKPOINT before)
# Each case runs $REPS times, sides interleaved with the order alternating.
# Time is psql's \timing of the one statement (server time plus a local
# round trip; commit included).  Rows/s = $KEYS / time.  Target: >= 0.5.
#
#   MANY_KEYS=100000 MANY_REPS=5 test/bench/set_many.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"

KEYS=${MANY_KEYS:-100000}
REPS=${MANY_REPS:-5}
TARGET=0.5

bench_cluster_start
bench_database bench_many

W="$BENCH_OUT/set_many"
mkdir -p "$W"

log "set_many: preparing two $KEYS-key inputs"
sql <<SQL >/dev/null
DROP TABLE IF EXISTS bench_input, plain_kv;
CREATE TABLE bench_input (id int PRIMARY KEY, doc jsonb);
ALTER TABLE bench_input ALTER doc SET STORAGE EXTERNAL;
INSERT INTO bench_input
	SELECT r, jsonb_object_agg('k' || i, jsonb_build_object('v', i * 10 + r, 's', 'value ' || i))
	FROM generate_series(1, 2) r, generate_series(1, $KEYS) i GROUP BY r;
CREATE TABLE plain_kv (key text PRIMARY KEY, value jsonb);
SQL
log "set_many: input is $(sql1 -c "SELECT pg_size_pretty(pg_column_size(doc)::bigint) FROM bench_input WHERE id = 1") per statement"

PLAIN_SQL="INSERT INTO plain_kv (key, value) SELECT e.key, e.value FROM bench_input b CROSS JOIN LATERAL jsonb_each(b.doc) e WHERE b.id = :in ON CONFLICT (key) DO UPDATE SET value = excluded.value;"
EXT_SQL="SELECT scuttlebutt.set_many('m', b.doc) FROM bench_input b WHERE b.id = :in;"

# reset SIDE: an empty table / model.
reset() {
	if [ "$1" = plain ]; then
		sql -c "TRUNCATE plain_kv" >/dev/null
	else
		# The bench database holds no other model, so the tables can be
		# truncated back to empty files, as plain_kv is.
		sql <<'SQL' >/dev/null
SELECT scuttlebutt.drop_model('m') FROM scuttlebutt.registry WHERE name = 'm';
TRUNCATE scuttlebutt.updates, scuttlebutt.clocks;
SELECT scuttlebutt.create_model('m');
SQL
	fi
}

# timed SIDE INPUT TAG: one statement in its own session; prints ms.
timed() {
	local side=$1 in=$2 tag=$3 stmt
	if [ "$side" = plain ]; then stmt=$PLAIN_SQL; else stmt=$EXT_SQL; fi
	# The checkpoint first, outside the measure: the kernel's writeback of
	# what it flushes would count as other work on the machine.
	sql -c "CHECKPOINT" >/dev/null
	quiet_gate
	disturb_begin
	backend_run "$W/$tag" 0 <<PSQL
\\set in $in
\\o /dev/null
\\timing on
$stmt
\\timing off
\\o
PSQL
	disturb_end "$W/foreign"
	echo "$(<"$W/$tag.hwm")" >>"$W/$side.hwm"
}

# check SIDE INPUT: the table / model holds the input's keys and values.
check() {
	local side=$1 in=$2 q
	if [ "$side" = plain ]; then
		q="SELECT count(*) FILTER (WHERE p.value = e.value) FROM bench_input b CROSS JOIN LATERAL jsonb_each(b.doc) e JOIN plain_kv p ON p.key = e.key WHERE b.id = $in"
	else
		q="SELECT count(*) FILTER (WHERE x.value = e.value) FROM bench_input b CROSS JOIN LATERAL jsonb_each(b.doc) e JOIN scuttlebutt.entries('m') x ON x.key = e.key WHERE b.id = $in"
	fi
	local n
	n=$(sql1 -c "$q")
	[ "$n" -eq "$KEYS" ] || die "set_many: $side holds $n of the $KEYS expected rows after input $in"
}

for f in plain.empty set.empty plain.full set.full plain.hwm set.hwm foreign; do : >"$W/$f"; done
# Repetition 0 warms up (caches, first relation extension) and is not kept.
for rep in $(seq 0 "$REPS"); do
	if [ $((rep % 2)) -eq 1 ]; then order="plain set"; else order="set plain"; fi
	# Alternate the inputs so that the update round always changes values.
	a=$((1 + rep % 2)); b=$((1 + (rep + 1) % 2))
	for side in $order; do
		reset "$side"
		ms=$(timed "$side" "$a" "$side.empty.$rep")
		[ -n "$ms" ] || die "no timing for $side empty"
		[ "$rep" -gt 0 ] && echo "$ms" >>"$W/$side.empty"
		check "$side" "$a"
		sql -c "VACUUM ANALYZE plain_kv" -c "VACUUM ANALYZE scuttlebutt.updates" -c "VACUUM ANALYZE scuttlebutt.clocks" >/dev/null
		ms2=$(timed "$side" "$b" "$side.full.$rep")
		[ "$rep" -gt 0 ] && echo "$ms2" >>"$W/$side.full"
		check "$side" "$b"
		log "set_many: rep=$rep $side: empty $ms ms, full $ms2 ms (foreign CPU $(tail -2 "$W/foreign" | paste -sd/)%)"
	done
done

for c in empty full; do
	bm=$(median <"$W/plain.$c"); em=$(median <"$W/set.$c")
	b=$(awk -v n="$KEYS" -v ms="$bm" 'BEGIN { printf "%.0f", n / (ms / 1000) }')
	e=$(awk -v n="$KEYS" -v ms="$em" 'BEGIN { printf "%.0f", n / (ms / 1000) }')
	r=$(ratio "$e" "$b")
	record set_many "$c ($KEYS keys): rows/s" "$b" "$e" "rows/s (median of $REPS)" "$r" ">= $TARGET" "$(verdict "$r" '>=' "$TARGET")"
	record set_many "$c ($KEYS keys): ms" "$bm" "$em" "ms (median of $REPS)" "-" "-" "-"
	log "set_many: raw $c ms plain: $(paste -sd' ' "$W/plain.$c") / set_many: $(paste -sd' ' "$W/set.$c")"
done
record set_many "foreign CPU during runs (max)" "-" "$(disturb_max "$W/foreign")" "% of all CPUs" "-" "-" "info"
record set_many "backend peak VmHWM" "$(sort -n "$W/plain.hwm" | tail -1)" "$(sort -n "$W/set.hwm" | tail -1)" "kB (max over runs)" "-" "-" "info"

# Private memory of the backend: one more, untimed, sampled run per side
# into a full table / model.
for side in plain set; do
	if [ "$side" = plain ]; then stmt=$PLAIN_SQL; else stmt=$EXT_SQL; fi
	backend_run "$W/$side.mem" 1 >/dev/null <<PSQL
\\set in 1
\\o /dev/null
$stmt
\\o
PSQL
done
record set_many "backend peak RssAnon (full)" "$(<"$W/plain.mem.anon")" "$(<"$W/set.mem.anon")" "kB (sampled)" "-" "-" "info"

if [ -z "${BENCH_QUIET:-}" ]; then
	echo
	echo "set_many:"
	bench_conditions
	print_table set_many
fi
