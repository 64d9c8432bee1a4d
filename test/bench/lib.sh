# test/bench/lib.sh: shared helpers of the scuttlebutt benchmarks.
#
# Sourced by set_tps.sh, set_many.sh, history.sh and run_all.sh.  Starts a
# throw-away cluster (temp data directory, free loopback port, temp socket
# directory) unless one was already started by run_all.sh, and removes it on
# exit.  Results are appended to $BENCH_OUT/results.tsv as
#   bench <TAB> case <TAB> baseline <TAB> extension <TAB> unit <TAB> ratio <TAB> target <TAB> verdict
# so that run_all.sh can print one combined table.
#
# Environment (all optional):
#   PG_CONFIG        pg_config of the server to use (default: the PG 15 one)
#   BENCH_KEEP=1     keep the temp directory (logs, raw numbers) on exit
#   BENCH_SHARED_BUFFERS, BENCH_EXTRA_CONF  server settings
#   BENCH_EXTENSION_SQL  a stand-in script run instead of CREATE EXTENSION

set -euo pipefail

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
PGBIN=$("$PG_CONFIG" --bindir)
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# Run a command as the cluster owner: initdb refuses root.
if [ "$(id -u)" -eq 0 ]; then
	AS_OWNER=(runuser -u postgres --)
else
	AS_OWNER=()
fi

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# A TCP port on 127.0.0.1 that nobody listens on.
free_port() {
	local p
	for _ in $(seq 1 100); do
		p=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

bench_cleanup() {
	local rc=$?
	if [ -n "${BENCH_OWNS_CLUSTER:-}" ] && [ -n "${BENCH_TMP:-}" ]; then
		"${AS_OWNER[@]}" "$PGBIN/pg_ctl" -D "$BENCH_TMP/data" -m fast -w stop >/dev/null 2>&1 || true
		if [ "${BENCH_KEEP:-0}" = 1 ]; then
			log "kept $BENCH_TMP"
		else
			rm -rf "$BENCH_TMP"
		fi
	fi
	exit $rc
}

# Start a cluster unless the caller (run_all.sh) already did.  Exports
# PGHOST/PGPORT/PGUSER/PGDATABASE for psql and pgbench.
bench_cluster_start() {
	if [ -n "${BENCH_CLUSTER_READY:-}" ]; then
		return 0
	fi
	BENCH_TMP=$(mktemp -d /tmp/scuttlebutt-bench.XXXXXX)
	BENCH_OWNS_CLUSTER=1
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
	chmod 755 "$BENCH_TMP"
	mkdir "$BENCH_TMP/sock" "$BENCH_TMP/out"
	chown postgres: "$BENCH_TMP" "$BENCH_TMP/sock" 2>/dev/null || true
	"${AS_OWNER[@]}" "$PGBIN/initdb" -D "$BENCH_TMP/data" -U postgres \
		--auth=trust --no-sync -E UTF8 --locale=C >"$BENCH_TMP/initdb.log" 2>&1 ||
		die "initdb failed, see $BENCH_TMP/initdb.log"

	local preload=""
	if [ -f "$("$PG_CONFIG" --pkglibdir)/scuttlebutt.so" ]; then
		preload="shared_preload_libraries = 'scuttlebutt'"
	fi
	cat >>"$BENCH_TMP/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$BENCH_TMP/sock'
shared_buffers = ${BENCH_SHARED_BUFFERS:-1GB}
max_wal_size = 16GB
checkpoint_timeout = 1h
max_connections = 20
logging_collector = off
client_min_messages = warning
$preload
${BENCH_EXTRA_CONF:-}
CONF
	local port
	for _ in 1 2 3 4 5; do
		port=$(free_port) || die "no free port"
		sed -i "/^port = /d" "$BENCH_TMP/data/postgresql.conf"
		echo "port = $port" >>"$BENCH_TMP/data/postgresql.conf"
		if "${AS_OWNER[@]}" "$PGBIN/pg_ctl" -D "$BENCH_TMP/data" -l "$BENCH_TMP/server.log" -w start >/dev/null 2>&1; then
			break
		fi
		port=""
	done
	[ -n "$port" ] || die "server did not start, see $BENCH_TMP/server.log"

	export PGHOST="$BENCH_TMP/sock" PGPORT="$port" PGUSER=postgres PGDATABASE=postgres
	export BENCH_TMP BENCH_OUT="$BENCH_TMP/out" BENCH_CLUSTER_READY=1
	BENCH_POSTMASTER=$(head -1 "$BENCH_TMP/data/postmaster.pid")
	BENCH_SO_SUM=$(so_sum)
	export BENCH_POSTMASTER BENCH_SO_SUM
	log "cluster on port $port, data in $BENCH_TMP/data"
}

# Checksum of the installed library (to notice a reinstall during a run).
so_sum() {
	md5sum "$("$PG_CONFIG" --pkglibdir)/scuttlebutt.so" 2>/dev/null | cut -c1-12 || echo none
}

# Disturbance: the share of the machine's CPU used by anything but this
# cluster and the benchmark's own client while a measurement ran, from
# /proc/stat minus the cluster's processes (the postmaster, the children
# it reaped, the live ones) minus the children of the calling shell (read
# with the builtin "times", so call both in the shell that runs the
# client, never inside $(...)).  disturb_begin; <client>; disturb_end
# FILE appends the percentage to FILE.  On a shared machine a run with
# more than a few percent is not comparable with the others.
_machine_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
# The cluster's CPU ticks: the postmaster's own and its reaped children's,
# plus its live (or zombie) children's.  Read again when the postmaster
# reaped a child meanwhile, which would count that child nowhere.
_pm_ticks() { awk '{ print $14 + $15 + $16 + $17 }' "/proc/$BENCH_POSTMASTER/stat" 2>/dev/null || echo 0; }
_cluster_ticks() {
	local a b t c
	for _ in 1 2 3 4 5; do
		a=$(_pm_ticks)
		t=0
		for c in $(pgrep -P "$BENCH_POSTMASTER"); do
			t=$((t + $(awk '{ print $14 + $15 }' "/proc/$c/stat" 2>/dev/null || echo 0)))
		done
		b=$(_pm_ticks)
		[ "$a" = "$b" ] && break
	done
	echo $((b + t))
}
# Wait (3 s at most) until the postmaster has no more children than $1:
# the backends of a finished client exit a moment after it.
_cluster_settle() {
	for _ in $(seq 1 300); do
		[ "$(pgrep -c -P "$BENCH_POSTMASTER")" -le "$1" ] && return 0
		sleep 0.01
	done
}

# Children's CPU of the current shell in ticks: "times" has to run here,
# not in a $(...) subshell, hence the file.
_child_ticks() {
	local f="$BENCH_OUT/times.$BASHPID"
	times >"$f"
	_d_ticks=$(awk -v hz="$(getconf CLK_TCK)" 'NR == 2 {
		t = 0
		for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }
		printf "%d\n", t * hz }' "$f")
	rm -f "$f"
}
disturb_begin() {
	_child_ticks; _d_child=$_d_ticks
	_d_kids=$(pgrep -c -P "$BENCH_POSTMASTER" || true)
	_d_busy=$(_machine_busy); _d_cluster=$(_cluster_ticks)
	_d_t0=$(date +%s.%N)
}
disturb_end() {
	local busy cluster child t1
	_cluster_settle "$_d_kids"
	busy=$(_machine_busy); cluster=$(_cluster_ticks)
	_child_ticks; child=$_d_ticks
	t1=$(date +%s.%N)
	awk -v b=$((busy - _d_busy)) -v c=$((cluster - _d_cluster)) -v k=$((child - _d_child)) \
		-v w="$(awk -v a="$_d_t0" -v b="$t1" 'BEGIN { print b - a }')" \
		-v n="$(nproc)" -v hz="$(getconf CLK_TCK)" 'BEGIN {
		f = (b - c - k) / (n * w * hz) * 100; if (f < 0) f = 0; printf "%.0f\n", f }' >>"$1"
}

# quiet_gate: wait (at most $BENCH_QUIET_WAIT s, default 300) until, over
# one second, less than $BENCH_MAX_FOREIGN % (default 10) of the machine's
# CPU goes to anything but this cluster; returns at once when
# BENCH_MAX_FOREIGN=100.  On a shared machine (other test runs, builds)
# this keeps most measurements out of their way; disturb_* tells how well.
quiet_gate() {
	local max=${BENCH_MAX_FOREIGN:-10} waited=0 f gate="$BENCH_OUT/gate.$BASHPID"
	[ "$max" -ge 100 ] && return 0
	while :; do
		disturb_begin
		sleep 1
		disturb_end "$gate"
		f=$(tail -1 "$gate")
		rm -f "$gate"
		[ "$f" -lt "$max" ] && break
		[ "$waited" -eq 0 ] && log "machine busy ($f% CPU elsewhere): waiting for it to quiet down"
		waited=$((waited + 1))
		if [ "$waited" -ge "${BENCH_QUIET_WAIT:-300}" ]; then
			log "still busy after ${waited}s ($f% elsewhere): measuring anyway"
			break
		fi
	done
	[ "$waited" -gt 0 ] && log "quiet after ${waited}s"
	return 0
}

# The largest disturbance in FILE (percent), for the tables.
disturb_max() { sort -n "$1" 2>/dev/null | tail -1; }

# psql with no startup file, stopping at the first error.
sql() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }
# One value, unaligned, no header.
sql1() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -At "$@"; }

# bench_database NAME: a fresh database NAME with the extension, made the
# default of psql and pgbench.  Each benchmark has its own.
bench_database() {
	sql -d postgres -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" >/dev/null
	export PGDATABASE=$1
	bench_require_extension
}

# The extension in database $PGDATABASE, created if missing.  With
# BENCH_EXTENSION_SQL=<file>, that file is run instead of CREATE EXTENSION: a
# stand-in defining the same schema and functions (to dry-run the harness
# before the C builds, or to compare a prototype).
bench_require_extension() {
	if [ -n "${BENCH_EXTENSION_SQL:-}" ]; then
		sql -f "$BENCH_EXTENSION_SQL" >/dev/null || die "$BENCH_EXTENSION_SQL failed"
		log "using stand-in $BENCH_EXTENSION_SQL instead of the extension"
		return 0
	fi
	sql -c "CREATE EXTENSION IF NOT EXISTS scuttlebutt" >/dev/null 2>"$BENCH_OUT/ext.err" ||
		die "CREATE EXTENSION scuttlebutt failed: $(cat "$BENCH_OUT/ext.err") (run make install first)"
}

# Median of the numbers on stdin.
median() {
	sort -g | awk '{ v[NR] = $1 } END {
		if (NR == 0) { print "nan"; exit }
		if (NR % 2) printf "%.6g\n", v[(NR + 1) / 2];
		else printf "%.6g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# ratio A B: A / B with 3 decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "nan"; else printf "%.3f\n", a / b }'; }

# verdict RATIO OP TARGET: PASS or MISS (OP is ">=" or "<=").
verdict() {
	awk -v r="$1" -v op="$2" -v t="$3" 'BEGIN {
		ok = (op == ">=") ? (r >= t) : (r <= t); print ok ? "PASS" : "MISS" }'
}

# record BENCH CASE BASELINE EXTENSION UNIT RATIO TARGET VERDICT
record() {
	local IFS=$'\t'
	echo "$*" >>"$BENCH_OUT/results.tsv"
}

# Print the rows of results.tsv whose bench is one of the arguments (all
# rows when none) as an aligned table.
print_table() {
	local filter="${*:-}"
	{
		printf 'bench\tcase\tbaseline\textension\tunit\tratio\ttarget\tverdict\n'
		awk -F'\t' -v f=" $filter " 'f == "  " || index(f, " " $1 " ")' "$BENCH_OUT/results.tsv"
	} | column -t -s $'\t'
}

# One line describing the run conditions, and one the build measured: the
# repository's commit (-dirty with uncommitted changes) and the time the
# installed library was built.
bench_conditions() {
	local cpu so rev
	cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
	printf 'PostgreSQL %s; %s CPUs (%s); %s; shared_buffers=%s, fsync=%s\n' \
		"$(sql1 -d postgres -c 'SHOW server_version')" "$(nproc)" "$cpu" \
		"$(uname -sr)" "$(sql1 -d postgres -c 'SHOW shared_buffers')" \
		"$(sql1 -d postgres -c 'SHOW fsync')"
	so="$("$PG_CONFIG" --pkglibdir)/scuttlebutt.so"
	rev=$(git -C "$BENCH_DIR" describe --always --dirty 2>/dev/null || echo unknown)
	if [ -n "${BENCH_EXTENSION_SQL:-}" ]; then
		printf 'measured: stand-in %s (repository at %s)\n' "$BENCH_EXTENSION_SQL" "$rev"
	else
		local same="not byte-identical to (built elsewhere, or other sources)"
		cmp -s "$so" "$BENCH_DIR/../../scuttlebutt.so" && same="same as"
		printf 'measured: %s built %s, %s the repository build (at %s)\n' "$so" \
			"$(date -u -r "$so" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || echo '?')" "$same" "$rev"
		if [ -n "${BENCH_SO_SUM:-}" ] && [ "$(so_sum)" != "$BENCH_SO_SUM" ]; then
			printf 'WARNING: scuttlebutt.so was reinstalled during the run: runs before and after measured different builds\n'
		fi
	fi
}

# backend_run PREFIX SAMPLE: run the psql script on stdin in one session and
# print the elapsed milliseconds of each statement run while \timing is on
# (one per line; the script switches \timing on around what it measures and
# sends query output to \o /dev/null where it wants none).  Afterwards
# PREFIX.hwm holds the backend's VmHWM and PREFIX.shmem its RssShmem (kB).
# With SAMPLE=1 a fork-free sampler reads /proc/<pid>/status about every
# 10 ms and PREFIX.anon gets the peak RssAnon (kB): the backend's private
# memory, which VmHWM mixes with the shared buffers it touched.  Sampling
# costs CPU, so timed runs use SAMPLE=0.
backend_run() {
	local pre=$1 sample=$2 spid=""
	rm -f "$pre.pid" "$pre.done" "$pre.hwm" "$pre.shmem" "$pre.anon"
	if [ "$sample" = 1 ]; then
		(
			exec {nap}<> <(:)
			while [ ! -s "$pre.pid" ]; do read -r -t 0.01 -u $nap _ || true; done
			pid=$(<"$pre.pid")
			max=0
			while [ ! -e "$pre.done" ] && [ -r "/proc/$pid/status" ]; do
				while read -r k v _; do
					if [ "$k" = "RssAnon:" ]; then
						[ "$v" -gt "$max" ] && max=$v
						break
					fi
				done <"/proc/$pid/status" 2>/dev/null || true
				read -r -t 0.01 -u $nap _ || true
			done
			echo "$max" >"$pre.anon"
		) &
		spid=$!
	fi
	{
		echo "SELECT pg_backend_pid() AS bench_pid \\gset"
		echo "\\setenv BENCH_PID :bench_pid"
		echo "\\! echo \$BENCH_PID > $pre.pid"
		cat
		echo "\\! awk '/^VmHWM/ { print \$2 }' /proc/\$BENCH_PID/status > $pre.hwm"
		echo "\\! awk '/^RssShmem/ { print \$2 }' /proc/\$BENCH_PID/status > $pre.shmem"
		echo "\\! touch $pre.done"
	} >"$pre.sql"
	"$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -f "$pre.sql" >"$pre.out" 2>&1 ||
		{ touch "$pre.done"; die "psql failed: $(tail -5 "$pre.out")"; }
	[ -n "$spid" ] && wait "$spid"
	awk '/^Time: / { print $2 }' "$pre.out"
}

# write_set_tps_scripts DIR KEYS: the pgbench scripts of the set() TPS
# comparison: DIR/plain.pgb, a single-row upsert into plain_kv, and
# DIR/set.pgb, scuttlebutt.set() on model 'bench'; a random key of KEYS.
write_set_tps_scripts() {
	cat >"$1/plain.pgb" <<PGB
\\set k random(1, $2)
\\set v random(1, 1000000000)
INSERT INTO plain_kv (key, value) VALUES ('k' || :k, jsonb_build_object('v', :v::integer)) ON CONFLICT (key) DO UPDATE SET value = excluded.value;
PGB
	cat >"$1/set.pgb" <<PGB
\\set k random(1, $2)
\\set v random(1, 1000000000)
SELECT scuttlebutt.set('bench', 'k' || :k, jsonb_build_object('v', :v::integer));
PGB
}
