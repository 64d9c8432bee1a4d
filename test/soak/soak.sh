#!/usr/bin/env bash
# test/soak/soak.sh: live load on a three-server mesh for $SOAK_SECONDS
# (default 3600) with JavaScript peers connecting and disconnecting all the
# while; samples the replication workers' memory and descriptors, the
# servers' connections and the monitoring views, and checks at the end
# that nothing leaked and that everything converged.
#
# The mesh: servers a, b, c (test/bench/servers_lib.sh: throw-away
# clusters on free loopback ports, removed on exit), each with the worker
# and a stream listener, models m (model), ev (events), val (value) on
# each, linked for every model by
#   a -> b  libpq (add_peer)        b -> c  stream (add_stream_peer)
#   c -> a  libpq                   a -> c  stream
# The load: on each server one pgbench client at $SOAK_RATE transactions
# per second (-R): set() on m (500 keys), a multi-statement transaction
# (two set()s and an emit()), emit() on ev, set_value() on val.
# JavaScript peers: test/soak/js_churn.js, $SOAK_JS_SLOTS unmodified
# scuttlebutt Models (model m), each connecting to the servers in turn,
# writing a key, staying 0.5-4 s, closing (one close in SLOTS abruptly)
# and dialing again.
#
# Every $SOAK_SAMPLE_SECONDS (default 30) a row per server goes to
# $SOAK_OUT/samples.csv: the worker's pid, RssAnon (kB), open descriptors
# (all, and sockets), pg_stat_activity rows (all, and TCP clients: the
# other servers' libpq sessions), peer_status rows (in, out, live), the
# sum of connection_errors' counts, and the JavaScript counters.
#
# Checks at the end (each PASS or FAIL in $SOAK_OUT/summary.txt; the exit
# status is 1 if any failed):
# - memory flat: per worker, the median RssAnon of the last quarter of the
#   samples is within 10% (or 2 MB, whichever is more) of the median of
#   the second quarter (the first quarter is warm-up);
# - no worker restart: each worker's pid is the same in every sample;
# - no leak: once the JavaScript peers and the load are gone, each
#   server's worker holds as many sockets as before they started, its
#   other descriptors (relation and WAL files PostgreSQL's file cache keeps
#   open) are at most 5 more than the most seen in the second quarter of
#   the run, pg_stat_activity and peer_status are back to their counts
#   before;
# - views consistent with what happened: on each server, the sum of
#   connection_errors' counts equals the connections closed there: the
#   JavaScript ones (opened and closed, as js_churn.js counted them) plus
#   the server-to-server sessions that ended (from the servers' logs),
#   and equals the "closing connection" lines of its log;
# - convergence: to_json('m'), the events of ev and get_value('val'), and
#   every model's clock are identical on the three servers, the number of
#   events equals the emit()s pgbench committed (none lost, none
#   duplicated), and a JavaScript client syncing from scratch from each
#   server gets that server's to_json('m');
# - no PANIC, no worker crash ("terminated by signal") in any log.
#
#   SOAK_SECONDS=180 test/soak/soak.sh          # a short run
#   nohup test/soak/soak.sh >soak.log 2>&1 &    # the hour
#
# Environment: PG_CONFIG, NODE, SOAK_SECONDS (3600), SOAK_SAMPLE_SECONDS
# (30), SOAK_RATE (20 tps per server), SOAK_JS_SLOTS (6), SOAK_OUT (the
# results directory, default /tmp/scuttlebutt-soak-<time>), BENCH_KEEP=1
# (keep the servers' directory and logs).
set -euo pipefail
SOAK_DIR=$(cd "$(dirname "$0")" && pwd)
. "$SOAK_DIR/../bench/lib.sh"
export BENCH_SHARED_BUFFERS=${BENCH_SHARED_BUFFERS:-128MB}
export BENCH_TMP_PREFIX=${BENCH_TMP_PREFIX:-/tmp/scuttlebutt-soak-servers}
. "$BENCH_DIR/stream_lib.sh"

SECONDS_TOTAL=${SOAK_SECONDS:-3600}
SAMPLE=${SOAK_SAMPLE_SECONDS:-30}
RATE=${SOAK_RATE:-20}
export SOAK_JS_SLOTS=${SOAK_JS_SLOTS:-6}
OUT=${SOAK_OUT:-/tmp/scuttlebutt-soak-$(date -u +%Y%m%dT%H%M%S)}
mkdir -p "$OUT"
CSV="$OUT/samples.csv"
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
FAILED=0
NAMES=(a b c)
MODELS=(m ev val)

# check OK MESSAGE: a PASS/FAIL line in the summary
check() {
	if [ "$1" = 1 ]; then
		echo "PASS $2" | tee -a "$SUMMARY" >&2
	else
		echo "FAIL $2" | tee -a "$SUMMARY" >&2
		FAILED=1
	fi
}

for s in "${NAMES[@]}"; do
	BENCH_EXTRA_CONF="max_connections = 40
log_min_messages = warning
log_line_prefix = '%m [%p] '" stream_server "$s"
	sqlx "$s" -c "SELECT scuttlebutt.create_model('m'), scuttlebutt.create_model('ev', 'events'), scuttlebutt.create_model('val', 'value')" >/dev/null
done
conninfo() { echo "host=127.0.0.1 port=${PORT_OF[$1]} dbname=postgres user=postgres"; }
for m in "${MODELS[@]}"; do
	sqlx a -c "SELECT scuttlebutt.add_peer('$m', '$(conninfo b)')" >/dev/null
	sqlx b -c "SELECT scuttlebutt.add_stream_peer('$m', '127.0.0.1', ${LISTEN_OF[c]})" >/dev/null
	sqlx c -c "SELECT scuttlebutt.add_peer('$m', '$(conninfo a)')" >/dev/null
	sqlx a -c "SELECT scuttlebutt.add_stream_peer('$m', '127.0.0.1', ${LISTEN_OF[c]})" >/dev/null
done
for s in "${NAMES[@]}"; do
	for m in "${MODELS[@]}"; do
		[ "$(sqlx1 "$s" -c "SELECT scuttlebutt.wait_for_sync('$m', '60s')")" = t ] ||
			die "server $s: model $m not in sync after 60 s: $(sqlx1 "$s" -c "SELECT string_agg(direction || ' ' || transport || ' ' || coalesce(state, '-') || ' ' || coalesce(last_error, ''), '; ') FROM scuttlebutt.peer_status")"
	done
done
log "soak: mesh a-b-c connected; output in $OUT"

declare -A WPID=()
for s in "${NAMES[@]}"; do
	WPID[$s]=$(worker_pid "$s")
	[ -n "${WPID[$s]}" ] || die "no worker on $s"
done

# fds PID / sockets PID: open descriptors of PID, all / sockets only
fds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
sockets() { ls -l "/proc/$1/fd" 2>/dev/null | grep -c 'socket:' || true; }

# stats NAME: one line "pid,conns,tcp_clients,peer_in,peer_out,peer_live,errors,updates"
stats() {
	sqlx1 "$1" -F, -c "SELECT
		(SELECT pid FROM pg_stat_activity WHERE backend_type = 'scuttlebutt replication worker' ORDER BY pid LIMIT 1),
		(SELECT count(*) FROM pg_stat_activity),
		(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND client_addr IS NOT NULL),
		(SELECT count(*) FILTER (WHERE direction = 'in') FROM scuttlebutt.peer_status),
		(SELECT count(*) FILTER (WHERE direction = 'out') FROM scuttlebutt.peer_status),
		(SELECT count(*) FILTER (WHERE state = 'live') FROM scuttlebutt.peer_status),
		(SELECT coalesce(sum(count), 0) FROM scuttlebutt.connection_errors),
		(SELECT coalesce(sum(updates), 0) FROM scuttlebutt.models)"
}

JS_OUT="$OUT/js_counts.json"
# js_field NAME FIELD: a JavaScript counter for server NAME
js_field() {
	"$NODE" -e "try { const c = JSON.parse(require('fs').readFileSync('$JS_OUT'))['$1']; console.log(c ? c['$2'] : 0) } catch (e) { console.log(0) }"
}

echo "t_s,server,worker_pid,rss_anon_kb,fds,sockets,pg_conns,tcp_clients,peer_in,peer_out,peer_live,conn_errors,updates,js_connects,js_open" >"$CSV"
T0=$(date +%s)
# take_sample: a row per server
take_sample() {
	local t s st pid
	t=$(($(date +%s) - T0))
	for s in "${NAMES[@]}"; do
		st=$(stats "$s")
		pid=${st%%,*}
		[ -n "$pid" ] || pid=0
		echo "$t,$s,$pid,$(status_kb "$pid" RssAnon 2>/dev/null || echo 0),$(fds "$pid"),$(sockets "$pid"),${st#*,},$(js_field "$s" connects),$(js_field "$s" open)" >>"$CSV"
	done
}

# baseline before the load and the JavaScript peers
take_sample
declare -A BASE=()
for s in "${NAMES[@]}"; do
	BASE[$s]=$(grep ",$s," "$CSV" | tail -1)
done

# the load (srv: the server's number, in the values written)
mkdir -p "$OUT/pgb"
	cat >"$OUT/pgb/set.pgb" <<'PGB'
\set k random(1, 500)
\set v random(1, 1000000000)
SELECT scuttlebutt.set('m', 'k' || :k, jsonb_build_object('v', :v, 'at', :srv));
PGB
	cat >"$OUT/pgb/multi.pgb" <<'PGB'
\set k random(1, 500)
\set v random(1, 1000000000)
BEGIN;
SELECT scuttlebutt.set('m', 'k' || :k, jsonb_build_object('v', :v, 'at', :srv));
SELECT scuttlebutt.set('m', 'x' || :k, jsonb_build_object('v', :v, 'at', :srv));
SELECT scuttlebutt.emit('ev', 'multi', jsonb_build_object('v', :v, 'at', :srv));
COMMIT;
PGB
	cat >"$OUT/pgb/emit.pgb" <<'PGB'
\set v random(1, 1000000000)
SELECT scuttlebutt.emit('ev', 'single', jsonb_build_object('v', :v, 'at', :srv));
PGB
	cat >"$OUT/pgb/val.pgb" <<'PGB'
\set v random(1, 1000000000)
SELECT scuttlebutt.set_value('val', jsonb_build_object('v', :v, 'at', :srv));
PGB
srv=0
for s in "${NAMES[@]}"; do
	srv=$((srv + 1))
	"$PGBIN/pgbench" -n -h "$SERVERS_TMP/sock" -p "${PORT_OF[$s]}" -U postgres -c 1 -R "$RATE" -T "$SECONDS_TOTAL" \
		-D srv="$srv" -f "$OUT/pgb/set.pgb@6" -f "$OUT/pgb/multi.pgb@2" -f "$OUT/pgb/emit.pgb@1" -f "$OUT/pgb/val.pgb@1" \
		postgres >"$OUT/pgbench.$s.log" 2>&1 &
	eval "PGB_$s=$!"
	track_pid "$!"
done
# the JavaScript peers
"$NODE" "$SOAK_DIR/js_churn.js" "$JS_OUT" m a:"${LISTEN_OF[a]}" b:"${LISTEN_OF[b]}" c:"${LISTEN_OF[c]}" >"$OUT/js_churn.log" 2>&1 &
JS_PID=$!
track_pid "$JS_PID"
log "soak: load at $RATE tps per server and $SOAK_JS_SLOTS JavaScript peers for $SECONDS_TOTAL s, a sample every $SAMPLE s"

END=$((T0 + SECONDS_TOTAL))
NEXT=$((T0 + SAMPLE))
while [ "$(date +%s)" -lt "$END" ]; do
	now=$(date +%s)
	if [ "$now" -ge "$NEXT" ]; then
		take_sample
		NEXT=$((NEXT + SAMPLE))
		kill -0 "$JS_PID" 2>/dev/null || die "the JavaScript peers exited early: $(tail -5 "$OUT/js_churn.log")"
	fi
	sleep 1
done

# stop: the JavaScript peers end their connections, the load finishes
kill -TERM "$JS_PID"
for s in "${NAMES[@]}"; do
	eval "wait \$PGB_$s" || log "pgbench on $s exited with an error: $(tail -3 "$OUT/pgbench.$s.log")"
done
wait "$JS_PID" || die "js_churn.js failed: $(tail -5 "$OUT/js_churn.log")"
log "soak: load and JavaScript peers stopped; waiting for convergence"

# convergence
state() {
	sqlx1 "$1" -c "SELECT md5(scuttlebutt.to_json('m')::text)
		|| ' ' || (SELECT md5(coalesce(string_agg(ts || source || event || data::text, ',' ORDER BY ts, source), '')) FROM scuttlebutt.events('ev'))
		|| ' ' || md5(coalesce(scuttlebutt.get_value('val')::text, ''))
		|| ' ' || md5(scuttlebutt.clock('m')::jsonb::text || scuttlebutt.clock('ev')::jsonb::text || scuttlebutt.clock('val')::jsonb::text)"
}
t_heal=$(date +%s%3N)
converged=0
for _ in $(seq 1 600); do
	if [ "$(state a)" = "$(state b)" ] && [ "$(state b)" = "$(state c)" ]; then
		converged=1
		break
	fi
	sleep 0.1
done
conv_ms=$(($(date +%s%3N) - t_heal))
check "$converged" "convergence: to_json('m'), events('ev'), get_value('val') and the three clocks identical on a, b, c (${conv_ms} ms after the load stopped)"
[ "$converged" = 1 ] || for s in "${NAMES[@]}"; do log "state $s: $(state "$s")"; done

emits=0
for s in "${NAMES[@]}"; do
	n=$(awk '/^SQL script [0-9]+: / { want = ($0 ~ /(multi|emit)\.pgb/) }
		want && /^ - [0-9]+ transactions/ { n += $2; want = 0 } END { print n + 0 }' "$OUT/pgbench.$s.log")
	emits=$((emits + n))
done
events=$(sqlx1 a -c "SELECT count(*) FROM scuttlebutt.events('ev')")
check "$([ "$events" = "$emits" ] && echo 1 || echo 0)" "events: $events on each server, $emits emit()s committed by pgbench"
SOAK_JS_MODE=final "$NODE" "$SOAK_DIR/js_churn.js" "$JS_OUT" m a:"${LISTEN_OF[a]}" b:"${LISTEN_OF[b]}" c:"${LISTEN_OF[c]}" >>"$OUT/js_churn.log" 2>&1 ||
	log "the final JavaScript clients failed: $(tail -5 "$OUT/js_churn.log")"
for s in "${NAMES[@]}"; do
	ok=$("$NODE" -e "
		const norm = (v) => JSON.stringify(v, (k, x) => x && typeof x === 'object' && !Array.isArray(x) ? Object.keys(x).sort().reduce((o, k2) => (o[k2] = x[k2], o), {}) : x);
		const js = JSON.parse(require('fs').readFileSync('$JS_OUT.final.$s.json'));
		const db = JSON.parse(process.argv[1]);
		console.log(norm(js) === norm(db) ? 1 : 0)" "$(sqlx1 "$s" -c "SELECT scuttlebutt.to_json('m')")")
	check "$ok" "a JavaScript client synced from scratch from $s holds $s's to_json('m')"
done

# leaks: back to the baseline once the JavaScript peers are gone
for s in "${NAMES[@]}"; do
	IFS=, read -r _ _ bpid _ bfds bsock bconns btcp bin bout _ _ _ _ _ <<<"${BASE[$s]}"
	# descriptors other than sockets (relation and WAL files): at most 5
	# more than the most seen in the second quarter of the run
	nf=$(awk -F, -v s="$s" '$2 == s { print $5 - $6 }' "$CSV" | awk '{ v[NR] = $1 } END { q = int(NR / 4); m = 0; for (i = q + 1; i <= 2 * q; i++) if (v[i] > m) m = v[i]; print m }')
	ok=0
	for _ in $(seq 1 300); do
		IFS=, read -r pid conns tcp pin pout _ _ _ <<<"$(stats "$s")"
		f=$(fds "$pid"); k=$(sockets "$pid")
		if [ "$k" = "$bsock" ] && [ $((f - k)) -le $((nf + 5)) ] && [ "$conns" = "$bconns" ] &&
			[ "$tcp" = "$btcp" ] && [ "$pin" = "$bin" ] && [ "$pout" = "$bout" ]; then
			ok=1
			break
		fi
		sleep 0.1
	done
	check "$ok" "server $s back to its baseline: worker sockets $k (before $bsock), other descriptors $((f - k)) (before the load $((bfds - bsock)), second quarter at most $nf), pg_stat_activity $conns (before $bconns), TCP clients $tcp (before $btcp), peer_status in $pin / out $pout (before $bin / $bout)"
done
take_sample

# the monitoring views against what happened: every connection closed on
# a server is counted once in its connection_errors and logged once
# ("closing connection"): the JavaScript peers' (as js_churn.js counted
# them, plus the final clients), and the server-to-server stream and libpq
# sessions that ended (a deadlock with a local transaction closes the
# worker's session, which the other side then sees closed): those this
# server dialed, logged here as "closing connection to", and those dialed
# to its listener, logged so by the server that dialed
for s in "${NAMES[@]}"; do
	cp "$SERVERS_TMP/$s/server.log" "$OUT/server.$s.log"
done
for s in "${NAMES[@]}"; do
	connects=$(js_field "$s" connects); ended=$(js_field "$s" ended); reset=$(js_field "$s" reset); errors=$(js_field "$s" errors)
	# + 1: the final client that synced from scratch
	closed=$((ended + reset + errors + 1))
	out=$(grep -c 'closing connection to ' "$OUT/server.$s.log" || true)
	in=$(cat "$OUT"/server.*.log | grep -c "closing connection to 127.0.0.1:${LISTEN_OF[$s]}:" || true)
	logged=$(grep -c 'closing connection' "$OUT/server.$s.log" || true)
	errs=$(sqlx1 "$s" -c "SELECT coalesce(sum(count), 0) FROM scuttlebutt.connection_errors")
	reasons=$(sqlx1 "$s" -c "SELECT coalesce(string_agg(reason || '=' || count, ', ' ORDER BY reason), '') FROM scuttlebutt.connection_errors")
	echo "server $s: JavaScript connections $connects (ended $ended, reset $reset, errors $errors) + 1 final; server sessions closed: $out dialed, $in dialed to it; deadlocks logged: $(grep -c 'deadlock detected while serving' "$OUT/server.$s.log" || true); connection_errors: $reasons" >>"$SUMMARY"
	check "$([ "$errs" = $((closed + out + in)) ] && [ "$logged" = "$errs" ] && [ "$connects" = $((closed - 1)) ] && echo 1 || echo 0)" \
		"server $s: connection_errors counts $errs closed connections = $closed JavaScript ($((connects + 1)) opened) + $out server sessions it dialed + $in dialed to it; $logged logged"
done

# workers: never restarted, memory flat
for s in "${NAMES[@]}"; do
	pids=$(awk -F, -v s="$s" '$2 == s { print $3 }' "$CSV" | sort -u | wc -l)
	check "$([ "$pids" = 1 ] && echo 1 || echo 0)" "server $s: one worker pid in all samples ($pids distinct)"
	awk -F, -v s="$s" '$2 == s { print $4 }' "$CSV" >"$OUT/anon.$s"
	n=$(wc -l <"$OUT/anon.$s")
	q=$((n / 4))
	q2=$(sed -n "$((q + 1)),$((2 * q))p" "$OUT/anon.$s" | median)
	q4=$(tail -n "$q" "$OUT/anon.$s" | median)
	first=$(head -1 "$OUT/anon.$s"); max=$(sort -n "$OUT/anon.$s" | tail -1); last=$(tail -1 "$OUT/anon.$s")
	ok=$(awk -v a="$q2" -v b="$q4" 'BEGIN { lim = a * 0.10; if (lim < 2048) lim = 2048; print (b - a <= lim) ? 1 : 0 }')
	check "$ok" "server $s: worker RssAnon flat: second-quarter median $q2 kB, last-quarter median $q4 kB (first $first, max $max, last $last kB; $n samples)"
done

# logs
for s in "${NAMES[@]}"; do
	bad=$(grep -c -E 'PANIC|terminated by signal|was terminated' "$OUT/server.$s.log" || true)
	check "$([ "$bad" = 0 ] && echo 1 || echo 0)" "server $s: no PANIC or crashed process in the log ($bad lines)"
done

{
	echo
	echo "soak: $SECONDS_TOTAL s, $RATE tps per server, $SOAK_JS_SLOTS JavaScript peers; samples every $SAMPLE s in $CSV"
	servers_conditions
	for s in "${NAMES[@]}"; do
		echo "pgbench $s: $(grep -E 'number of transactions actually processed' "$OUT/pgbench.$s.log")"
	done
	echo "RssAnon (kB) per sample, per worker:"
	printf '%8s %10s %10s %10s %6s %6s %6s\n' t_s a b c fds_a fds_b fds_c
	paste -d, <(awk -F, '$2 == "a" { print $1 "," $4 "," $5 }' "$CSV") <(awk -F, '$2 == "b" { print $4 "," $5 }' "$CSV") <(awk -F, '$2 == "c" { print $4 "," $5 }' "$CSV") |
		awk -F, '{ printf "%8s %10s %10s %10s %6s %6s %6s\n", $1, $2, $4, $6, $3, $5, $7 }'
} >>"$SUMMARY"
echo >&2
cat "$SUMMARY" >&2
exit "$FAILED"
