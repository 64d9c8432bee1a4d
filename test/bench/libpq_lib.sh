# test/bench/libpq_lib.sh: helpers of the libpq replication benchmarks
# (libpq_sync.sh, libpq_live_throughput.sh, libpq_latency.sh,
# libpq_memory.sh, libpq_notify_cost.sh), sourced after lib.sh.
#
# Each script starts its own throw-away clusters (a, b, ...) under one temp
# directory: free loopback ports, a temp socket directory, all stopped and
# removed on exit with every helper process the script started.  Run from
# run_all.sh the results go to the shared $BENCH_OUT/results.tsv; the
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
# Environment (besides lib.sh's):
#   BENCH_TMP_PREFIX  the temp directory is $BENCH_TMP_PREFIX.XXXXXX
#                     (default /tmp/scuttlebutt-libpq-bench)
#   BENCH_KEEP=1      keep it (server logs, raw numbers)
#   LIBPQ_SIDES       what to measure: "logical scuttlebutt" (default), or
#                     "logical" alone (no scuttlebutt: the library is not
#                     even preloaded; the baseline rows only), or
#                     "scuttlebutt" alone (no ratios)

LIBPQ_SIDES=${LIBPQ_SIDES:-logical scuttlebutt}
declare -A PORT_OF=() DATA_OF=()
LIBPQ_SERVERS=()
LIBPQ_PIDS=()

has_side() { case " $LIBPQ_SIDES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
has_side logical || has_side scuttlebutt || die "LIBPQ_SIDES must name logical and/or scuttlebutt"

LIBPQ_TMP=$(mktemp -d "${BENCH_TMP_PREFIX:-/tmp/scuttlebutt-libpq-bench}.XXXXXX")
chmod 755 "$LIBPQ_TMP"
mkdir "$LIBPQ_TMP/sock" "$LIBPQ_TMP/out"
chown postgres: "$LIBPQ_TMP/sock" 2>/dev/null || true
if [ -z "${BENCH_OUT:-}" ]; then
	BENCH_OUT="$LIBPQ_TMP/out"
fi
export BENCH_OUT
BENCH_SO_SUM=${BENCH_SO_SUM:-$(so_sum)}
export BENCH_SO_SUM
# the library this script's servers preload (they load it when they start)
LIBPQ_SO_LOADED="$(date -u -r "$("$PG_CONFIG" --pkglibdir)/scuttlebutt.so" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || echo '?') (md5 $(so_sum)), repository at $(git -C "$BENCH_DIR" describe --always --dirty 2>/dev/null || echo unknown)"

# lib.sh's disturbance measure, over every server started here and every
# tracked helper (as stream_lib.sh does).
_cluster_ticks() {
	local t=0 name pm c pid
	for name in "${LIBPQ_SERVERS[@]}"; do
		pm=$(head -1 "${DATA_OF[$name]}/postmaster.pid" 2>/dev/null) || continue
		t=$((t + $(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$pm/stat" 2>/dev/null || echo 0)))
		for c in $(pgrep -P "$pm"); do
			t=$((t + $(awk '{ print $14 + $15 }' "/proc/$c/stat" 2>/dev/null || echo 0)))
		done
	done
	for pid in "${LIBPQ_PIDS[@]}"; do
		t=$((t + $(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$pid/stat" 2>/dev/null || echo 0)))
	done
	echo "$t"
}

libpq_cleanup() {
	local rc=$? name pid
	trap - EXIT INT TERM
	for pid in "${LIBPQ_PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for name in "${LIBPQ_SERVERS[@]}"; do
		"${AS_OWNER[@]}" "$PGBIN/pg_ctl" -D "${DATA_OF[$name]}" -m immediate -w stop >/dev/null 2>&1 || true
	done
	if [ "${BENCH_KEEP:-0}" = 1 ]; then
		log "kept $LIBPQ_TMP"
	else
		rm -rf "$LIBPQ_TMP"
	fi
	exit $rc
}
trap libpq_cleanup EXIT
trap 'exit 130' INT TERM

# libpq_track PID: a background process to kill on exit.
libpq_track() { LIBPQ_PIDS+=("$1"); }

# libpq_server NAME: a cluster as described above, the extension created
# in database postgres (when scuttlebutt is measured).
libpq_server() {
	local name=$1 dir="$LIBPQ_TMP/$1" port preload=""
	mkdir "$dir"
	chown postgres: "$dir" 2>/dev/null || true
	"${AS_OWNER[@]}" "$PGBIN/initdb" -D "$dir/data" -U postgres \
		--auth=trust --no-sync -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 ||
		die "initdb of server $name failed, see $dir/initdb.log"
	if has_side scuttlebutt; then
		preload="shared_preload_libraries = 'scuttlebutt'
scuttlebutt.database = 'postgres'"
	fi
	cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$LIBPQ_TMP/sock'
shared_buffers = ${BENCH_SHARED_BUFFERS:-1GB}
max_wal_size = 16GB
checkpoint_timeout = 1h
max_connections = 30
logging_collector = off
client_min_messages = warning
wal_level = logical
max_wal_senders = 10
max_replication_slots = 10
max_worker_processes = 16
max_logical_replication_workers = 6
wal_retrieve_retry_interval = 100ms
$preload
${BENCH_EXTRA_CONF:-}
CONF
	DATA_OF[$name]="$dir/data"
	LIBPQ_SERVERS+=("$name")
	for _ in 1 2 3 4 5; do
		port=$(free_port) || die "no free port"
		sed -i "/^port = /d" "$dir/data/postgresql.conf"
		echo "port = $port" >>"$dir/data/postgresql.conf"
		if "${AS_OWNER[@]}" "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null 2>&1; then
			break
		fi
		"${AS_OWNER[@]}" "$PGBIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
		port=""
	done
	[ -n "$port" ] || die "server $name did not start, see $dir/server.log"
	PORT_OF[$name]=$port
	# lib.sh's disturb_end waits for the first server's finished backends
	if [ "${#LIBPQ_SERVERS[@]}" -eq 1 ]; then
		BENCH_POSTMASTER=$(head -1 "$dir/data/postmaster.pid")
	fi
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
	log "server $name: port $port, data in $dir/data"
}

sqlx() { local n=$1; shift; "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$LIBPQ_TMP/sock" -p "${PORT_OF[$n]}" -U postgres -d postgres "$@"; }
sqlx1() { sqlx "$@" -At; }

# conninfo NAME: how the other servers reach NAME (TCP on 127.0.0.1).
conninfo() { echo "host=127.0.0.1 port=${PORT_OF[$1]} dbname=postgres user=postgres"; }

# now_ms: epoch milliseconds (this machine's clock, as the servers').
now_ms() { date +%s%3N; }

# worker_pid NAME: the pid of NAME's scuttlebutt replication worker.
worker_pid() {
	sqlx1 "$1" -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'scuttlebutt replication worker' ORDER BY pid LIMIT 1"
}

# peer_backends NAME: client backends of NAME connected over TCP, i.e. the
# connections of other servers' scuttlebutt workers (the scripts' own
# sessions use the Unix socket; walsenders are another backend_type).
peer_backends() {
	sqlx1 "$1" -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND client_addr IS NOT NULL"
}

# pollers NAME: of those, the ones running poll() (a libpq peer's pull
# session, application_name 'scuttlebutt pull', waiting for a commit).
pollers() {
	sqlx1 "$1" -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND client_addr IS NOT NULL AND state = 'active' AND query ILIKE '%scuttlebutt.poll%'"
}

# wait_no_connections NAME...: no scuttlebutt connection from or to any
# NAME, no walsender, up to 30 s.  Once no NAME's worker holds a connection
# (peer_status), the sessions its peers left on the remotes are ended
# (pg_terminate_backend): a pull session waiting in poll() would otherwise
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

# build_model NAME MODEL N [CHUNK] [FIRST]: model MODEL on NAME holding keys
# k<FIRST>..k<FIRST+N-1> (default k1..kN) with values {"v": i, "s": "value i"},
# written with set_many() in chunks (default 100,000), then VACUUM ANALYZE.
build_model() {
	local name=$1 m=$2 n=$3 chunk=${4:-100000} first=${5:-1} lo hi last
	last=$((first + n - 1))
	sqlx "$name" -c "SELECT scuttlebutt.create_model('$m') WHERE NOT EXISTS (SELECT FROM scuttlebutt.registry WHERE name = '$m')" >/dev/null
	for ((lo = first; lo <= last; lo += chunk)); do
		hi=$((lo + chunk - 1)); [ $hi -gt "$last" ] && hi=$last
		sqlx "$name" -c "SELECT scuttlebutt.set_many('$m', (SELECT jsonb_object_agg('k' || i, jsonb_build_object('v', i, 's', 'value ' || i)) FROM generate_series($lo, $hi) i))" >/dev/null
	done
	sqlx "$name" -c "VACUUM ANALYZE scuttlebutt.updates" -c "VACUUM ANALYZE scuttlebutt.clocks" >/dev/null
}

# model_count NAME MODEL: updates held by MODEL on NAME (0 if no such model).
model_count() {
	sqlx1 "$1" -c "SELECT coalesce((SELECT updates FROM scuttlebutt.models WHERE name = '$2'), 0)"
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

# pctl P: the P-th percentile (nearest rank) of the numbers on stdin.
pctl() {
	sort -g | awk -v p="$1" '{ v[NR] = $1 } END {
		if (NR == 0) { print "nan"; exit }
		i = int(p / 100 * NR + 0.999999); if (i < 1) i = 1; if (i > NR) i = NR
		printf "%.6g\n", v[i] }'
}

# fmt DIGITS X: X with DIGITS decimals ("-" stays "-").
fmt() { case $2 in - | nan | "") echo "${2:--}" ;; *) printf "%.${1}f\n" "$2" ;; esac; }

# libpq_conditions: bench_conditions for our servers (first server), and
# the sides measured.
libpq_conditions() {
	PGHOST="$LIBPQ_TMP/sock" PGPORT="${PORT_OF[${LIBPQ_SERVERS[0]}]}" PGUSER=postgres PGDATABASE=postgres \
		bench_conditions
	printf 'servers: wal_level=logical, scuttlebutt preloaded: %s; sides measured: %s\n' \
		"$(has_side scuttlebutt && echo "yes, scuttlebutt.so built $LIBPQ_SO_LOADED when they started" || echo no)" "$LIBPQ_SIDES"
}
