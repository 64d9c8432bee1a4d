# test/bench/libpq_lib.sh: helpers of the libpq replication benchmarks
# (libpq_sync.sh, libpq_live_throughput.sh, libpq_latency.sh,
# libpq_memory.sh, libpq_notify_cost.sh), sourced after lib.sh.
#
# Each script starts its own throw-away clusters (a, b, ...) with
# servers_lib.sh (removed on exit with every helper it started); the
# shared cluster of run_all.sh is not used.
#
# Every server is configured alike, for both sides of each comparison:
#   shared_preload_libraries = 'scuttlebutt', scuttlebutt.database = 'postgres'
#   (no stream listener: scuttlebutt.port = 0), the extension created in
#   database postgres;
#   wal_level = logical (the PostgreSQL logical replication baselines),
#   wal_retrieve_retry_interval = 100ms (the logical replication launcher
#   starts no apply worker sooner than that after its previous start: at
#   the default 5 s a subscription created or enabled a few seconds after
#   the previous run's would wait for it);
#   shared_buffers = $BENCH_SHARED_BUFFERS (1GB), max_wal_size = 16GB,
#   checkpoint_timeout = 1h, fsync on, trust authentication on 127.0.0.1.
# Servers reach each other over TCP on 127.0.0.1 (conninfo NAME), both the
# scuttlebutt peers (add_peer) and the subscriptions; the scripts' own psql
# and pgbench sessions use the Unix socket, so a TCP client backend on a
# server is always another server's connection (peer_backends).
#
# The logical replication baseline never runs while a subscription is idle
# around the scuttlebutt runs: each logical run creates its subscription and
# drops it (with its slot) afterwards, so no walsender decodes the WAL of
# the scuttlebutt runs.
#
# Environment (besides lib.sh's and servers_lib.sh's):
#   LIBPQ_SIDES       what to measure: "logical scuttlebutt" (default), or
#                     "logical" alone (no scuttlebutt: the library is not
#                     even preloaded; the baseline rows only), or
#                     "scuttlebutt" alone (no ratios)

LIBPQ_SIDES=${LIBPQ_SIDES:-logical scuttlebutt}

has_side() { case " $LIBPQ_SIDES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
has_side logical || has_side scuttlebutt || die "LIBPQ_SIDES must name logical and/or scuttlebutt"

SERVERS_KIND=libpq
. "$BENCH_DIR/servers_lib.sh"

# the library this script's servers preload (they load it when they start)
LIBPQ_SO_LOADED="$(date -u -r "$("$PG_CONFIG" --pkglibdir)/scuttlebutt.so" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || echo '?') (md5 $(so_sum)), repository at $(git -C "$BENCH_DIR" describe --always --dirty 2>/dev/null || echo unknown)"

# libpq_server NAME [listen]: a cluster as described above, the extension
# created in database postgres (when scuttlebutt is measured); with
# "listen", its worker also listens for stream peers on 127.0.0.1
# (port LISTEN_PORT_OF[NAME]).
declare -A LISTEN_PORT_OF=()
libpq_server() {
	local name=$1 dir="$SERVERS_TMP/$1" preload="" listen=()
	if has_side scuttlebutt; then
		preload="shared_preload_libraries = 'scuttlebutt'
scuttlebutt.database = 'postgres'"
		[ "${2:-}" = listen ] && preload="$preload
scuttlebutt.listen_addresses = '127.0.0.1'" && listen=(scuttlebutt.port stream_listening)
	fi
	start_server "$name" "max_connections = 30
client_min_messages = warning
wal_level = logical
max_wal_senders = 10
max_replication_slots = 10
max_worker_processes = 16
max_logical_replication_workers = 6
wal_retrieve_retry_interval = 100ms
$preload" "${listen[@]}"
	LISTEN_PORT_OF[$name]=${EXTRA_PORT_OF[$name]}
	if has_side scuttlebutt; then
		sqlx "$name" -c "CREATE EXTENSION scuttlebutt" >/dev/null 2>"$dir/ext.err" ||
			die "CREATE EXTENSION scuttlebutt on $name failed: $(cat "$dir/ext.err")"
		[ -n "$(worker_pid "$name")" ] || die "no scuttlebutt replication worker on $name (see $dir/server.log)"
	fi
	sqlx "$name" <<'SQL' >/dev/null
-- bench_wait_until(check, timeout_s, nap_s): runs the query CHECK (one
-- boolean) every NAP_S seconds until it is true; returns the epoch
-- milliseconds of that moment, or NULL after TIMEOUT_S.
CREATE FUNCTION public.bench_wait_until(check_sql text, timeout_s float8, nap_s float8 DEFAULT 0.002)
RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz := clock_timestamp();
	ok boolean;
BEGIN
	LOOP
		EXECUTE check_sql INTO ok;
		IF ok THEN
			RETURN extract(epoch FROM clock_timestamp()) * 1000;
		END IF;
		IF clock_timestamp() - t0 > make_interval(secs => timeout_s) THEN
			RETURN NULL;
		END IF;
		PERFORM pg_sleep(nap_s);
	END LOOP;
END
$$;
SQL
	log "server $name: port ${PORT_OF[$name]}, data in $dir/data"
}

# conninfo NAME: how the other servers reach NAME (TCP on 127.0.0.1).
conninfo() { echo "host=127.0.0.1 port=${PORT_OF[$1]} dbname=postgres user=postgres"; }

# now_ms: epoch milliseconds (this machine's clock, as the servers').
now_ms() { date +%s%3N; }

# peer_backends NAME: client backends of NAME connected over TCP, i.e. the
# connections of other servers' scuttlebutt workers (the scripts' own
# sessions use the Unix socket; walsenders are another backend_type).
peer_backends() {
	sqlx1 "$1" -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND client_addr IS NOT NULL"
}

# pollers NAME: of those, the ones waiting for a commit in
# wait_for_commit() (a libpq peer's pull session, application_name
# 'scuttlebutt pull', caught up).
pollers() {
	sqlx1 "$1" -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND client_addr IS NOT NULL AND state = 'active' AND query ILIKE '%scuttlebutt.wait_for_commit%'"
}

# wait_no_connections NAME...: no scuttlebutt connection from or to any
# NAME, no walsender, up to 30 s.  Once no NAME's worker holds a connection
# (peer_status), the sessions its peers left on the remotes are ended
# (pg_terminate_backend): a pull session waiting in wait_for_commit() would otherwise
# notice the closed connection only when its wait ends (up to 5 s).
wait_no_connections() {
	local s
	if has_side scuttlebutt; then
		for s in "$@"; do
			for _ in $(seq 1 300); do
				[ "$(sqlx1 "$s" -c "SELECT count(*) FROM scuttlebutt.peer_status WHERE state IS NOT NULL")" = 0 ] && continue 2
				sleep 0.1
			done
			die "server $s's worker still holds connections: $(peer_line "$s")"
		done
		for s in "$@"; do
			sqlx1 "$s" -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'client backend' AND client_addr IS NOT NULL AND application_name LIKE 'scuttlebutt %'" >/dev/null
		done
	fi
	for s in "$@"; do
		for _ in $(seq 1 300); do
			[ "$(sqlx1 "$s" -c "SELECT count(*) FROM pg_stat_activity WHERE (backend_type = 'client backend' AND client_addr IS NOT NULL) OR backend_type = 'walsender'")" = 0 ] && continue 2
			sleep 0.1
		done
		die "server $s still holds connections: $(sqlx1 "$s" -c "SELECT string_agg(backend_type || ' ' || coalesce(client_addr::text, '') || ' ' || coalesce(application_name, '') || ' ' || coalesce(left(query, 60), ''), '; ') FROM pg_stat_activity WHERE (backend_type = 'client backend' AND client_addr IS NOT NULL) OR backend_type = 'walsender'")"
	done
}

# model_clock NAME MODEL: MODEL's clock on NAME, as jsonb text (key order
# normalised).
model_clock() {
	sqlx1 "$1" -c "SELECT scuttlebutt.clock('$2')::jsonb"
}

# empty_models NAME MODEL...: on NAME, no peer, and each MODEL exists and
# holds nothing (dropped and created again); the tables are truncated (the
# server holds no other data worth keeping).
empty_models() {
	local name=$1 m
	shift
	{
		echo "SELECT scuttlebutt.remove_peer(id) FROM scuttlebutt.peers;"
		for m in "$@"; do
			echo "SELECT scuttlebutt.drop_model('$m') FROM scuttlebutt.registry WHERE name = '$m';"
		done
		echo "TRUNCATE scuttlebutt.updates, scuttlebutt.clocks;"
		for m in "$@"; do
			echo "SELECT scuttlebutt.create_model('$m');"
		done
	} | sqlx "$name" >/dev/null
}

# remove_peers NAME: drop every configured peer of NAME.
remove_peers() {
	sqlx "$1" -c "SELECT scuttlebutt.remove_peer(id) FROM scuttlebutt.peers" >/dev/null
}

# peer_line NAME: peer_status of NAME in one line (for the logs).
peer_line() {
	sqlx1 "$1" -c "SELECT coalesce(string_agg(format('%s %s %s %s: state %s, received %s, sent %s%s', peer_id, direction, transport, model, coalesce(state, '-'), received, sent, coalesce(', last_error ' || last_error, '')), '; '), 'no peer') FROM scuttlebutt.peer_status"
}

# server_ticks NAME: CPU ticks (utime + stime) of every process of NAME's
# cluster so far: the postmaster, the children it reaped, the live ones.
server_ticks() {
	local pm c t a1 a2
	pm=$(head -1 "${DATA_OF[$1]}/postmaster.pid")
	for _ in 1 2 3 4 5; do
		a1=$(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$pm/stat")
		t=0
		for c in $(pgrep -P "$pm"); do
			t=$((t + $(awk '{ print $14 + $15 }' "/proc/$c/stat" 2>/dev/null || echo 0)))
		done
		a2=$(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$pm/stat")
		[ "$a1" = "$a2" ] && break
	done
	echo $((a2 + t))
}

# ticks_to_s TICKS: seconds, 2 decimals.
ticks_to_s() { awk -v t="$1" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f\n", t / hz }'; }

# ---------------------------------------------------------------------------
# The logical replication baseline.

# KV_SOURCE: the "source" column of the kv tables: a node id as long as
# scuttlebutt's (32 hex digits).
KV_SOURCE=0123456789ABCDEF0123456789ABCDEF

# kv_create NAME TABLE: an empty table shaped like scuttlebutt.updates for
# one model: the key (primary key), the update's timestamp and source
# (unique together, like updates' primary key), and the update as on the
# wire, json.
kv_create() {
	sqlx "$1" <<SQL >/dev/null
DROP TABLE IF EXISTS public.$2;
CREATE TABLE public.$2 (key text COLLATE "C" PRIMARY KEY, ts float8 NOT NULL, source text COLLATE "C" NOT NULL, doc json NOT NULL);
CREATE UNIQUE INDEX ON public.$2 (source, ts);
SQL
}

# lat_servers: servers a and b for the live-update scripts (libpq_latency,
# libpq_latency_hops, libpq_apply_cost): with scuttlebutt, model lat on
# both and b dialing a (add_peer), synced; with logical replication,
# table kv_lat on both and a's publication p_lat of it (each run
# subscribes b: lat_subscribe).
lat_servers() {
	libpq_server a
	libpq_server b
	for s in a b; do
		has_side scuttlebutt && sqlx "$s" -c "SELECT scuttlebutt.create_model('lat')" >/dev/null
		has_side logical && kv_create "$s" kv_lat
	done
	has_side logical && sqlx a -c "CREATE PUBLICATION p_lat FOR TABLE public.kv_lat" >/dev/null
	if has_side scuttlebutt; then
		sqlx b -c "SELECT scuttlebutt.add_peer('lat', '$(conninfo a)')" >/dev/null
		[ "$(sqlx1 b -c "SELECT scuttlebutt.wait_for_sync('lat', '60s')")" = t ] || die "b did not sync lat: $(peer_line b)"
	fi
	return 0
}

# lat_subscribe [SYNC]: b's subscription s_lat to a's p_lat (no copy,
# synchronous_commit SYNC, default off), streaming; drop it with
# sub_drop b s_lat.
lat_subscribe() {
	sub_create b s_lat p_lat a "copy_data = false, synchronous_commit = '${1:-off}'"
	sub_wait_streaming b s_lat a
}

# pid_of NAME QUERY: the pid QUERY returns on NAME, waiting up to 10 s
pid_of() {
	local pid
	for _ in $(seq 1 100); do
		pid=$(sqlx1 "$1" -c "$2")
		[ -n "$pid" ] && { echo "$pid"; return; }
		sleep 0.1
	done
	die "no process on $1 for: $2"
}

# apply_worker_pid: the pid of b's apply worker of s_lat
apply_worker_pid() { pid_of b "SELECT pid FROM pg_stat_subscription WHERE subname = 's_lat' AND relid IS NULL"; }

# lat_writes KIND PREFIX N GAP_MS [timing]: the writer's script of
# libpq_latency.sh and libpq_latency_hops.sh: N writes of new keys
# PREFIX1..PREFIXN, each its own transaction, GAP_MS ms apart; KIND
# scuttlebutt: set() in model lat; logical: the same row into kv_lat
# (INSERT ... ON CONFLICT, its ts read by clock_timestamp()); with
# "timing", each write between \timing on and off.
lat_writes() {
	awk -v kind="$1" -v pre="$2" -v n="$3" -v gap="$4" -v timing="${5:-}" -v src="$KV_SOURCE" 'BEGIN {
		for (i = 1; i <= n; i++) {
			if (timing) print "\\timing on"
			if (kind == "scuttlebutt")
				printf "SELECT scuttlebutt.set('\''lat'\'', '\''%s%d'\'', '\''{\"i\": %d}'\'') IS NULL;\n", pre, i, i
			else
				printf "INSERT INTO public.kv_lat SELECT k, t, '\''%s'\'', jsonb_build_array(jsonb_build_array(k, '\''{\"i\": %d}'\''::jsonb), t, '\''%s'\'')::json FROM (SELECT '\''%s%d'\'' AS k, extract(epoch FROM clock_timestamp()) * 1000 AS t) x ON CONFLICT (key) DO UPDATE SET ts = excluded.ts, source = excluded.source, doc = excluded.doc;\n", src, i, src, pre, i
			if (timing) print "\\timing off"
			printf "SELECT pg_sleep(%g);\n", gap / 1000
		} }'
}

# kv_rows LO HI TSBASE [TAG]: a SELECT of rows (key, ts, source, doc) for keys
# k<LO>..k<HI>, the same keys and values as build_model's (plus "r": TAG
# when given), ts TSBASE + i, doc [["k<i>", <value>], ts, source].
kv_rows() {
	local tagged=""
	[ -n "${4:-}" ] && tagged=", 'r', $4"
	echo "SELECT 'k' || i, ts, '$KV_SOURCE', jsonb_build_array(jsonb_build_array('k' || i, jsonb_build_object('v', i$tagged, 's', 'value ' || i)), ts, '$KV_SOURCE')::json
		FROM generate_series($1, $2) i, LATERAL (SELECT ($3)::float8 + i AS ts) t"
}

# kv_fill NAME TABLE N: TABLE on NAME holding keys k1..kN, then VACUUM ANALYZE.
kv_fill() {
	sqlx "$1" -c "INSERT INTO public.$2 $(kv_rows 1 "$3" 1700000000000)" -c "VACUUM ANALYZE public.$2" >/dev/null
}

# sub_create NAME SUB PUB SOURCE [OPTIONS]: subscription SUB on NAME to
# publication PUB of server SOURCE (untimed helper).
sub_create() {
	sqlx "$1" -c "CREATE SUBSCRIPTION $2 CONNECTION '$(conninfo "$4")' PUBLICATION $3 ${5:+WITH ($5)}" >/dev/null
}

# sub_drop NAME SUB: drop SUB (and its slot on the publisher) if it exists.
sub_drop() {
	sqlx "$1" -c "DROP SUBSCRIPTION IF EXISTS $2" >/dev/null
}

# sub_wait_streaming NAME SUB SOURCE: SUB's apply worker streams from
# SOURCE and every table of SUB is ready (up to 60 s).
sub_wait_streaming() {
	for _ in $(seq 1 600); do
		if [ "$(sqlx1 "$3" -c "SELECT count(*) FROM pg_stat_replication WHERE application_name = '$2' AND state = 'streaming'")" = 1 ] &&
			[ "$(sqlx1 "$1" -c "SELECT count(*) FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid WHERE s.subname = '$2' AND r.srsubstate <> 'r'")" = 0 ]; then
			return 0
		fi
		sleep 0.1
	done
	die "subscription $2 on $1 does not stream from $3"
}

# fmt DIGITS X: X with DIGITS decimals ("-" stays "-").
fmt() { case $2 in - | nan | "") echo "${2:--}" ;; *) printf "%.${1}f\n" "$2" ;; esac; }

# libpq_conditions: bench_conditions for our servers (first server), and
# the sides measured.
libpq_conditions() {
	servers_conditions
	printf 'servers: wal_level=logical, scuttlebutt preloaded: %s; sides measured: %s\n' \
		"$(has_side scuttlebutt && echo "yes, scuttlebutt.so built $LIBPQ_SO_LOADED when they started" || echo no)" "$LIBPQ_SIDES"
}
