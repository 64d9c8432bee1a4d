#!/usr/bin/env bash
# test/bench/libpq_notify_cost.sh: what a live libpq peer long-polling a
# server costs that server's writers: set_tps.sh's pgbench (2 clients)
# on a server with and without a poller.
#
# Server a holds table plain_kv and model bench with the same $KEYS keys,
# and an empty model other; server b has both models.  pgbench on a, $CLIENTS
# clients (-j likewise), -M prepared, synchronous_commit=$SYNC, $SECS s,
# each transaction an update of a random existing key:
#   plain:   INSERT INTO plain_kv ... ON CONFLICT (key) DO UPDATE   (no peer)
#   set:     SELECT scuttlebutt.set('bench', 'k' || :k, ...)        (no peer)
#   idle:    set() while b's worker long-polls a for model other
#            (add_peer('other', <a's conninfo>) on b): every commit that
#            writes a model wakes that poller, which finds nothing: the cost
#            of the commit-time wake-up alone
#   polled:  set() while b's worker long-polls a for model bench
#            (add_peer('bench', <a's conninfo>) on b): the poller is woken
#            and b pulls every update as it is written (its work shares the
#            machine's CPUs with pgbench)
# Before each run the peers are set for the case (remove_peer on b, then
# no connection left on a; add_peer and wait_for_sync, a poll waiting on
# a), then VACUUM and CHECKPOINT on a.  $REPS repetitions of each case, the
# order rotating; after each polled run b must catch up with a (same
# clock of bench, checked).  Table: median TPS; set() / plain with no
# peer and with the polling peer (issue 2's target >= 0.7), and as info
# set() with a poller / set() without, the CPU time of server a per
# transaction (every process of its cluster: pgbench's backends, the poll
# session; what the writers pay on a, whoever else shares the machine) and
# the CPU time of server b during the run (the puller: on this one machine
# it competes with pgbench for the same CPUs).
#
#   LIBPQ_NOTIFY_KEYS=10000 LIBPQ_NOTIFY_SECS=6 LIBPQ_NOTIFY_REPS=3 LIBPQ_NOTIFY_CLIENTS=2 \
#   LIBPQ_NOTIFY_SYNC=on LIBPQ_NOTIFY_CASES="plain set idle polled" test/bench/libpq_notify_cost.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$BENCH_DIR/libpq_lib.sh"

KEYS=${LIBPQ_NOTIFY_KEYS:-10000}
SECS=${LIBPQ_NOTIFY_SECS:-6}
REPS=${LIBPQ_NOTIFY_REPS:-3}
CLIENTS=${LIBPQ_NOTIFY_CLIENTS:-2}
SYNC=${LIBPQ_NOTIFY_SYNC:-on}
CASES=${LIBPQ_NOTIFY_CASES:-plain set idle polled}
TARGET=0.7

if ! has_side scuttlebutt; then
	log "libpq_notify_cost: scuttlebutt not measured (LIBPQ_SIDES=$LIBPQ_SIDES): nothing to do"
	exit 0
fi

W="$SERVERS_TMP/notify"
mkdir -p "$W"
libpq_server a
libpq_server b

log "libpq_notify_cost: loading $KEYS keys into plain_kv and model bench on a"
sqlx a <<SQL >/dev/null
CREATE TABLE plain_kv (key text PRIMARY KEY, value jsonb);
INSERT INTO plain_kv SELECT 'k' || i, jsonb_build_object('v', 0) FROM generate_series(1, $KEYS) i;
SELECT scuttlebutt.create_model('bench');
SELECT scuttlebutt.create_model('other');
SELECT scuttlebutt.set_many('bench', (SELECT jsonb_object_agg('k' || i, jsonb_build_object('v', 0)) FROM generate_series(1, $KEYS) i));
VACUUM ANALYZE plain_kv;
VACUUM ANALYZE scuttlebutt.updates;
VACUUM ANALYZE scuttlebutt.clocks;
SQL
sqlx b -c "SELECT scuttlebutt.create_model('bench')" -c "SELECT scuttlebutt.create_model('other')" >/dev/null

write_set_tps_scripts "$W" "$KEYS"

# peers_for CASE: b's peers as CASE needs them, a poll waiting on a.
peers_for() {
	local m=""
	case $1 in idle) m=other ;; polled) m=bench ;; esac
	if [ "$(sqlx1 b -c "SELECT coalesce(string_agg(model, ','), '') FROM scuttlebutt.peers")" != "$m" ]; then
		remove_peers b
		wait_no_connections a b
		if [ -n "$m" ]; then
			sqlx b -c "SELECT scuttlebutt.add_peer('$m', '$(conninfo a)')" >/dev/null
		fi
	fi
	if [ -n "$m" ]; then
		[ "$(sqlx1 b -c "SELECT scuttlebutt.wait_for_sync('$m', '120s')")" = t ] || die "b did not sync $m: $(peer_line b)"
		for _ in $(seq 1 100); do
			[ "$(pollers a)" -ge 1 ] && return 0
			sleep 0.05
		done
		die "no poll waiting on a after b synced $m: $(sqlx1 a -c "SELECT string_agg(coalesce(client_addr::text, 'local') || ' ' || state || ' ' || left(query, 80), '; ') FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")"
	fi
}

# run CASE REP: one pgbench run on a; prints its TPS.
run() {
	local case=$1 rep=$2 out="$W/$1.$2.log" script=set
	[ "$case" = plain ] && script=plain
	peers_for "$case"
	sqlx a -c "VACUUM plain_kv" -c "VACUUM scuttlebutt.updates" -c "VACUUM scuttlebutt.clocks" -c "CHECKPOINT" >/dev/null
	sqlx b -c "CHECKPOINT" >/dev/null
	quiet_gate
	ta=$(server_ticks a); tb=$(server_ticks b)
	disturb_begin
	PGHOST="$SERVERS_TMP/sock" PGPORT="${PORT_OF[a]}" PGUSER=postgres PGDATABASE=postgres PGOPTIONS="-c synchronous_commit=$SYNC" \
		"$PGBIN/pgbench" -n -M prepared -c "$CLIENTS" -j "$CLIENTS" -T "$SECS" -f "$W/$script.pgb" >"$out" 2>&1 ||
		die "pgbench failed: $(tail -5 "$out")"
	disturb_end "$W/foreign"
	grep -q '^number of failed transactions: 0 ' "$out" || die "pgbench reported failed transactions, see $out"
	awk '/^tps = / { print $3; exit }' "$out" >"$W/$case.$rep.tps"
	ta=$(ticks_to_s $(($(server_ticks a) - ta))); tb=$(ticks_to_s $(($(server_ticks b) - tb)))
	# a's CPU per transaction, microseconds: pgbench's backends, the poll
	# session, the rest of the cluster
	awk -v c="$ta" -v x="$(awk '/^number of transactions actually processed: / { print $6; exit }' "$out")" \
		'BEGIN { printf "%.1f\n", c / x * 1e6 }' >>"$W/$case.us_a"
	echo "$tb" >>"$W/$case.cpu_b"
	if [ "$case" = polled ]; then
		[ "$(sqlx1 b -c "SELECT scuttlebutt.wait_for_sync('bench', '120s')")" = t ] || die "b did not catch up after the run: $(peer_line b)"
		[ "$(model_clock b bench)" = "$(model_clock a bench)" ] || die "b's clock of bench differs from a's after the run"
	fi
	log "libpq_notify_cost: $case rep=$rep: $(<"$W/$case.$rep.tps") tps; CPU of a $ta s ($(tail -1 "$W/$case.us_a") us per transaction), of b $tb s; foreign CPU $(tail -1 "$W/foreign")%$([ "$case" = polled ] || [ "$case" = idle ] && echo "; b: $(peer_line b)")"
	cat "$W/$case.$rep.tps" >>"$W/$case.tps"
}

read -ra cases <<<"$CASES"
for c in "${cases[@]}"; do : >"$W/$c.tps"; : >"$W/$c.us_a"; : >"$W/$c.cpu_b"; done
: >"$W/foreign"
k=${#cases[@]}
for rep in $(seq 1 "$REPS"); do
	for ((j = 0; j < k; j++)); do
		run "${cases[$(((j + rep) % k))]}" "$rep"
	done
done

med() { if [ -s "$W/$1.tps" ]; then fmt 0 "$(median <"$W/$1.tps")"; else echo -; fi; }
p=$(med plain); s=$(med set); i=$(med idle); q=$(med polled)
cfg="clients=$CLIENTS sync_commit=$SYNC"
unit="tps (median of $REPS x ${SECS}s)"
rr() { if [ "$1" = - ] || [ "$2" = - ]; then echo -; else ratio "$1" "$2"; fi; }
vv() { if [ "$1" = - ]; then echo -; else verdict "$1" '>=' "$TARGET"; fi; }
r=$(rr "$s" "$p"); record libpq_notify_cost "$cfg: set() vs plain upsert, no peer" "$p" "$s" "$unit" "$r" ">= $TARGET" "$(vv "$r")"
r=$(rr "$q" "$p"); record libpq_notify_cost "$cfg: set() vs plain upsert, b pulling the model (live poll)" "$p" "$q" "$unit" "$r" ">= $TARGET" "$(vv "$r")"
r=$(rr "$i" "$p"); record libpq_notify_cost "$cfg: set() vs plain upsert, b polling another model" "$p" "$i" "$unit" "$r" ">= $TARGET" "$(vv "$r")"
record libpq_notify_cost "set(): b pulling the model vs no peer" "$s" "$q" "$unit" "$(rr "$q" "$s")" "-" "info"
record libpq_notify_cost "set(): b polling another model (wake-up only) vs no peer" "$s" "$i" "$unit" "$(rr "$i" "$s")" "-" "info"
m1() { if [ -s "$W/$1.$2" ]; then fmt "$3" "$(median <"$W/$1.$2")"; else echo -; fi; }
record libpq_notify_cost "CPU of a per transaction: set() no peer vs b pulling / polling another" "$(m1 set us_a 1)" "$(m1 polled us_a 1) / $(m1 idle us_a 1)" "us (median of $REPS)" "-" "-" "info"
record libpq_notify_cost "CPU of b during the run: no peer vs b pulling / polling another" "$(m1 set cpu_b 2)" "$(m1 polled cpu_b 2) / $(m1 idle cpu_b 2)" "s (median of $REPS x ${SECS}s)" "-" "-" "info"
for c in "${cases[@]}"; do log "libpq_notify_cost: raw $c tps: $(paste -sd' ' "$W/$c.tps")"; done
record libpq_notify_cost "foreign CPU during runs (max)" "-" "$(disturb_max "$W/foreign")" "% of all CPUs" "-" "-" "info"

if [ -z "${BENCH_QUIET:-}" ]; then
	echo
	echo "libpq_notify_cost: pgbench on a, with and without b's worker long-polling a over libpq"
	libpq_conditions
	print_table libpq_notify_cost
fi
