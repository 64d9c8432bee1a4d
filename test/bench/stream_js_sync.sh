#!/usr/bin/env bash
# test/bench/stream_js_sync.sh: a JavaScript client's initial sync of
# $KEYS keys from the database's replication worker, against the same sync
# from a JavaScript server, side by side.
#
# Server "a" (the extension, its worker listening on 127.0.0.1) holds model
# m<KEYS>: keys k1..kN, values {"v": i, "s": "value i"}, written with
# set_many().  The JavaScript baseline, js/model_server.js, is a reference
# scuttlebutt Model loaded from scuttlebutt.export() of that model (the same
# updates: keys, values, timestamps, source) and served with
# net.createServer(s => s.pipe(model.createStream()).pipe(s)).
# The client, js/sync_client.js, is a fresh node process per run with an
# empty reference Model: net.connect(port), createStream({meta: model});
# the time is from just before net.connect() to the stream's 'sync' event,
# when it must hold all $KEYS keys (checked).  Both servers stay up between
# runs.  Repetition 0 warms up and is not kept; then $REPS runs per side,
# the order flipping every repetition.  Table: medians (ms), ratio
# database / JavaScript.  Target: <= 1 (the JavaScript pair takes about
# 1.6 s for 100,000 keys and degrades quadratically).  Info rows, less
# sensitive to other work on the machine than elapsed time: the CPU time
# per sync of the serving process (the database's replication worker, from
# /proc/<pid>/stat; the node process of the JavaScript server) and of the
# client (process.cpuUsage() over the same interval).
#
#   JS_SYNC_KEYS="100000" JS_SYNC_REPS=5 test/bench/stream_js_sync.sh
# JS_SYNC_KEYS may list several sizes ("50000 100000 200000") to show the
# growth of both sides.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$BENCH_DIR/stream_lib.sh"

SIZES=${JS_SYNC_KEYS:-100000}
REPS=${JS_SYNC_REPS:-5}
TARGET=1

[ -f "$BENCH_DIR/../node_modules/scuttlebutt/model.js" ] ||
	die "the npm packages are missing: run npm ci in test/"

HZ=$(getconf CLK_TCK)
# cpu_ticks PID: user + system CPU time of PID, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

W="$SERVERS_TMP/js_sync"
mkdir -p "$W"
stream_server a
: >"$W/foreign"

for n in $SIZES; do
	m="m$n"
	t0=$(date +%s)
	build_model a "$m" "$n"
	[ "$(model_count a "$m")" -eq "$n" ] || die "model $m holds $(model_count a "$m") updates, expected $n"
	sqlx1 a -c "SELECT * FROM scuttlebutt.export('$m')" >"$W/$m.dump"
	log "stream_js_sync: built $m in $(($(date +%s) - t0)) s; dump $(wc -c <"$W/$m.dump") bytes"

	"$NODE" "$JS_DIR/model_server.js" "$W/$m.dump" >"$W/$m.server.out" 2>&1 &
	js_pid=$!
	track_pid "$js_pid"
	for _ in $(seq 1 600); do
		grep -q '^READY ' "$W/$m.server.out" && break
		kill -0 "$js_pid" 2>/dev/null || die "model_server.js failed: $(cat "$W/$m.server.out")"
		sleep 0.1
	done
	read -r _ js_port js_keys < <(grep '^READY ' "$W/$m.server.out") || die "model_server.js did not start"
	[ "$js_keys" -eq "$n" ] || die "model_server.js holds $js_keys keys, expected $n"

	for f in db js db.server_cpu js.server_cpu db.client_cpu js.client_cpu; do : >"$W/$m.$f"; done
	for rep in $(seq 0 "$REPS"); do
		if [ $((rep % 2)) -eq 1 ]; then order="js db"; else order="db js"; fi
		line=""
		for side in $order; do
			if [ "$side" = db ]; then p=${LISTEN_OF[a]}; spid=$(worker_pid a); else p=$js_port; spid=$js_pid; fi
			sqlx a -c "CHECKPOINT" >/dev/null
			quiet_gate
			t0=$(cpu_ticks "$spid")
			disturb_begin
			out=$("$NODE" "$JS_DIR/sync_client.js" "$p" "$m" "$n") || die "sync from $side failed: $out"
			disturb_end "$W/foreign.all"
			scpu=$(awk -v t="$(( $(cpu_ticks "$spid") - t0 ))" -v hz="$HZ" 'BEGIN { printf "%.0f", t * 1000 / hz }')
			ms=$(sed -E 's/.*"ms":([0-9.e+-]+).*/\1/' <<<"$out")
			ccpu=$(sed -E 's/.*"cpu_ms":([0-9.e+-]+).*/\1/' <<<"$out")
			if [ "$rep" -gt 0 ]; then
				echo "$ms" >>"$W/$m.$side"
				echo "$scpu" >>"$W/$m.$side.server_cpu"
				echo "$ccpu" >>"$W/$m.$side.client_cpu"
				tail -1 "$W/foreign.all" >>"$W/foreign"
			fi
			line="$line $side $(printf '%.0f' "$ms") ms (server CPU $scpu ms, client CPU $(printf '%.0f' "$ccpu") ms, foreign CPU $(tail -1 "$W/foreign.all")%)"
		done
		log "stream_js_sync: $n keys rep=$rep:$line"
		# the database's connection is gone before the next run
		wait_no_connections a
	done
	kill "$js_pid" 2>/dev/null || true
	wait "$js_pid" 2>/dev/null || true

	bm=$(median <"$W/$m.js"); em=$(median <"$W/$m.db")
	r=$(ratio "$em" "$bm")
	record stream_js_sync "JS client initial sync, $n keys" "$bm" "$em" "ms (median of $REPS)" "$r" "<= $TARGET" "$(verdict "$r" '<=' "$TARGET")"
	record stream_js_sync "$n keys: CPU per sync, serving process" "$(median <"$W/$m.js.server_cpu")" "$(median <"$W/$m.db.server_cpu")" "CPU ms (median of $REPS)" "$(ratio "$(median <"$W/$m.db.server_cpu")" "$(median <"$W/$m.js.server_cpu")")" "-" "info"
	record stream_js_sync "$n keys: CPU per sync, JS client" "$(printf '%.0f' "$(median <"$W/$m.js.client_cpu")")" "$(printf '%.0f' "$(median <"$W/$m.db.client_cpu")")" "CPU ms (median of $REPS)" "-" "-" "info"
	log "stream_js_sync: raw $n keys ms JS server: $(paste -sd' ' "$W/$m.js") / database: $(paste -sd' ' "$W/$m.db")"
done

record stream_js_sync "foreign CPU during runs (max)" "-" "$(disturb_max "$W/foreign")" "% of all CPUs" "-" "-" "info"

if [ -z "${BENCH_QUIET:-}" ]; then
	echo
	echo "stream_js_sync: baseline = a JavaScript server (reference Model, same updates); ratio = database / JavaScript"
	stream_conditions
	print_table stream_js_sync
fi
