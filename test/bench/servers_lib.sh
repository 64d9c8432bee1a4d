# test/bench/servers_lib.sh: throw-away PostgreSQL servers for the
# benchmarks that need several (stream_lib.sh, libpq_lib.sh), sourced by
# them after lib.sh, with SERVERS_KIND set (it names the temp directory).
#
# All servers live under one temp directory ($SERVERS_TMP: free loopback
# ports, a private socket directory); they are stopped and removed on
# exit, with every helper process registered with track_pid.  Standalone,
# the results table is in $SERVERS_TMP/out; under run_all.sh it is the
# shared one.  After start_server NAME:
#   sqlx NAME ...     psql on NAME, database postgres (the worker's database)
#   sqlx1 NAME ...    the same, one value, unaligned
#   PORT_OF[NAME]     its PostgreSQL port
#   DATA_OF[NAME]     its data directory (server.log next to it)
#
# Environment (besides lib.sh's):
#   BENCH_TMP_PREFIX      the temp directory is $BENCH_TMP_PREFIX.XXXXXX
#                         (default /tmp/scuttlebutt-$SERVERS_KIND-bench)
#   BENCH_KEEP=1          keep it (server logs, raw numbers)
#   BENCH_SHARED_BUFFERS  shared_buffers of every server (default 1GB)
#   BENCH_EXTRA_CONF      lines appended to every postgresql.conf

declare -A PORT_OF=() DATA_OF=() EXTRA_PORT_OF=()
SERVERS=()
SERVER_PIDS=()

SERVERS_TMP=$(mktemp -d "${BENCH_TMP_PREFIX:-/tmp/scuttlebutt-$SERVERS_KIND-bench}.XXXXXX")
chmod 755 "$SERVERS_TMP"
mkdir "$SERVERS_TMP/sock" "$SERVERS_TMP/out"
chown postgres: "$SERVERS_TMP/sock" 2>/dev/null || true
if [ -z "${BENCH_OUT:-}" ]; then
	BENCH_OUT="$SERVERS_TMP/out"
fi
export BENCH_OUT
# To notice a reinstall of scuttlebutt.so during the run (bench_conditions).
BENCH_SO_SUM=${BENCH_SO_SUM:-$(so_sum)}
export BENCH_SO_SUM

# lib.sh's quiet_gate and disturb_begin / disturb_end count as the
# benchmark's own CPU that of its cluster (one postmaster) and of the
# calling shell's children.  Here the benchmark is several servers plus
# long-lived helpers: this replaces lib.sh's _cluster_ticks with the sum
# over every server started here (postmaster, the children it reaped, the
# live ones) and every tracked helper, so the "foreign CPU" of a run is
# what the rest of the machine used.
_cluster_ticks() {
	local t=0 name pm c pid
	for name in "${SERVERS[@]}"; do
		pm=$(head -1 "${DATA_OF[$name]}/postmaster.pid" 2>/dev/null) || continue
		t=$((t + $(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$pm/stat" 2>/dev/null || echo 0)))
		for c in $(pgrep -P "$pm"); do
			t=$((t + $(awk '{ print $14 + $15 }' "/proc/$c/stat" 2>/dev/null || echo 0)))
		done
	done
	for pid in "${SERVER_PIDS[@]}"; do
		t=$((t + $(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$pid/stat" 2>/dev/null || echo 0)))
	done
	echo "$t"
}

servers_cleanup() {
	local rc=$? name pid
	trap - EXIT INT TERM
	for pid in "${SERVER_PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for name in "${SERVERS[@]}"; do
		"${AS_OWNER[@]}" "$PGBIN/pg_ctl" -D "${DATA_OF[$name]}" -m immediate -w stop >/dev/null 2>&1 || true
	done
	if [ "${BENCH_KEEP:-0}" = 1 ]; then
		log "kept $SERVERS_TMP"
	else
		rm -rf "$SERVERS_TMP"
	fi
	exit $rc
}
trap servers_cleanup EXIT
trap 'exit 130' INT TERM

# track_pid PID: a background process to kill on exit.
track_pid() { SERVER_PIDS+=("$1"); }

# start_server NAME CONF [EXTRA_PORT_GUC READY]: initdb, the common
# settings plus the lines CONF, started on a free port.  With
# EXTRA_PORT_GUC, that setting gets a second free port (EXTRA_PORT_OF[NAME])
# and the start counts only once "READY LOGFILE PORT" succeeds.
start_server() {
	local name=$1 conf=$2 extra_guc=${3:-} ready=${4:-} dir="$SERVERS_TMP/$1" port extra=""
	mkdir "$dir"
	chown postgres: "$dir" 2>/dev/null || true
	"${AS_OWNER[@]}" "$PGBIN/initdb" -D "$dir/data" -U postgres \
		--auth=trust --no-sync -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 ||
		die "initdb of server $name failed, see $dir/initdb.log"
	cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$SERVERS_TMP/sock'
shared_buffers = ${BENCH_SHARED_BUFFERS:-1GB}
max_wal_size = 16GB
checkpoint_timeout = 1h
logging_collector = off
$conf
${BENCH_EXTRA_CONF:-}
CONF
	DATA_OF[$name]="$dir/data"
	SERVERS+=("$name")
	for _ in 1 2 3 4 5; do
		port=$(free_port) || die "no free port"
		sed -i "/^port = /d" "$dir/data/postgresql.conf"
		echo "port = $port" >>"$dir/data/postgresql.conf"
		if [ -n "$extra_guc" ]; then
			extra=$(free_port) || die "no free port"
			[ "$port" != "$extra" ] || continue
			sed -i "/^$extra_guc = /d" "$dir/data/postgresql.conf"
			echo "$extra_guc = $extra" >>"$dir/data/postgresql.conf"
		fi
		if "${AS_OWNER[@]}" "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null 2>&1 &&
			{ [ -z "$ready" ] || "$ready" "$dir/server.log" "$extra"; }; then
			break
		fi
		"${AS_OWNER[@]}" "$PGBIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
		port=""
	done
	[ -n "$port" ] || die "server $name did not start, see $dir/server.log"
	PORT_OF[$name]=$port
	EXTRA_PORT_OF[$name]=$extra
	# lib.sh's disturb_end waits for the first server's finished backends
	if [ "${#SERVERS[@]}" -eq 1 ]; then
		BENCH_POSTMASTER=$(head -1 "$dir/data/postmaster.pid")
	fi
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

# stop_server NAME: NAME stopped and its directory removed; start_server
# NAME may make it again (a brand-new cluster: no WAL segment beyond
# initdb's, nothing cached).
stop_server() {
	local name=$1 i
	"${AS_OWNER[@]}" "$PGBIN/pg_ctl" -D "${DATA_OF[$name]}" -m fast -w stop >/dev/null 2>&1 || true
	rm -rf "${SERVERS_TMP:?}/$name"
	for i in "${!SERVERS[@]}"; do
		[ "${SERVERS[$i]}" = "$name" ] && unset 'SERVERS[i]'
	done
	SERVERS=("${SERVERS[@]}")
	unset 'DATA_OF[$name]' 'PORT_OF[$name]'
}

sqlx() { local n=$1; shift; "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SERVERS_TMP/sock" -p "${PORT_OF[$n]}" -U postgres -d postgres "$@"; }
sqlx1() { sqlx "$@" -At; }

# servers_conditions: bench_conditions for our servers (the first one).
servers_conditions() {
	PGHOST="$SERVERS_TMP/sock" PGPORT="${PORT_OF[${SERVERS[0]}]}" PGUSER=postgres PGDATABASE=postgres \
		bench_conditions
}

# worker_pid NAME: the pid of NAME's scuttlebutt replication worker.
worker_pid() {
	sqlx1 "$1" -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'scuttlebutt replication worker' ORDER BY pid LIMIT 1"
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

# pctl P: the P-th percentile (nearest rank) of the numbers on stdin.
pctl() {
	sort -g | awk -v p="$1" '{ v[NR] = $1 } END {
		if (NR == 0) { print "nan"; exit }
		i = int(p / 100 * NR + 0.999999); if (i < 1) i = 1; if (i > NR) i = NR
		printf "%.6g\n", v[i] }'
}

# status_kb PID FIELD: a /proc/PID/status field, in kB.
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

# sample PID PREFIX: until PREFIX.stop exists, the peaks of RssAnon and
# VmRSS (kB) into PREFIX.anon and PREFIX.rss.  Fork-free: read -t on a
# pipe nobody writes is the sleep.
sample() {
	local pid=$1 pre=$2 anon=0 rss=0 n=0 k v _
	exec {nap}<> <(:)
	while [ ! -e "$pre.stop" ] && [ -r "/proc/$pid/status" ]; do
		while read -r k v _; do
			case $k in
				VmRSS:) [ "$v" -gt "$rss" ] && rss=$v ;;
				RssAnon:) [ "$v" -gt "$anon" ] && anon=$v; break ;;
			esac
		done <"/proc/$pid/status" 2>/dev/null || true
		n=$((n + 1))
		read -r -t 0.02 -u $nap _ || true
	done
	echo "$anon" >"$pre.anon"; echo "$rss" >"$pre.rss"; echo "$n" >"$pre.samples"
}
