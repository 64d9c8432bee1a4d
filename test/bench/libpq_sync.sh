#!/usr/bin/env bash
# test/bench/libpq_sync.sh: initial sync of an N-key model from one server
# to a fresh one over libpq (scuttlebutt.add_peer), for each N in $SIZES,
# side by side with PostgreSQL's logical replication copying a table of the
# same N rows (CREATE SUBSCRIPTION ... copy_data).
#
# Server "a" holds, per size N:
#   - model m<N>: keys k1..kN, values {"v": i, "s": "value i"}, written with
#     set_many() in chunks of 100,000;
#   - table kv<N> (key text PRIMARY KEY, ts float8, source text, doc json,
#     UNIQUE (source, ts)): the same keys, each row shaped like the
#     update's row in scuttlebutt.updates (doc = [["k<i>", value], ts,
#     source]), and publication p<N> FOR TABLE kv<N>.
# Both are vacuumed and analyzed once built, so that autovacuum does not
# work through them during the timed runs (it did, and slowed whichever
# side it fell on).
# Before every run, server "b" is fresh: no peer, no subscription, model
# m<N> dropped and created again and scuttlebutt's tables truncated, table
# kv<N> dropped and created again (empty, with its indexes); no connection
# left between the servers; both CHECKPOINTed.  The timed part, in one psql
# session on b, from the server's clock read just before the first
# statement to the one read when the wait returns:
#   scuttlebutt:  SELECT scuttlebutt.add_peer('m<N>', '<a's conninfo>');
#                 SELECT scuttlebutt.wait_for_sync('m<N>', '600s');  -- true
#   logical:      CREATE SUBSCRIPTION s<N> CONNECTION '<a's conninfo>'
#                     PUBLICATION p<N>;              -- copy_data = true
#                 then a loop (10 ms) until pg_subscription_rel says 'r'
#                 (ready) for kv<N>; the moment its last key k<N> was first
#                 visible (the copy committed) is an info row.
# Checked after each run: b holds N updates of m<N> and the same clock as
# a; b's kv<N> holds N rows with the same sum(hashtext(key || doc)) as a's.
# The peer is removed / the subscription dropped after each run.
# With LIBPQ_SYNC_TRANSPORT=stream, the scuttlebutt side syncs over the
# scuttlebutt stream protocol instead (a's worker listens on 127.0.0.1;
# SELECT scuttlebutt.add_stream_peer('m<N>', '127.0.0.1', <a's listener>)),
# still beside logical replication.
# With LIBPQ_SYNC_FRESH=1, b is instead a brand-new cluster before every
# run (stopped, removed, initdb'd and started again, the table or model
# created): the usual case for a new replica, which also pays for creating
# every WAL segment the sync writes.  Info rows: the WAL bytes b wrote per
# key during the sync (pg_current_wal_insert_lsn() before and after).
# Repetition 0 (the largest size only) warms up (b's first sync also
# creates its WAL segments) and is not kept; then $REPS runs per size and
# side, sizes interleaved, the order of the sides flipping every repetition.
# Table: median seconds per size, ratio scuttlebutt / logical (target for
# 1,000,000 keys: <= 1.2, as issue 14 asks); seconds per 100,000 keys at the smallest and
# largest size (growth; 1 = linear; target for scuttlebutt <= 1.5 as for
# stream_server_sync); info rows: the CPU seconds used by both servers
# together during the run (every process of both clusters, including the
# connections that ended), the logical copy's time to visible data, and the
# first run of the largest size.
#
#   LIBPQ_SYNC_SIZES="100000 1000000" LIBPQ_SYNC_REPS=3 test/bench/libpq_sync.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$BENCH_DIR/libpq_lib.sh"

SIZES=${LIBPQ_SYNC_SIZES:-100000 1000000}
REPS=${LIBPQ_SYNC_REPS:-3}
FRESH=${LIBPQ_SYNC_FRESH:-0}
TRANSPORT=${LIBPQ_SYNC_TRANSPORT:-libpq}
case $TRANSPORT in libpq | stream) ;; *) die "LIBPQ_SYNC_TRANSPORT must be libpq or stream" ;; esac
KIND=warm
[ "$FRESH" = 1 ] && KIND=fresh
TARGET_RATIO=1.2
TARGET_GROWTH=1.5
SIDES=""
has_side logical && SIDES="$SIDES logical"
has_side scuttlebutt && SIDES="$SIDES scuttlebutt"

W="$SERVERS_TMP/sync"
mkdir -p "$W"
libpq_server a "$([ "$TRANSPORT" = stream ] && echo listen)"
libpq_server b
: >"$W/foreign"

for n in $SIZES; do
	t0=$(date +%s)
	if has_side scuttlebutt; then
		build_model a "m$n" "$n"
		[ "$(model_count a "m$n")" -eq "$n" ] || die "model m$n holds $(model_count a "m$n") updates, expected $n"
	fi
	if has_side logical; then
		kv_create a "kv$n"
		kv_fill a "kv$n" "$n"
		sqlx a -c "CREATE PUBLICATION p$n FOR TABLE public.kv$n" >/dev/null
		sqlx1 a -c "SELECT sum(hashtext(key || doc::text)) FROM public.kv$n" >"$W/kv$n.sum"
	fi
	has_side scuttlebutt && sqlx a -c "VACUUM ANALYZE scuttlebutt.updates" -c "VACUUM ANALYZE scuttlebutt.clocks" >/dev/null
	has_side logical && sqlx a -c "VACUUM ANALYZE public.kv$n" >/dev/null
	log "libpq_sync: built m$n / kv$n on a in $(($(date +%s) - t0)) s"
	for side in $SIDES; do : >"$W/$side.$n.ms"; : >"$W/$side.$n.cpu"; : >"$W/$side.$n.wal"; done
	: >"$W/logical.$n.visible"
done
has_side scuttlebutt && log "libpq_sync: a's scuttlebutt.updates $(sqlx1 a -c "SELECT pg_size_pretty(pg_total_relation_size('scuttlebutt.updates'))") with indexes"

# define_sub_wait: b's bench_sub_wait(), described below.
define_sub_wait() {
	sqlx b <<'SQL' >/dev/null
-- bench_sub_wait(sub, tbl, lastkey, timeout_s): every 10 ms until every
-- table of subscription SUB is ready ('r'): the epoch ms when row LASTKEY
-- of TBL was first seen, and when all were ready (NULL on timeout).
CREATE FUNCTION public.bench_sub_wait(sub text, tbl text, lastkey text, timeout_s float8,
	OUT visible_ms float8, OUT ready_ms float8, OUT states text)
LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz := clock_timestamp();
	ok boolean;
BEGIN
	LOOP
		IF visible_ms IS NULL THEN
			EXECUTE format('SELECT EXISTS (SELECT FROM public.%I WHERE key = $1)', tbl) INTO ok USING lastkey;
			IF ok THEN
				visible_ms := extract(epoch FROM clock_timestamp()) * 1000;
			END IF;
		END IF;
		SELECT string_agg(r.srsubstate::text, '') INTO states
			FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid
			WHERE s.subname = sub;
		IF states IS NOT NULL AND states = repeat('r', length(states)) THEN
			ready_ms := extract(epoch FROM clock_timestamp()) * 1000;
			visible_ms := coalesce(visible_ms, ready_ms);
			RETURN;
		END IF;
		IF clock_timestamp() - t0 > make_interval(secs => timeout_s) THEN
			RETURN;
		END IF;
		PERFORM pg_sleep(0.01);
	END LOOP;
END
$$;
SQL
}
define_sub_wait

HZ=$(getconf CLK_TCK)
both_ticks() { echo $(($(server_ticks a) + $(server_ticks b))); }

# fresh_b N: b as described above for size N; no connection left.
fresh_b() {
	local n=$1
	if [ "$FRESH" = 1 ]; then
		stop_server b
		libpq_server b
		define_sub_wait
	fi
	if has_side logical; then
		sub_drop b "s$n"
		kv_create b "kv$n"
	fi
	has_side scuttlebutt && empty_models b "m$n"
	wait_no_connections a b
	sqlx a -c "CHECKPOINT" >/dev/null
	has_side scuttlebutt && sqlx b -c "VACUUM ANALYZE scuttlebutt.updates" -c "VACUUM ANALYZE scuttlebutt.clocks" >/dev/null
	has_side logical && sqlx b -c "VACUUM ANALYZE public.kv$n" >/dev/null
	sqlx b -c "CHECKPOINT" >/dev/null
}

# run SIDE N REP: one timed initial sync of N keys from a to a fresh b.
run() {
	local side=$1 n=$2 rep=$3 tag="$W/$1.$2.$3" ms t0 t1 vis ok got c0 cpu extra=""
	fresh_b "$n"
	if [ "$side" = scuttlebutt ]; then
		cat >"$tag.sql" <<SQL
SELECT extract(epoch FROM clock_timestamp()) * 1000;
$(if [ "$TRANSPORT" = stream ]; then
	echo "SELECT scuttlebutt.add_stream_peer('m$n', '127.0.0.1', ${LISTEN_PORT_OF[a]});"
else
	echo "SELECT scuttlebutt.add_peer('m$n', '$(conninfo a)');"
fi)
SELECT scuttlebutt.wait_for_sync('m$n', '600s'), extract(epoch FROM clock_timestamp()) * 1000;
SQL
	else
		cat >"$tag.sql" <<SQL
SELECT extract(epoch FROM clock_timestamp()) * 1000;
CREATE SUBSCRIPTION s$n CONNECTION '$(conninfo a)' PUBLICATION p$n;
SELECT visible_ms, ready_ms, states FROM public.bench_sub_wait('s$n', 'kv$n', 'k$n', 600);
SQL
	fi
	load=$(cut -d' ' -f1-3 /proc/loadavg)
	quiet_gate
	lsn0=$(sqlx1 b -c "SELECT pg_current_wal_insert_lsn()")
	c0=$(both_ticks)
	disturb_begin
	sqlx b -At -F ' ' -f "$tag.sql" >"$tag.out" 2>"$tag.err" || die "$side sync of $n keys failed: $(cat "$tag.err" "$tag.out")"
	disturb_end "$W/foreign.all"
	cpu=$(awk -v t="$(($(both_ticks) - c0))" -v hz="$HZ" 'BEGIN { printf "%.2f", t / hz }')
	wal=$(sqlx1 b -c "SELECT round(pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '$lsn0') / $n)")
	t0=$(sed -n 1p "$tag.out")
	if [ "$side" = scuttlebutt ]; then
		read -r ok t1 < <(sed -n 3p "$tag.out")
		[ "$ok" = t ] || die "wait_for_sync('m$n') on b returned '$ok': $(cat "$tag.out"); b: $(peer_line b)"
		got=$(model_count b "m$n")
		[ "$got" -eq "$n" ] || die "b holds $got updates of m$n after sync, expected $n"
		[ "$(model_clock b "m$n")" = "$(model_clock a "m$n")" ] || die "b's clock of m$n differs from a's after sync"
		extra="; b: $(peer_line b)"
		remove_peers b
	else
		read -r vis t1 states < <(sed -n 2p "$tag.out")
		[ -n "$t1" ] || die "subscription s$n not ready after 600 s (states '$states')"
		got=$(sqlx1 b -c "SELECT count(*) FROM public.kv$n")
		[ "$got" -eq "$n" ] || die "b's kv$n holds $got rows after the copy, expected $n"
		[ "$(sqlx1 b -c "SELECT sum(hashtext(key || doc::text)) FROM public.kv$n")" = "$(<"$W/kv$n.sum")" ] ||
			die "b's kv$n differs from a's after the copy"
		extra="; data visible after $(awk -v a="$t0" -v b="$vis" 'BEGIN { printf "%.2f s", (b - a) / 1000 }')"
		sub_drop b "s$n"
	fi
	ms=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
	if [ "$rep" -gt 0 ]; then
		echo "$ms" >>"$W/$side.$n.ms"; echo "$cpu" >>"$W/$side.$n.cpu"; echo "$wal" >>"$W/$side.$n.wal"
		[ "$side" = logical ] && awk -v a="$t0" -v b="$vis" 'BEGIN { printf "%.1f\n", b - a }' >>"$W/logical.$n.visible"
		tail -1 "$W/foreign.all" >>"$W/foreign"
	else
		echo "$ms" >"$W/$side.$n.first"
	fi
	log "libpq_sync: $side $n keys rep=$rep: $(awk -v ms="$ms" 'BEGIN { printf "%.2f s", ms / 1000 }'); CPU of a+b $cpu s; b's WAL $wal bytes per key; foreign CPU $(tail -1 "$W/foreign.all")%; load before $load$extra"
}

largest=$(printf '%s\n' $SIZES | sort -n | tail -1)
for rep in $(seq 0 "$REPS"); do
	for n in $SIZES; do
		[ "$rep" -eq 0 ] && [ "$n" != "$largest" ] && continue
		if [ $((rep % 2)) -eq 1 ]; then order=$SIDES; else order=$(echo "$SIDES" | awk '{ for (i = NF; i > 0; i--) printf "%s ", $i }'); fi
		for side in $order; do
			run "$side" "$n" "$rep"
		done
	done
done

secs() { awk -v ms="$1" 'BEGIN { if (ms == "nan" || ms == "") print "-"; else printf "%.3f", ms / 1000 }'; }
per100k() { awk -v s="$1" -v n="$2" 'BEGIN { if (s == "-") print "-"; else printf "%.3f", s / (n / 100000) }'; }
first="" last=""
for n in $SIZES; do
	l=- e=- r=- lc=- ec=- lw=- ew=-
	has_side logical && { l=$(secs "$(median <"$W/logical.$n.ms")"); lc=$(median <"$W/logical.$n.cpu"); lw=$(median <"$W/logical.$n.wal"); }
	has_side scuttlebutt && { e=$(secs "$(median <"$W/scuttlebutt.$n.ms")"); ec=$(median <"$W/scuttlebutt.$n.cpu"); ew=$(median <"$W/scuttlebutt.$n.wal"); }
	[ "$l" != - ] && [ "$e" != - ] && r=$(ratio "$e" "$l")
	if [ "$n" -eq 1000000 ] && [ "$r" != - ]; then
		record libpq_sync "initial sync, $n keys, $KIND b, $TRANSPORT (logical: copy until ready)" "$l" "$e" "s (median of $REPS)" "$r" "ratio <= $TARGET_RATIO" "$(verdict "$r" '<=' "$TARGET_RATIO")"
	else
		record libpq_sync "initial sync, $n keys, $KIND b, $TRANSPORT (logical: copy until ready)" "$l" "$e" "s (median of $REPS)" "$r" "-" "-"
	fi
	record libpq_sync "s per 100k keys at $n keys" "$(per100k "$l" "$n")" "$(per100k "$e" "$n")" "s per 100,000 keys" "$r" "-" "info"
	record libpq_sync "b's WAL per key, $n-key sync" "$lw" "$ew" "bytes (median of $REPS)" "$([ "$lw" != - ] && [ "$ew" != - ] && ratio "$ew" "$lw" || echo -)" "-" "info"
	record libpq_sync "CPU of both servers during the $n-key sync" "$lc" "$ec" "CPU s (median of $REPS)" "$([ "$lc" != - ] && [ "$ec" != - ] && ratio "$ec" "$lc" || echo -)" "-" "info"
	has_side logical && record libpq_sync "logical: $n rows visible on b (copy committed)" "$(secs "$(median <"$W/logical.$n.visible")")" "-" "s (median of $REPS)" "-" "-" "info"
	for side in $SIDES; do
		log "libpq_sync: raw $side $n keys ms: $(paste -sd' ' "$W/$side.$n.ms")$([ "$n" = "$largest" ] && echo "; first run $(<"$W/$side.$n.first") ms")"
	done
	[ -z "$first" ] && first="$n $(per100k "$l" "$n") $(per100k "$e" "$n")"
	last="$n $(per100k "$l" "$n") $(per100k "$e" "$n")"
done
read -r n1 l1 e1 <<<"$first"
read -r n2 l2 e2 <<<"$last"
if [ "$n1" != "$n2" ]; then
	if [ "$e1" != - ]; then
		r=$(ratio "$e2" "$e1")
		record libpq_sync "scuttlebutt growth: s per 100k, $n1 (baseline) vs $n2 keys" "$e1" "$e2" "s per 100,000 keys" "$r" "<= $TARGET_GROWTH" "$(verdict "$r" '<=' "$TARGET_GROWTH")"
	fi
	if [ "$l1" != - ]; then
		record libpq_sync "logical growth: s per 100k, $n1 (baseline) vs $n2 rows" "$l1" "$l2" "s per 100,000 rows" "$(ratio "$l2" "$l1")" "-" "info"
	fi
fi
fl=- fe=-
has_side logical && fl=$(secs "$(<"$W/logical.$largest.first")")
has_side scuttlebutt && fe=$(secs "$(<"$W/scuttlebutt.$largest.first")")
record libpq_sync "first run, $largest keys (new WAL segments on b; not in the median)" "$fl" "$fe" "s (1 run)" "-" "-" "info"

record libpq_sync "foreign CPU during runs (max)" "-" "$(disturb_max "$W/foreign")" "% of all CPUs" "-" "-" "info"

if [ -z "${BENCH_QUIET:-}" ]; then
	echo
	echo "libpq_sync: $KIND b dials a; baseline = logical replication (CREATE SUBSCRIPTION, copy_data, until 'r'), extension = $([ "$TRANSPORT" = stream ] && echo add_stream_peer || echo add_peer) + wait_for_sync; ratio = scuttlebutt / logical"
	libpq_conditions
	print_table libpq_sync
fi
