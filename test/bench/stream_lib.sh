# test/bench/stream_lib.sh: helpers of the replication (stream) benchmarks.
#
# Sourced by stream_js_sync.sh, stream_server_sync.sh, stream_latency.sh and
# stream_memory.sh, after lib.sh.  Those need several servers with the
# replication worker, so each script starts its own: throw-away clusters
# under one temp directory (free loopback ports for PostgreSQL and for the
# scuttlebutt listener, temp socket directory), all stopped and removed on
# exit, with every process the script started.  Run from run_all.sh, the
# results still go to the shared $BENCH_OUT/results.tsv (one table); the
# shared cluster of run_all.sh is not used (it has no listener).
#
# Each server is named (a, b, ...); after stream_server NAME:
#   sqlx NAME ...     psql on NAME, database postgres (the worker's database)
#   sqlx1 NAME ...    the same, one value, unaligned
#   PORT_OF[NAME]     its PostgreSQL port
#   LISTEN_OF[NAME]   its scuttlebutt listener port
#   DATA_OF[NAME]     its data directory ($STREAM_TMP/NAME/data; server.log next to it)
#
# Like the other scripts, every measured run waits for the machine to quiet
# down (lib.sh's quiet_gate: BENCH_MAX_FOREIGN, BENCH_QUIET_WAIT) and
# measures the CPU share used by anything else (disturb_begin/_end; the
# "foreign CPU" rows), over all the servers and helpers started here.
#
# Environment (besides lib.sh's):
#   BENCH_KEEP=1              keep $STREAM_TMP (server logs, raw numbers)
#   BENCH_SHARED_BUFFERS      shared_buffers of every server (default 1GB)
#   BENCH_EXTRA_CONF          lines appended to every postgresql.conf
#   NODE                      node.js binary (default: node)

NODE=${NODE:-node}
JS_DIR="$BENCH_DIR/js"
declare -A PORT_OF=() LISTEN_OF=() DATA_OF=()
STREAM_SERVERS=()
STREAM_PIDS=()

STREAM_TMP=$(mktemp -d /tmp/scuttlebutt-stream-bench.XXXXXX)
chmod 755 "$STREAM_TMP"
mkdir "$STREAM_TMP/sock" "$STREAM_TMP/out"
chown postgres: "$STREAM_TMP/sock" 2>/dev/null || true
# Standalone, the results table lives in our own directory; under run_all.sh
# it is the shared one.
if [ -z "${BENCH_OUT:-}" ]; then
	BENCH_OUT="$STREAM_TMP/out"
fi
export BENCH_OUT

# To notice a reinstall of scuttlebutt.so during the run (bench_conditions).
BENCH_SO_SUM=${BENCH_SO_SUM:-$(so_sum)}
export BENCH_SO_SUM

# lib.sh's quiet_gate and disturb_begin / disturb_end count as the
# benchmark's own CPU that of its cluster (one postmaster) and of the
# calling shell's children.  Here the benchmark is several servers plus
# long-lived helpers (the JavaScript server): this replaces lib.sh's
# _cluster_ticks with the sum over every server started here (postmaster,
# the children it reaped, the live ones) and every tracked helper, so the
# "foreign CPU" of a run is what the rest of the machine used.
_cluster_ticks() {
	local t=0 name pm c pid
	for name in "${STREAM_SERVERS[@]}"; do
		pm=$(head -1 "${DATA_OF[$name]}/postmaster.pid" 2>/dev/null) || continue
		t=$((t + $(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$pm/stat" 2>/dev/null || echo 0)))
		for c in $(pgrep -P "$pm"); do
			t=$((t + $(awk '{ print $14 + $15 }' "/proc/$c/stat" 2>/dev/null || echo 0)))
		done
	done
	for pid in "${STREAM_PIDS[@]}"; do
		t=$((t + $(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$pid/stat" 2>/dev/null || echo 0)))
	done
	echo "$t"
}

stream_cleanup() {
	local rc=$? name pid
	trap - EXIT INT TERM
	for pid in "${STREAM_PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for name in "${STREAM_SERVERS[@]}"; do
		"${AS_OWNER[@]}" "$PGBIN/pg_ctl" -D "${DATA_OF[$name]}" -m immediate -w stop >/dev/null 2>&1 || true
	done
	if [ "${BENCH_KEEP:-0}" = 1 ]; then
		log "kept $STREAM_TMP"
	else
		rm -rf "$STREAM_TMP"
	fi
	exit $rc
}
trap stream_cleanup EXIT
trap 'exit 130' INT TERM

# stream_track PID: a background process to kill on exit.
stream_track() { STREAM_PIDS+=("$1"); }

# stream_server NAME: a cluster with the replication worker attached to
# database postgres, listening for stream peers on 127.0.0.1, and the
# extension created there.
stream_server() {
	local name=$1 dir="$STREAM_TMP/$1" port listen
	mkdir "$dir"
	chown postgres: "$dir" 2>/dev/null || true
	"${AS_OWNER[@]}" "$PGBIN/initdb" -D "$dir/data" -U postgres \
		--auth=trust --no-sync -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 ||
		die "initdb of server $name failed, see $dir/initdb.log"
	cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$STREAM_TMP/sock'
shared_buffers = ${BENCH_SHARED_BUFFERS:-1GB}
max_wal_size = 16GB
checkpoint_timeout = 1h
max_connections = 20
logging_collector = off
shared_preload_libraries = 'scuttlebutt'
scuttlebutt.database = 'postgres'
scuttlebutt.listen_addresses = '127.0.0.1'
${BENCH_EXTRA_CONF:-}
CONF
	DATA_OF[$name]="$dir/data"
	STREAM_SERVERS+=("$name")
	for _ in 1 2 3 4 5; do
		port=$(free_port) || die "no free port"
		listen=$(free_port) || die "no free port"
		[ "$port" != "$listen" ] || continue
		sed -i "/^port = /d; /^scuttlebutt.port = /d" "$dir/data/postgresql.conf"
		printf 'port = %s\nscuttlebutt.port = %s\n' "$port" "$listen" >>"$dir/data/postgresql.conf"
		if "${AS_OWNER[@]}" "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null 2>&1 &&
			stream_listening "$dir/server.log" "$listen"; then
			break
		fi
		"${AS_OWNER[@]}" "$PGBIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
		port=""
	done
	[ -n "$port" ] || die "server $name did not start, see $dir/server.log"
	PORT_OF[$name]=$port
	LISTEN_OF[$name]=$listen
	sqlx "$name" -c "CREATE EXTENSION scuttlebutt" >/dev/null
	log "server $name: port $port, scuttlebutt listener 127.0.0.1:$listen"
}

# stream_listening LOG PORT: the worker logged that it listens (up to 10 s).
stream_listening() {
	for _ in $(seq 1 100); do
		grep -q "listening for stream peers on .* port $2\$" "$1" 2>/dev/null && return 0
		grep -q "could not listen on" "$1" 2>/dev/null && return 1
		sleep 0.1
	done
	return 1
}

sqlx() { local n=$1; shift; "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$STREAM_TMP/sock" -p "${PORT_OF[$n]}" -U postgres -d postgres "$@"; }
sqlx1() { sqlx "$@" -At; }

# worker_pid NAME: the pid of NAME's replication worker.
worker_pid() {
	sqlx1 "$1" -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'scuttlebutt replication worker'"
}

# build_model NAME MODEL N [CHUNK]: model MODEL on server NAME holding keys
# k1..kN with values {"v": i, "s": "value i"}, written with set_many() in
# chunks (default 100,000), then VACUUM ANALYZE.
build_model() {
	local name=$1 m=$2 n=$3 chunk=${4:-100000} lo hi
	sqlx "$name" -c "SELECT scuttlebutt.create_model('$m')" >/dev/null
	for ((lo = 1; lo <= n; lo += chunk)); do
		hi=$((lo + chunk - 1)); [ $hi -gt "$n" ] && hi=$n
		sqlx "$name" -c "SELECT scuttlebutt.set_many('$m', (SELECT jsonb_object_agg('k' || i, jsonb_build_object('v', i, 's', 'value ' || i)) FROM generate_series($lo, $hi) i))" >/dev/null
	done
	sqlx "$name" -c "VACUUM ANALYZE scuttlebutt.updates" -c "VACUUM ANALYZE scuttlebutt.clocks" >/dev/null
}

# model_count NAME MODEL: updates held by MODEL on NAME (0 if no such model).
model_count() {
	sqlx1 "$1" -c "SELECT coalesce((SELECT updates FROM scuttlebutt.models WHERE name = '$2'), 0)"
}

# empty_model NAME MODEL: MODEL on NAME exists and holds nothing (dropped
# and created again; the server holds no other model, so the tables are
# truncated back to empty files).
empty_model() {
	sqlx "$1" <<SQL >/dev/null
SELECT scuttlebutt.remove_peer(id) FROM scuttlebutt.peers;
SELECT scuttlebutt.drop_model('$2') FROM scuttlebutt.registry WHERE name = '$2';
TRUNCATE scuttlebutt.updates, scuttlebutt.clocks;
SELECT scuttlebutt.create_model('$2');
SQL
}

# wait_no_connections NAME: NAME's worker holds no connection (up to 30 s).
wait_no_connections() {
	for _ in $(seq 1 300); do
		[ "$(sqlx1 "$1" -c "SELECT count(*) FROM scuttlebutt.peer_status WHERE state IS NOT NULL")" = 0 ] && return 0
		sleep 0.1
	done
	die "server $1 still holds connections: $(sqlx1 "$1" -c "SELECT string_agg(direction || ' ' || remote_addr || ' ' || coalesce(state, '-'), ', ') FROM scuttlebutt.peer_status")"
}

# pctl P: the P-th percentile (nearest rank) of the numbers on stdin.
pctl() {
	sort -g | awk -v p="$1" '{ v[NR] = $1 } END {
		if (NR == 0) { print "nan"; exit }
		i = int(p / 100 * NR + 0.999999); if (i < 1) i = 1; if (i > NR) i = NR
		printf "%.6g\n", v[i] }'
}

# stream_conditions: bench_conditions for our servers (first server).
stream_conditions() {
	PGHOST="$STREAM_TMP/sock" PGPORT="${PORT_OF[${STREAM_SERVERS[0]}]}" PGUSER=postgres PGDATABASE=postgres \
		bench_conditions
	printf 'node %s; scuttlebutt (npm) %s\n' "$("$NODE" --version)" \
		"$("$NODE" -p "require('$BENCH_DIR/../node_modules/scuttlebutt/package.json').version" 2>/dev/null || echo '?')"
}
