#!/usr/bin/env bash
# test/bench/libpq_latency.sh: live propagation of single writes from one
# server to the other over a scuttlebutt libpq peer, p50 and p99, in both
# directions, side by side with PostgreSQL's logical replication.
#
# Servers a and b.  Model lat on both, b dials a (add_peer('lat', <a's
# conninfo>) on b, send and receive), synced; the peer stays live.  Table
# kv_lat (shaped like scuttlebutt.updates' rows, as in libpq_sync.sh) on
# both, published by a.  Cases:
#   pull:    set() on a (the remote), read on b (the dialer pulls it: b's
#            long poll on a is woken by a's commit)
#   push:    set() on b (the dialer), read on a (b's worker, woken by b's
#            commit, pushes it with scuttlebutt.import())
#   logical: INSERT ... ON CONFLICT DO UPDATE on a, read on b, through a
#            subscription (copy_data = false, synchronous_commit =
#            $LIBPQ_LAT_SUB_SYNC, PostgreSQL's default 'off') created and
#            streaming before the run, dropped after it.
# One run: one psql session on the writing server runs $N writes of a new
# key each (its own transaction), $GAP_MS ms apart (pg_sleep), so the
# replication is idle when each commits:
#   SELECT scuttlebutt.set('lat', '<run>k<i>', '{"i": <i>}');
#   INSERT INTO kv_lat SELECT '<run>k<i>', <clock_timestamp() in ms>, ... ON CONFLICT ...
# Meanwhile one session on the reading server (a plpgsql loop, started
# before the writer) waits for the keys in order, checking the next one
# every $POLL_MS ms (pg_sleep), and notes when each became readable (its
# clock_timestamp()).  By default ($LIBPQ_LAT_READER=committing) the loop
# commits between its looks, as an application's short reads would; with
# "statement" it runs in one transaction block, as the one function call
# that was the reader until 2026-12-07 did: its snapshot stays for the
# whole run and keeps the reading server from pruning the row versions
# the run's applies leave dead.  Latency of a key = that moment - the write's
# timestamp: for scuttlebutt the update's ts (the clock read inside set()
# before the row is written, kept as is by the peer), for logical the
# clock_timestamp() read inside the INSERT.  Both clocks are this
# machine's.  It covers the rest of the writing statement, its commit (WAL
# flush, fsync on), the wake-up and transfer, the apply and its commit on
# the reader (unlike stream_latency.sh, which stops at the row's
# insertion), and the poll's granularity (about half of $POLL_MS on
# average, same on both sides).  All $N keys must arrive (checked).
# Each case runs $REPS times (the order rotating); the table shows the
# median over runs of each run's p50 and p99 (nearest rank), the ratio
# scuttlebutt / logical, and as info the median psql \timing of the write
# statement (commit included) on the writer.  Also shown: p50 and p99 over
# all runs' writes pooled (the p99 of one run is its tenth slowest write
# of 1,000, the third of 300, which one stall moves), and the WAL each
# server wrote per write (pg_current_wal_insert_lsn() before and after a
# run, its CHECKPOINT's page images included; on the reader, the apply's
# and any pruning's).
# Targets: p50 <= 5 ms, p99 <= 50 ms.
#
#   LIBPQ_LAT_N=1000 LIBPQ_LAT_GAP_MS=20 LIBPQ_LAT_REPS=3 LIBPQ_LAT_POLL_MS=0.5 \
#   LIBPQ_LAT_SUB_SYNC=off LIBPQ_LAT_READER=committing test/bench/libpq_latency.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$BENCH_DIR/libpq_lib.sh"

N=${LIBPQ_LAT_N:-1000}
GAP_MS=${LIBPQ_LAT_GAP_MS:-20}
REPS=${LIBPQ_LAT_REPS:-3}
POLL_MS=${LIBPQ_LAT_POLL_MS:-0.5}
SUB_SYNC=${LIBPQ_LAT_SUB_SYNC:-off}
READER=${LIBPQ_LAT_READER:-committing}
case "$READER" in committing | statement) ;; *) die "LIBPQ_LAT_READER is committing or statement" ;; esac
TARGET_P50=5
TARGET_P99=50
CASES=""
has_side logical && CASES="$CASES logical"
has_side scuttlebutt && CASES="$CASES pull push"

W="$SERVERS_TMP/latency"
mkdir -p "$W"
lat_servers
for s in a b; do
	sqlx "$s" <<'SQL' >/dev/null
-- bench_observe(kind, pre, n, nap_s, timeout_s, commits): waits for keys
-- pre1..preN in order (model lat, or table kv_lat), checking the next one
-- every nap_s, committing between looks if commits (else it is CALLed in
-- a transaction block, and one snapshot stays for the whole run); its
-- lines "i ts seen_ms": per key its write timestamp and the epoch ms it
-- was first seen.
CREATE PROCEDURE public.bench_observe(kind text, pre text, n int, nap_s float8,
	timeout_s float8, commits boolean, INOUT lines text DEFAULT NULL) LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz := clock_timestamp();
	mid int;
	k text;
	v float8;
	seen text[] := '{}';
BEGIN
	IF kind = 'scuttlebutt' THEN
		SELECT id INTO mid FROM scuttlebutt.registry WHERE name = 'lat';
	END IF;
	FOR j IN 1..n LOOP
		k := pre || j;
		LOOP
			IF kind = 'scuttlebutt' THEN
				SELECT u.ts INTO v FROM scuttlebutt.updates u WHERE u.model_id = mid AND u.key = k;
			ELSE
				SELECT t.ts INTO v FROM public.kv_lat t WHERE t.key = k;
			END IF;
			EXIT WHEN v IS NOT NULL OR clock_timestamp() - t0 > make_interval(secs => timeout_s);
			IF commits THEN
				COMMIT;
			END IF;
			PERFORM pg_sleep(nap_s);
		END LOOP;
		EXIT WHEN v IS NULL;
		seen := seen || format('%s %s %s', j, v, extract(epoch FROM clock_timestamp()) * 1000);
	END LOOP;
	lines := array_to_string(seen, E'\n');
END
$$;
SQL
done
has_side scuttlebutt && log "libpq_latency: b dials a: $(peer_line b)"
: >"$W/foreign"

# run CASE REP
run() {
	local case=$1 rep=$2 tag="$W/$1.$2" pre="$1_r$2_k" wr rd kind got opid observe
	if [ "$case" = push ]; then wr=b rd=a; else wr=a rd=b; fi
	if [ "$case" = logical ]; then kind=logical; else kind=scuttlebutt; fi
	lat_writes "$kind" "$pre" "$N" "$GAP_MS" timing >"$tag.sql"
	if [ "$case" = logical ]; then
		lat_subscribe "$SUB_SYNC"
	else
		for s in a b; do
			[ "$(sqlx1 "$s" -c "SELECT scuttlebutt.wait_for_sync('lat', '60s')")" = t ] || die "$s not in sync before the run: $(peer_line "$s")"
		done
	fi
	sqlx a -c "CHECKPOINT" >/dev/null
	sqlx b -c "CHECKPOINT" >/dev/null
	quiet_gate
	observe="CALL public.bench_observe('$kind', '$pre', $N, $POLL_MS / 1000.0, 120 + $N * $GAP_MS / 1000.0, $([ "$READER" = committing ] && echo true || echo false))"
	[ "$READER" = statement ] && observe="BEGIN; $observe; COMMIT"
	sqlx1 "$rd" -c "$observe" >"$tag.obs" 2>&1 &
	opid=$!
	track_pid "$opid"
	# the reader polls before the first write
	for _ in $(seq 1 100); do
		[ "$(sqlx1 "$rd" -c "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%bench_observe(''$kind'', ''$pre''%' AND state = 'active' AND pid <> pg_backend_pid()")" = 1 ] && break
		sleep 0.02
	done
	lsn_w=$(sqlx1 "$wr" -c "SELECT pg_current_wal_insert_lsn()")
	lsn_r=$(sqlx1 "$rd" -c "SELECT pg_current_wal_insert_lsn()")
	disturb_begin
	sqlx1 "$wr" -f "$tag.sql" >"$tag.out" 2>&1 || die "writes on $wr failed: $(tail -3 "$tag.out")"
	wait "$opid" || die "reader on $rd failed: $(cat "$tag.obs")"
	disturb_end "$W/foreign"
	# WAL per write on each server, page images after the CHECKPOINT included
	sqlx1 "$wr" -c "SELECT round(pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '$lsn_w') / $N)" >>"$W/$case.wal_w"
	sqlx1 "$rd" -c "SELECT round(pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '$lsn_r') / $N)" >>"$W/$case.wal_r"
	[ "$case" = logical ] && sub_drop b s_lat
	got=$(wc -l <"$tag.obs")
	[ "$got" -eq "$N" ] || die "$case: only $got of $N writes reached $rd$([ "$kind" = scuttlebutt ] && echo "; $rd: $(peer_line "$rd")")"
	awk '{ print $3 - $2 }' "$tag.obs" >"$tag.lat"
	awk '/^Time: / { print $2 }' "$tag.out" >"$tag.write_ms"
	p50=$(pctl 50 <"$tag.lat"); p99=$(pctl 99 <"$tag.lat")
	echo "$p50" >>"$W/$case.p50"; echo "$p99" >>"$W/$case.p99"
	median <"$tag.write_ms" >>"$W/$case.write"
	log "libpq_latency: $case rep=$rep ($wr -> $rd): p50 $p50 ms, p90 $(pctl 90 <"$tag.lat") ms, p99 $p99 ms, max $(pctl 100 <"$tag.lat") ms, min $(pctl 0 <"$tag.lat") ms; write statement p50 $(median <"$tag.write_ms") ms; foreign CPU $(tail -1 "$W/foreign")%"
}

read -ra cases <<<"$CASES"
for c in "${cases[@]}"; do : >"$W/$c.p50"; : >"$W/$c.p99"; : >"$W/$c.write"; : >"$W/$c.wal_w"; : >"$W/$c.wal_r"; done
k=${#cases[@]}
for rep in $(seq 1 "$REPS"); do
	for ((j = 0; j < k; j++)); do
		run "${cases[$(((j + rep) % k))]}" "$rep"
	done
done

med() { if [ -s "$W/$1.$2" ]; then fmt "${3:-2}" "$(median <"$W/$1.$2")"; else echo -; fi; }
lp50=$(med logical p50); lp99=$(med logical p99)
if has_side scuttlebutt; then
	for c in pull push; do
		if [ "$c" = pull ]; then how="set() on a, read on b (b pulls); logical a->b"; else how="set() on b, read on a (b pushes); logical a->b"; fi
		e50=$(med "$c" p50); e99=$(med "$c" p99)
		r50=-; r99=-
		[ "$lp50" != - ] && { r50=$(ratio "$e50" "$lp50"); r99=$(ratio "$e99" "$lp99"); }
		record libpq_latency "$how: p50" "$lp50" "$e50" "ms (median of $REPS runs x $N)" "$r50" "<= $TARGET_P50 ms" "$(verdict "$e50" '<=' "$TARGET_P50")"
		record libpq_latency "$how: p99" "$lp99" "$e99" "ms (median of $REPS runs x $N)" "$r99" "<= $TARGET_P99 ms" "$(verdict "$e99" '<=' "$TARGET_P99")"
	done
else
	record libpq_latency "logical a->b: p50" "$lp50" "-" "ms (median of $REPS runs x $N)" "-" "-" "-"
	record libpq_latency "logical a->b: p99" "$lp99" "-" "ms (median of $REPS runs x $N)" "-" "-" "-"
fi
record libpq_latency "write statement, psql \\timing (commit incl.): logical vs pull / push" "$(med logical write)" "$(med pull write) / $(med push write)" "ms (median of run p50s)" "-" "-" "info"
# the same percentiles over every write of all runs together
pooled() { cat "$W/$1".*.lat | pctl "$2"; }
if has_side scuttlebutt && has_side logical; then
	for c in pull push; do
		for q in 50 99; do
			l=$(pooled logical $q); p=$(pooled "$c" $q)
			record libpq_latency "$c, p$q of all $REPS x $N writes pooled" "$(fmt 2 "$l")" "$(fmt 2 "$p")" "ms" "$(ratio "$p" "$l")" "-" "info"
		done
	done
fi
record libpq_latency "WAL per write on the writer: logical vs pull / push" "$(med logical wal_w 0)" "$(med pull wal_w 0) / $(med push wal_w 0)" "bytes (median of runs)" "-" "-" "info"
record libpq_latency "WAL per write on the reader (the apply, and pruning)" "$(med logical wal_r 0)" "$(med pull wal_r 0) / $(med push wal_r 0)" "bytes (median of runs)" "-" "-" "info"
for c in "${cases[@]}"; do log "libpq_latency: raw $c p50: $(paste -sd' ' "$W/$c.p50"); p99: $(paste -sd' ' "$W/$c.p99")"; done

record libpq_latency "foreign CPU during runs (max)" "-" "$(disturb_max "$W/foreign")" "% of all CPUs" "-" "-" "info"

if [ -z "${BENCH_QUIET:-}" ]; then
	echo
	echo "libpq_latency: a write's timestamp to the moment a reader on the other server sees it (its commit included; polled every $POLL_MS ms by a $READER reader), $N writes ${GAP_MS} ms apart per run; baseline = logical replication a->b (subscription synchronous_commit=$SUB_SYNC)"
	libpq_conditions
	print_table libpq_latency
fi
