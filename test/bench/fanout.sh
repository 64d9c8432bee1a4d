#!/usr/bin/env bash
# test/bench/fanout.sh: fan-out of one model to many stream clients, the
# database's listener against a JavaScript server (reference Model) in the
# same run.
#
# Model m holds $KEYS keys (k1..kN, values {"v": i, "s": "value i"}).  The
# JavaScript server (js/fanout_server.js) loads scuttlebutt.export() of it.
# The load clients ($PROCS processes, N/PROCS sockets each;
# FANOUT_CLIENT=c, the default: c/fanout_clients.c, epoll, built here
# with cc; FANOUT_CLIENT=js: js/fanout_clients.js, the same protocol and
# checks at about 1.5 times the CPU, which on two cores the server then
# lacks) speak the line protocol with an empty clock; their
# handshake is checked against the reference package on every
# JavaScript run (the server's streams must all emit 'sync').  Per side,
# client count N and repetition (repetition 0 warms up and is not kept;
# the sides alternate, the order flipping every repetition):
#
#   1. restart: the database restarted (pg_ctl restart -m fast), or the
#      JavaScript server started anew, so every client dials a cold
#      server (the reconnect storm after a restart);
#   2. storm: all N clients dial at once; time until each one has its
#      "SYNC" after the model's $KEYS updates (the slowest client, from
#      its own net.connect());
#   3. memory: the serving process's RssAnon (private memory) before the
#      storm and 2 s after it, over N: kB per idle connection (an upper
#      bound: it also holds what serving the sync left allocated);
#   4. live: a writer sets random existing keys at $RATE/s for $SECS s
#      (database: pgbench -R, a set() per transaction, 4 connections;
#      JavaScript: model.set() in the server's process, as many as its
#      busy event loop lets through: the rate it sustains); from 1 s after it
#      starts to 1 s after it stops, every update each client receives
#      counts: its latency (client's clock - the update's timestamp, the
#      writer's clock reading; same machine) p50 and p99 over every
#      delivery, deliveries per second, and the server's CPU (database:
#      the whole cluster, the writer's backends included, and the worker
#      alone; JavaScript: its process, writer included).  Fan-out per core
#      = deliveries / CPU seconds of the serving process (the worker; the
#      JavaScript server), and of the whole server (info).
#
#   FANOUT_CLIENTS="1000 10000" FANOUT_KEYS=10000 FANOUT_RATE=1000 \
#   FANOUT_SECS=15 FANOUT_REPS=3 FANOUT_PROCS=2 test/bench/fanout.sh
#
# Targets: p99 at 1,000 clients <= 50 ms; fan-out per core of the serving
# process >= 5 x the JavaScript server's; memory per idle connection < 64 kB.  The file
# descriptor limit is raised to the hard limit (each client and each
# server connection holds one; the worker raises its own);
# scuttlebutt.max_connections is set to N + 64 for the database.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$BENCH_DIR/stream_lib.sh"

CLIENTS=${FANOUT_CLIENTS:-1000 10000}
KEYS=${FANOUT_KEYS:-10000}
RATE=${FANOUT_RATE:-1000}
SECS=${FANOUT_SECS:-15}
REPS=${FANOUT_REPS:-3}
PROCS=${FANOUT_PROCS:-2}
SIDES=${FANOUT_SIDES:-db js}
HZ=$(getconf CLK_TCK)
W="$SERVERS_TMP/fanout"
mkdir -p "$W"
# the load clients: c (epoll, in C) or js (Node.js), the same protocol and output
case "${FANOUT_CLIENT:-c}" in
c)
	cc -O2 -o "$W/fanout_clients" "$BENCH_DIR/c/fanout_clients.c" -lm || die "could not build the C load clients"
	CLIENT_CMD=("$W/fanout_clients")
	;;
js) CLIENT_CMD=("$NODE" "$JS_DIR/fanout_clients.js") ;;
*) die "FANOUT_CLIENT must be c or js" ;;
esac

ulimit -n "$(ulimit -Hn)"
maxn=0
for n in $CLIENTS; do [ "$n" -gt "$maxn" ] && maxn=$n; done
need=$((maxn / PROCS + 200))
[ "$(ulimit -n)" -ge "$need" ] || die "the file-descriptor limit ($(ulimit -n)) is below $need: raise the hard limit (ulimit -Hn)"
conns=$((maxn + 64))

BENCH_EXTRA_CONF="scuttlebutt.max_connections = $conns
scuttlebutt.max_connections_per_address = $conns
${BENCH_EXTRA_CONF:-}" stream_server a
build_model a m "$KEYS"
[ "$(model_count a m)" -eq "$KEYS" ] || die "model m holds $(model_count a m) updates, expected $KEYS"
sqlx1 a -c "SELECT * FROM scuttlebutt.export('m')" >"$W/m.dump"
cat >"$W/writer.sql" <<SQL
\set k random(1, $KEYS)
\set n random(1, 1000000000)
SELECT scuttlebutt.set('m', 'k' || :k, jsonb_build_object('v', :n, 's', 'value ' || :n));
SQL

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# db_ticks: server a's CPU ticks, its postmaster and every process it started
db_ticks() {
	local pm t c
	pm=$(head -1 "${DATA_OF[a]}/postmaster.pid")
	t=$(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$pm/stat")
	for c in $(pgrep -P "$pm"); do t=$((t + $(ticks "$c"))); done
	echo "$t"
}
# jnum FIELD: that number of the JSON line on stdin ("null" if null)
jnum() { sed -E "s/.*\"$1\":(null|[-0-9.e+]+).*/\1/"; }

# restart_db: server a restarted; returns once its new worker accepts
restart_db() {
	local old new
	old=$(worker_pid a)
	"${AS_OWNER[@]}" "$PGBIN/pg_ctl" -D "${DATA_OF[a]}" -l "${DATA_OF[a]}/../server.log" -m fast -w restart >/dev/null ||
		die "restart of a failed"
	for _ in $(seq 1 100); do
		new=$(worker_pid a)
		if [ -n "$new" ] && [ "$new" != "$old" ] &&
			grep -q "listening for stream peers" <(tail -n 20 "${DATA_OF[a]}/../server.log"); then
			return 0
		fi
		sleep 0.1
	done
	die "the worker of a did not come back"
}

# js_start / js_stop: the JavaScript server (js_pid, js_port; commands on fd 8)
js_start() {
	rm -f "$W/js.in" && mkfifo "$W/js.in"
	"$NODE" "$JS_DIR/fanout_server.js" "$W/m.dump" <"$W/js.in" >"$W/js.out" 2>"$W/js.err" &
	js_pid=$!
	track_pid "$js_pid"
	exec 8>"$W/js.in"
	for _ in $(seq 1 600); do
		grep -q '^READY ' "$W/js.out" && break
		kill -0 "$js_pid" 2>/dev/null || die "fanout_server.js failed: $(cat "$W/js.err")"
		sleep 0.1
	done
	read -r _ js_port js_keys < <(grep '^READY ' "$W/js.out") || die "fanout_server.js did not start"
	[ "$js_keys" -eq "$KEYS" ] || die "fanout_server.js holds $js_keys keys, expected $KEYS"
}
js_stop() {
	exec 8>&-
	wait "$js_pid" 2>/dev/null || true
}
# js_ask LINE EVENT: the JavaScript server's answer to LINE
js_ask() {
	local k
	k=$(grep -c "\"event\":\"$2\"" "$W/js.out" || true)
	echo "$1" >&8
	for _ in $(seq 1 3000); do
		[ "$(grep -c "\"event\":\"$2\"" "$W/js.out" || true)" -gt "$k" ] && break
		sleep 0.1
	done
	grep "\"event\":\"$2\"" "$W/js.out" | tail -1
}

# clients_start PORT N: the load clients, started together (fds 10..)
clients_start() {
	local port=$1 n=$2 i k
	for i in $(seq 0 $((PROCS - 1))); do
		k=$((n / PROCS + (i < n % PROCS ? 1 : 0)))
		rm -f "$W/c$i.in" && mkfifo "$W/c$i.in"
		FANOUT_SYNC_KEYS=$KEYS FANOUT_DEADLINE_MS=600000 FANOUT_ID="C$i-" \
			"${CLIENT_CMD[@]}" "$port" m "$k" <"$W/c$i.in" >"$W/c$i.out" 2>"$W/c$i.err" &
		CPIDS[i]=$!
		track_pid "${CPIDS[i]}"
		eval "exec $((10 + i))>\"\$W/c$i.in\""
	done
}
# clients_wait EVENT K: each client process has printed EVENT K times
clients_wait() {
	local i
	for i in $(seq 0 $((PROCS - 1))); do
		until [ "$(grep -c "\"event\":\"$1\"" "$W/c$i.out" || true)" -ge "$2" ]; do
			kill -0 "${CPIDS[i]}" 2>/dev/null || die "client process $i failed: $(cat "$W/c$i.err")"
			sleep 0.05
		done
	done
}
clients_say() {
	local i
	for i in $(seq 0 $((PROCS - 1))); do echo "$1" >&$((10 + i)); done
}
clients_stop() {
	local i
	clients_say quit
	for i in $(seq 0 $((PROCS - 1))); do
		eval "exec $((10 + i))>&-"
		wait "${CPIDS[i]}" 2>/dev/null || true
	done
}
# clients_sum EVENT FIELD / clients_max EVENT FIELD: over the processes' last EVENT
clients_sum() {
	local i
	for i in $(seq 0 $((PROCS - 1))); do grep "\"event\":\"$1\"" "$W/c$i.out" | tail -1 | jnum "$2"; done |
		awk '{ s += $1 } END { print s + 0 }'
}
clients_min() {
	local i
	for i in $(seq 0 $((PROCS - 1))); do grep "\"event\":\"$1\"" "$W/c$i.out" | tail -1 | jnum "$2"; done |
		sort -g | head -1
}
clients_max() {
	local i
	for i in $(seq 0 $((PROCS - 1))); do grep "\"event\":\"$1\"" "$W/c$i.out" | tail -1 | jnum "$2"; done |
		sort -g | tail -1
}

# one_run SIDE N REP: one restart, storm, idle memory and live window
one_run() {
	local side=$1 n=$2 rep=$3 port spid m0 m1 synced t0 c0 w0 c1 w1 wrote deliveries elapsed lat commit=""
	if [ "$side" = db ]; then
		restart_db
		port=${LISTEN_OF[a]}
		spid=$(worker_pid a)
	else
		js_start
		port=$js_port
		spid=$js_pid
	fi
	sleep 1
	m0=$(status_kb "$spid" RssAnon)
	quiet_gate
	disturb_begin
	clients_start "$port" "$n"
	clients_wait synced 1
	disturb_end "$W/foreign.all"
	synced=$(clients_sum synced synced)
	# a client closed after its "SYNC" is not synced: it is not served
	if [ "$synced" -ne "$n" ] || [ "$(clients_sum synced closed_after_sync)" -ne 0 ]; then
		grep -h '"event":"synced"' "$W"/c*.out | cut -c1-600 >&2
		die "$side, $n clients: $synced synced"
	fi
	storm=$(clients_max synced sync_ms_max)
	if [ "$side" = js ]; then
		st=$(js_ask status status)
		[ "$(jnum synced <<<"$st")" -eq "$n" ] ||
			die "the reference server saw $(jnum synced <<<"$st") of $n load clients sync: $st"
	else
		[ "$(sqlx1 a -c "SELECT count(*) FROM scuttlebutt.peer_status WHERE direction = 'in' AND state = 'live'")" -eq "$n" ] ||
			die "the database does not hold $n live connections"
	fi
	sleep 2
	m1=$(status_kb "$spid" RssAnon)
	perconn=$(awk -v a="$m0" -v b="$m1" -v n="$n" 'BEGIN { printf "%.1f", (b - a) / n }')

	# live window
	quiet_gate
	disturb_begin
	if [ "$side" = db ]; then
		rm -f "$W"/pgb.*
		"$PGBIN/pgbench" -n -h "$SERVERS_TMP/sock" -p "${PORT_OF[a]}" -U postgres -c 4 -j 1 \
			-R "$RATE" -T "$SECS" -l --log-prefix="$W/pgb" -f "$W/writer.sql" postgres >"$W/pgbench.out" 2>&1 &
		wpid=$!
	else
		echo "write $RATE $SECS $KEYS" >&8
	fi
	sleep 1
	clients_say reset
	clients_wait reset 1
	if [ "$side" = db ]; then c0=$(db_ticks); else c0=$(ticks "$spid"); fi
	w0=$(ticks "$spid")
	if [ -n "${FANOUT_PERF:-}" ]; then
		perf record -g -p "$spid" -o "$W/perf.$side.$n.$rep.data" >/dev/null 2>&1 &
		perf_pid=$!
	fi
	if [ "$side" = db ]; then
		wait "$wpid" || die "pgbench failed: $(cat "$W/pgbench.out")"
		wrote=$(awk '/^tps = / { printf "%.0f", $3 }' "$W/pgbench.out")
		# the set() round trip, commit included (µs in pgbench's log)
		commit="; set() round trip p50 $(awk '{ print $3 / 1000 }' "$W"/pgb.* | pctl 50) p99 $(awk '{ print $3 / 1000 }' "$W"/pgb.* | pctl 99) ms"
	else
		until grep -q '"event":"wrote"' "$W/js.out"; do sleep 0.1; done
		wl=$(grep '"event":"wrote"' "$W/js.out" | tail -1)
		wrote=$(awk -v n="$(jnum n <<<"$wl")" -v s="$(jnum s <<<"$wl")" 'BEGIN { printf "%.0f", n / s }')
	fi
	sleep 1
	if [ "$side" = db ]; then c1=$(db_ticks); else c1=$(ticks "$spid"); fi
	w1=$(ticks "$spid")
	clients_say "report"
	clients_wait report 1
	disturb_end "$W/foreign.all"
	deliveries=$(clients_sum report deliveries)
	# every client still open at the end of the live window, none closed
	[ "$(clients_sum report open)" -eq "$n" ] ||
		die "$side, $n clients: $(clients_sum report open) open at the end of the live window ($(clients_sum report closed_live) closed)"
	# and each was sent every update, less what was in flight at the report
	# (at most half a second of writes, a round's worth at 10,000 clients)
	awk -v a="$(clients_min report per_client_min)" -v b="$(clients_max report per_client_max)" -v r="$RATE" \
		'BEGIN { exit !(b - a <= 0.02 * b + r / 2) }' ||
		die "$side, $n clients: a client received $(clients_min report per_client_min) live updates, another $(clients_max report per_client_max)"
	elapsed=$(clients_max report elapsed_s)
	# p50/p99 over every delivery: the processes' histograms merged
	for i in $(seq 0 $((PROCS - 1))); do echo "report $W/h$i.json" >&$((10 + i)); done
	clients_wait report 2
	read -r _ p50 p99 < <("$NODE" "$JS_DIR/fanout_clients.js" --merge "$W"/h*.json)
	rate=$(awk -v d="$deliveries" -v e="$elapsed" 'BEGIN { printf "%.0f", d / e }')
	ccpu=$(awk -v t="$(clients_sum report cpu_ms)" -v e="$elapsed" 'BEGIN { printf "%.0f", t / 10 / e }')
	[ -z "${FANOUT_PERF:-}" ] || kill -INT "$perf_pid" 2>/dev/null || true
	cpu_s=$(awk -v t=$((c1 - c0)) -v hz="$HZ" 'BEGIN { printf "%.2f", t / hz }')
	wcpu=$(awk -v t=$((w1 - w0)) -v hz="$HZ" -v e="$elapsed" 'BEGIN { printf "%.0f", t / hz / e * 100 }')
	percore=$(awk -v d="$deliveries" -v c="$cpu_s" 'BEGIN { printf "%.0f", (c > 0 ? d / c : 0) }')
	pcserve=$(awk -v d="$deliveries" -v t=$((w1 - w0)) -v hz="$HZ" 'BEGIN { printf "%.0f", (t > 0 ? d * hz / t : 0) }')
	rss=$(status_kb "$spid" VmRSS)
	clients_stop
	if [ "$side" = js ]; then js_stop; else wait_no_connections a; fi

	log "fanout: $side n=$n rep=$rep: storm ${storm} ms; idle ${perconn} kB/conn; writes ${wrote}/s; delivered ${rate}/s p50 ${p50} ms p99 ${p99} ms; server CPU ${cpu_s} s (serving process ${wcpu}% of a core), ${percore} deliveries per server CPU s, ${pcserve} per serving process CPU s; RSS ${rss} kB${commit}; load clients ${ccpu}% of a core; foreign CPU $(tail -1 "$W/foreign.all")%"
	if [ "$rep" -gt 0 ]; then
		for f in storm perconn rate p50 p99 percore pcserve wcpu rss wrote; do
			echo "${!f}" >>"$W/$n.$side.$f"
		done
		tail -2 "$W/foreign.all" >>"$W/foreign"
	fi
}

declare -a CPIDS=()
for n in $CLIENTS; do
	for rep in $(seq 0 "$REPS"); do
		if [ $((rep % 2)) -eq 1 ]; then order=$(echo "$SIDES" | awk '{ for (i = NF; i > 0; i--) printf "%s ", $i }'); else order=$SIDES; fi
		for side in $order; do
			one_run "$side" "$n" "$rep"
		done
	done
	med() { median <"$W/$n.$1.$2"; }
	if [ -f "$W/$n.js.p50" ] && [ -f "$W/$n.db.p50" ]; then
		record fanout "$n clients: live latency p50" "$(med js p50)" "$(med db p50)" "ms (median of $REPS)" "$(ratio "$(med db p50)" "$(med js p50)")" "-" "info"
		if [ "$n" -eq 1000 ]; then
			record fanout "$n clients: live latency p99" "$(med js p99)" "$(med db p99)" "ms (median of $REPS)" "$(ratio "$(med db p99)" "$(med js p99)")" "db <= 50" "$(verdict "$(med db p99)" '<=' 50)"
		else
			record fanout "$n clients: live latency p99" "$(med js p99)" "$(med db p99)" "ms (median of $REPS)" "$(ratio "$(med db p99)" "$(med js p99)")" "-" "info"
		fi
		record fanout "$n clients: writes/s achieved" "$(med js wrote)" "$(med db wrote)" "updates/s (offered $RATE)" "-" "-" "info"
		record fanout "$n clients: deliveries/s" "$(med js rate)" "$(med db rate)" "updates/s to all clients" "$(ratio "$(med db rate)" "$(med js rate)")" "-" "info"
		r=$(ratio "$(med db pcserve)" "$(med js pcserve)")
		record fanout "$n clients: fan-out per core, serving process" "$(med js pcserve)" "$(med db pcserve)" "deliveries per CPU s (db: worker)" "$r" ">= 5" "$(verdict "$r" '>=' 5)"
		r=$(ratio "$(med db percore)" "$(med js percore)")
		record fanout "$n clients: fan-out per core, whole server" "$(med js percore)" "$(med db percore)" "deliveries per CPU s (db: all its processes)" "$r" "-" "info"
		record fanout "$n clients: serving process CPU" "$(med js wcpu)" "$(med db wcpu)" "% of a core (db: worker)" "-" "-" "info"
		record fanout "$n clients: serving process RSS" "$(med js rss)" "$(med db rss)" "kB (VmRSS, live)" "-" "-" "info"
		record fanout "$n clients: memory per idle connection" "$(med js perconn)" "$(med db perconn)" "kB (RssAnon growth / N)" "$(ratio "$(med db perconn)" "$(med js perconn)")" "db < 64" "$(verdict "$(med db perconn)" '<=' 63.99)"
		r=$(ratio "$(med db storm)" "$(med js storm)")
		record fanout "$n clients: reconnect storm, $KEYS keys each" "$(med js storm)" "$(med db storm)" "ms until all synced" "$r" "-" "info"
	fi
	for side in js db; do
		[ -f "$W/$n.$side.p99" ] && log "fanout: raw $n $side p99: $(paste -sd' ' "$W/$n.$side.p99"); per core: $(paste -sd' ' "$W/$n.$side.percore"); storm: $(paste -sd' ' "$W/$n.$side.storm")"
	done
done
record fanout "foreign CPU during runs (max)" "-" "$(disturb_max "$W/foreign")" "% of all CPUs" "-" "-" "info"

if [ -z "${BENCH_QUIET:-}" ]; then
	echo
	echo "fanout: baseline = a JavaScript server (reference Model, same updates, same clients); ratio = database / JavaScript"
	stream_conditions
	print_table fanout
fi
