#!/usr/bin/env bash
# test/bench/libpq_live_throughput.sh: live replication throughput over
# libpq: $BATCHES batches of $BATCH keys written back to back on one server,
# updates per second until the last one is readable on the other, in both
# directions of one scuttlebutt peer, side by side with PostgreSQL's
# logical replication applying the same upserts.
#
# Servers a and b.  Model tp holds keys k1..k<TOTAL> (TOTAL = BATCHES x
# BATCH) on both: built on a with set_many(), then b dials a
# (add_peer('tp', <a's conninfo>) on b, send and receive) and syncs; the
# peer stays live for the whole script.  Table kv_tp (shaped like
# scuttlebutt.updates' rows, as in libpq_sync.sh) holds the same keys on
# both servers, and a publishes it (p_tp).
# One run writes, in one psql session, $BATCHES statements (a transaction
# each) of $BATCH keys each, every key k1..k<TOTAL> once, all with a new
# value (every write updates an existing key):
#   scuttlebutt:  SELECT scuttlebutt.set_many('tp', <object of BATCH keys,
#                 values {"v": i, "r": <run>, "s": "value i"}>)
#   logical:      INSERT INTO kv_tp SELECT <the same rows, new ts> ON
#                 CONFLICT (key) DO UPDATE SET ts, source, doc
# A session on the other server checks every 2 ms whether the last key
# written (k<TOTAL>) holds this run's value (scuttlebutt.get(), or kv_tp's
# ts); after each run every key must hold the run's value there (checked).
# Cases:
#   pull:    writes on a (the remote), pulled by b's worker (the dialer)
#   push:    writes on b (the dialer), pushed by b's worker to a
#   logical: writes on a, applied on b by a subscription (copy_data = false)
#            created before the run (and streaming) and dropped after it, so
#            no walsender decodes the WAL of the other cases.
# Two modes ($MODES):
#   live:    the replication runs while the writer writes; throughput =
#            TOTAL / (the moment the last key is readable on the other
#            server - the first write's start), both read from the same
#            clock.  It cannot exceed the writer's own rate: the info rows
#            give the writer's time alone and the lag after its last commit.
#   backlog: nothing replicates while the writer writes (untimed): the peer
#            is removed (scuttlebutt), the subscription is created disabled
#            (its slot keeps the WAL); then, timed, the replication starts:
#            add_peer('tp', <a's conninfo>) on b / ALTER SUBSCRIPTION ENABLE
#            on b, until the last key is readable: the rate at which each
#            catches up on TOTAL updates (scuttlebutt: the catch-up of a
#            reconnecting peer through poll() / import(), not the live path).
# Before every run both servers are caught up (wait_for_sync on both),
# VACUUMed and CHECKPOINTed.  $REPS repetitions, the order of the cases
# rotating (no warm-up run: the initial sync and the loads warm both
# servers).  Table: median
# updates/s, ratio scuttlebutt / logical; target (live) >= 50,000 updates/s.
#
#   LIBPQ_TP_BATCHES=20 LIBPQ_TP_BATCH=10000 LIBPQ_TP_REPS=3 LIBPQ_TP_MODES="live backlog" \
#   test/bench/libpq_live_throughput.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$BENCH_DIR/libpq_lib.sh"

BATCHES=${LIBPQ_TP_BATCHES:-20}
BATCH=${LIBPQ_TP_BATCH:-10000}
REPS=${LIBPQ_TP_REPS:-3}
TOTAL=$((BATCHES * BATCH))
TARGET=50000
[ "$TOTAL" -lt 10000000 ] || die "at most 9,999,999 keys"
CASES=""
has_side logical && CASES="$CASES logical"
has_side scuttlebutt && CASES="$CASES pull push"
MODES=${LIBPQ_TP_MODES:-live backlog}

W="$SERVERS_TMP/throughput"
mkdir -p "$W"
libpq_server a
libpq_server b
: >"$W/foreign"

t0=$(date +%s)
if has_side scuttlebutt; then
	build_model a tp "$TOTAL"
	sqlx b -c "SELECT scuttlebutt.create_model('tp')" >/dev/null
	sqlx b -c "SELECT scuttlebutt.add_peer('tp', '$(conninfo a)')" >/dev/null
	[ "$(sqlx1 b -c "SELECT scuttlebutt.wait_for_sync('tp', '600s')")" = t ] || die "b did not sync tp: $(peer_line b)"
	[ "$(model_count b tp)" -eq "$TOTAL" ] || die "b holds $(model_count b tp) updates of tp, expected $TOTAL"
	log "libpq_live_throughput: tp synced to b: $(peer_line b)"
fi
if has_side logical; then
	for s in a b; do
		kv_create "$s" kv_tp
		kv_fill "$s" kv_tp "$TOTAL"
	done
	sqlx a -c "CREATE PUBLICATION p_tp FOR TABLE public.kv_tp" >/dev/null
fi
log "libpq_live_throughput: $TOTAL keys on a and b in $(($(date +%s) - t0)) s"

RUN=0
# run MODE CASE REP
run() {
	local mode=$1 case=$2 rep=$3 tag="$W/$1.$2.$3" key="$1.$2" wr obs check verify lo hi tsbase t_start t_end seen got opid
	RUN=$((RUN + 1))
	tsbase=$((1700000000000 + RUN * 10000000))
	if [ "$case" = push ]; then wr=b obs=a; else wr=a obs=b; fi
	{
		echo "SELECT extract(epoch FROM clock_timestamp()) * 1000;"
		for ((lo = 1; lo <= TOTAL; lo += BATCH)); do
			hi=$((lo + BATCH - 1))
			if [ "$case" = logical ]; then
				echo "INSERT INTO public.kv_tp $(kv_rows "$lo" "$hi" "$tsbase" "$RUN") ON CONFLICT (key) DO UPDATE SET ts = excluded.ts, source = excluded.source, doc = excluded.doc;"
			else
				echo "SELECT scuttlebutt.set_many('tp', (SELECT jsonb_object_agg('k' || i, jsonb_build_object('v', i, 'r', $RUN, 's', 'value ' || i)) FROM generate_series($lo, $hi) i)) IS NULL;"
			fi
		done
		echo "SELECT extract(epoch FROM clock_timestamp()) * 1000;"
	} >"$tag.sql"
	if [ "$case" = logical ]; then
		check="SELECT EXISTS (SELECT FROM public.kv_tp WHERE key = 'k$TOTAL' AND ts = $((tsbase + TOTAL)))"
		verify="SELECT count(*) FROM public.kv_tp WHERE ts > $tsbase"
	else
		check="SELECT scuttlebutt.get('tp', 'k$TOTAL') ->> 'r' = '$RUN'"
		verify="SELECT count(*) FROM scuttlebutt.entries('tp') WHERE value ->> 'r' = '$RUN'"
	fi
	# caught up, clean, checkpointed
	if has_side scuttlebutt; then
		for s in a b; do
			[ "$(sqlx1 "$s" -c "SELECT scuttlebutt.wait_for_sync('tp', '120s')")" = t ] || die "$s not in sync before the run: $(peer_line "$s")"
		done
		sqlx a -c "VACUUM scuttlebutt.updates" >/dev/null
		sqlx b -c "VACUUM scuttlebutt.updates" >/dev/null
	fi
	if has_side logical; then
		sqlx a -c "VACUUM public.kv_tp" >/dev/null
		sqlx b -c "VACUUM public.kv_tp" >/dev/null
	fi
	if [ "$case" = logical ]; then
		if [ "$mode" = backlog ]; then
			# the slot is created now, the apply worker starts at ENABLE
			sub_create b s_tp p_tp a "copy_data = false, enabled = false"
		else
			sub_create b s_tp p_tp a "copy_data = false"
			sub_wait_streaming b s_tp a
		fi
	elif [ "$mode" = backlog ]; then
		remove_peers b
		wait_no_connections a b
	fi
	if [ "$mode" = backlog ]; then
		# the backlog: written while nothing replicates (untimed)
		sqlx1 "$wr" -f "$tag.sql" >"$tag.out" 2>&1 || die "writes on $wr failed: $(tail -3 "$tag.out")"
		if [ "$case" = logical ]; then
			echo "ALTER SUBSCRIPTION s_tp ENABLE;" >"$tag.go"
		else
			echo "SELECT scuttlebutt.add_peer('tp', '$(conninfo a)') IS NULL;" >"$tag.go"
		fi
	fi
	sqlx a -c "CHECKPOINT" >/dev/null
	sqlx b -c "CHECKPOINT" >/dev/null
	quiet_gate
	sqlx1 "$obs" -c "SELECT public.bench_wait_until(\$chk\$$check\$chk\$, 600, 0.002)" >"$tag.seen" 2>&1 &
	opid=$!
	track_pid "$opid"
	disturb_begin
	if [ "$mode" = live ]; then
		sqlx1 "$wr" -f "$tag.sql" >"$tag.out" 2>&1 || die "writes on $wr failed: $(tail -3 "$tag.out")"
		t_start=$(head -1 "$tag.out"); t_end=$(tail -1 "$tag.out")
	else
		# the replication starts: subscription enabled / peer added on b
		sqlx1 b -c "SELECT extract(epoch FROM clock_timestamp()) * 1000" -f "$tag.go" >"$tag.go.out" 2>&1 ||
			die "could not start the replication: $(cat "$tag.go.out")"
		t_start=$(head -1 "$tag.go.out"); t_end=$t_start
	fi
	wait "$opid" || die "observer on $obs failed: $(cat "$tag.seen")"
	disturb_end "$W/foreign.all"
	seen=$(<"$tag.seen")
	[ -n "$seen" ] || die "$mode $case: the last key did not reach $obs within 600 s$(has_side scuttlebutt && echo "; $obs: $(peer_line "$obs")")"
	got=$(sqlx1 "$obs" -c "$verify")
	[ "$got" -eq "$TOTAL" ] || die "$mode $case: $obs holds $got of the $TOTAL keys of run $RUN once the last arrived"
	if [ "$case" = logical ]; then
		sub_drop b s_tp
	fi
	read -r rate wsec lag < <(awk -v n="$TOTAL" -v a="$t_start" -v e="$t_end" -v s="$seen" \
		'BEGIN { printf "%.0f %.3f %.3f\n", n / ((s - a) / 1000), (e - a) / 1000, (s - e) / 1000 }')
	echo "$rate" >>"$W/$key.rate"; echo "$wsec" >>"$W/$key.write"; echo "$lag" >>"$W/$key.lag"
	tail -1 "$W/foreign.all" >>"$W/foreign"
	if [ "$mode" = live ]; then
		log "libpq_live_throughput: live $case rep=$rep: $rate updates/s ($TOTAL in $(awk -v a="$t_start" -v s="$seen" 'BEGIN { printf "%.2f", (s - a) / 1000 }') s; writes on $wr alone $wsec s, then lag $lag s); foreign CPU $(tail -1 "$W/foreign.all")%"
	else
		log "libpq_live_throughput: backlog $case rep=$rep: $rate updates/s ($TOTAL drained in $lag s); foreign CPU $(tail -1 "$W/foreign.all")%"
	fi
}

RUNS=()
for mode in $MODES; do
	for c in $CASES; do
		RUNS+=("$mode $c")
		: >"$W/$mode.$c.rate"; : >"$W/$mode.$c.write"; : >"$W/$mode.$c.lag"
	done
done
k=${#RUNS[@]}
for rep in $(seq 1 "$REPS"); do
	for ((j = 0; j < k; j++)); do
		# shellcheck disable=SC2086
		run ${RUNS[$(((j + rep) % k))]} "$rep"
	done
done

# med CASE WHAT: the median of CASE's WHAT (rates as integers, seconds with 3 decimals)
med() {
	local d=3
	[ "$2" = rate ] && d=0
	if [ -s "$W/$1.$2" ]; then fmt "$d" "$(median <"$W/$1.$2")"; else echo -; fi
}
for mode in $MODES; do
	b=$(med "$mode.logical" rate)
	if [ "$mode" = live ]; then
		what="live: $BATCHES x $BATCH keys"
	else
		what="backlog: $BATCHES x $BATCH keys"
	fi
	if has_side scuttlebutt; then
		for c in pull push; do
			e=$(med "$mode.$c" rate)
			r=-; [ "$b" != - ] && r=$(ratio "$e" "$b")
			if [ "$c" = pull ]; then how="written on a, pulled by b (dialer)"; else how="written on b (dialer), pushed to a"; fi
			if [ "$mode" = live ]; then
				record libpq_live_throughput "$what $how; logical a->b" "$b" "$e" "updates/s (median of $REPS x $TOTAL)" "$r" ">= $TARGET/s" "$(verdict "$e" '>=' "$TARGET")"
			else
				record libpq_live_throughput "$what $how; logical a->b" "$b" "$e" "updates/s (median of $REPS x $TOTAL)" "$r" "-" "info"
			fi
		done
	else
		record libpq_live_throughput "$what, logical a->b" "$b" "-" "updates/s (median of $REPS x $TOTAL)" "-" "-" "-"
	fi
	if [ "$mode" = live ]; then
		record libpq_live_throughput "live: writer alone, logical vs pull (a) / push (b)" "$(med live.logical write)" "$(med live.pull write) / $(med live.push write)" "s (median of $REPS)" "-" "-" "info"
		record libpq_live_throughput "live: lag after the last commit, logical vs pull / push" "$(med live.logical lag)" "$(med live.pull lag) / $(med live.push lag)" "s (median of $REPS)" "-" "-" "info"
	fi
	for c in $CASES; do log "libpq_live_throughput: raw $mode $c updates/s: $(paste -sd' ' "$W/$mode.$c.rate")"; done
done

record libpq_live_throughput "foreign CPU during runs (max)" "-" "$(disturb_max "$W/foreign")" "% of all CPUs" "-" "-" "info"

if [ -z "${BENCH_QUIET:-}" ]; then
	echo
	echo "libpq_live_throughput: $BATCHES x $BATCH-key writes until the last key is readable on the other server; baseline = logical replication a->b; ratio = scuttlebutt / logical"
	libpq_conditions
	print_table libpq_live_throughput
fi
