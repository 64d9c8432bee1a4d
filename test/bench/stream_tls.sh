#!/usr/bin/env bash
# test/bench/stream_tls.sh: what TLS costs the stream transport, side by
# side with plain TCP in one run.
#
# Two servers hold the same data: "a" listens in plain text, "t" with
# scuttlebutt.ssl = on (a certificate for localhost, signed by a CA this
# script makes with the openssl command).  A third, "b", receives.
#
#   - initial sync: js/sync_client.js, a fresh node process with an empty
#     reference Model, syncs model m<KEYS> (KEYS keys written with
#     set_many(), as stream_js_sync.sh builds it) from a's listener with
#     net.connect and from t's with tls.connect (verifying the
#     certificate); the time runs from just before the connect to the
#     'sync' event, the TLS handshake included.  Repetition 0 warms up;
#     then $REPS runs per side, the order flipping every repetition.
#   - live latency: as stream_latency.sh measures it, $N single set()
#     calls $GAP_MS apart on the sender, each timed from its timestamp to
#     the row trigger on b; b dials a (plain) or t (tls => true,
#     sslrootcert => the CA), one connection at a time, the order flipping
#     every repetition.
#
# Table: medians, ratio TLS / plain.  Targets: initial sync <= 1.3, live
# p50 <= 1.5 (the handshake and the record layer's encryption, with
# AES-GCM in hardware, should cost little next to JSON and the tables).
#
#   TLS_SYNC_KEYS=100000 TLS_SYNC_REPS=5 TLS_LATENCY_N=300 TLS_LATENCY_GAP_MS=20 TLS_LATENCY_REPS=3 test/bench/stream_tls.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$BENCH_DIR/stream_lib.sh"

KEYS=${TLS_SYNC_KEYS:-100000}
REPS=${TLS_SYNC_REPS:-5}
N=${TLS_LATENCY_N:-300}
GAP_MS=${TLS_LATENCY_GAP_MS:-20}
LAT_REPS=${TLS_LATENCY_REPS:-3}
TARGET_SYNC=1.3
TARGET_LAT=1.5

[ -f "$BENCH_DIR/../node_modules/scuttlebutt/model.js" ] ||
	die "the npm packages are missing: run npm ci in test/"
command -v openssl >/dev/null || die "the openssl command is missing"

W="$SERVERS_TMP/tls"
mkdir -p "$W"
chown postgres: "$W" 2>/dev/null || true
: >"$W/foreign"

# The CA and the listener's certificate, owned by the servers' user
ossl() { "${AS_OWNER[@]}" openssl "$@" >>"$W/openssl.log" 2>&1 || die "openssl $1 failed, see $W/openssl.log"; }
ossl req -x509 -new -nodes -newkey rsa:2048 -days 2 -subj "/CN=scuttlebutt bench CA" \
	-keyout "$W/ca.key" -out "$W/ca.crt" \
	-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
printf 'subjectAltName = DNS:localhost, IP:127.0.0.1\nextendedKeyUsage = serverAuth\n' >"$W/server.ext"
ossl req -new -nodes -newkey rsa:2048 -subj /CN=localhost -keyout "$W/server.key" -out "$W/server.csr"
ossl x509 -req -in "$W/server.csr" -CA "$W/ca.crt" -CAkey "$W/ca.key" -CAcreateserial -days 2 \
	-out "$W/server.crt" -extfile "$W/server.ext"
"${AS_OWNER[@]}" chmod 0600 "$W/server.key"

stream_server a
BENCH_EXTRA_CONF="${BENCH_EXTRA_CONF:-}
scuttlebutt.ssl = on
scuttlebutt.ssl_cert_file = '$W/server.crt'
scuttlebutt.ssl_key_file = '$W/server.key'" stream_server t
stream_server b
grep -q "TLS certificate" "$SERVERS_TMP/t/server.log" && die "t could not load its certificate: $(grep -A1 'TLS certificate' "$SERVERS_TMP/t/server.log")"

HZ=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# ---- a JavaScript client's initial sync ----

m="m$KEYS"
for s in a t; do
	build_model "$s" "$m" "$KEYS"
	[ "$(model_count "$s" "$m")" -eq "$KEYS" ] || die "model $m on $s holds $(model_count "$s" "$m") updates"
done
for f in tcp tls tcp.cpu tls.cpu; do : >"$W/sync.$f"; done
for rep in $(seq 0 "$REPS"); do
	if [ $((rep % 2)) -eq 1 ]; then order="tls tcp"; else order="tcp tls"; fi
	line=""
	for side in $order; do
		if [ "$side" = tls ]; then srv=t; ca="$W/ca.crt"; else srv=a; ca=""; fi
		sqlx "$srv" -c "CHECKPOINT" >/dev/null
		spid=$(worker_pid "$srv")
		quiet_gate
		t0=$(cpu_ticks "$spid")
		disturb_begin
		out=$(SYNC_TLS_CA="$ca" "$NODE" "$JS_DIR/sync_client.js" "${LISTEN_OF[$srv]}" "$m" "$KEYS") ||
			die "sync over $side failed: $out"
		disturb_end "$W/foreign"
		scpu=$(awk -v t="$(($(cpu_ticks "$spid") - t0))" -v hz="$HZ" 'BEGIN { printf "%.0f", t * 1000 / hz }')
		ms=$(sed -E 's/.*"ms":([0-9.e+-]+).*/\1/' <<<"$out")
		if [ "$rep" -gt 0 ]; then
			echo "$ms" >>"$W/sync.$side"
			echo "$scpu" >>"$W/sync.$side.cpu"
		fi
		line="$line $side $(printf '%.0f' "$ms") ms (worker CPU $scpu ms)"
		wait_no_connections "$srv"
	done
	log "stream_tls: initial sync of $KEYS keys rep=$rep:$line; foreign CPU $(tail -1 "$W/foreign")%"
done
bm=$(median <"$W/sync.tcp"); em=$(median <"$W/sync.tls"); r=$(ratio "$em" "$bm")
record stream_tls "JS client initial sync, $KEYS keys: TCP / TLS" "$(printf '%.0f' "$bm")" "$(printf '%.0f' "$em")" "ms (median of $REPS)" "$r" "<= $TARGET_SYNC" "$(verdict "$r" '<=' "$TARGET_SYNC")"
bc=$(median <"$W/sync.tcp.cpu"); ec=$(median <"$W/sync.tls.cpu")
record stream_tls "$KEYS keys: worker CPU per sync" "$bc" "$ec" "CPU ms (median of $REPS)" "$(ratio "$ec" "$bc")" "-" "info"
log "stream_tls: raw sync ms TCP: $(paste -sd' ' "$W/sync.tcp") / TLS: $(paste -sd' ' "$W/sync.tls")"

# ---- live latency, b dialing a (TCP) or t (TLS) ----

for s in a t b; do sqlx "$s" -c "SELECT scuttlebutt.create_model('lat')" >/dev/null; done
arrival_probe b

# connect SIDE: b's one stream, to a (tcp) or t (tls), synced and live.
connect() {
	local srv
	sqlx b -c "SELECT scuttlebutt.remove_peer(id) FROM scuttlebutt.peers" >/dev/null
	wait_no_connections a
	wait_no_connections t
	wait_no_connections b
	if [ "$1" = tls ]; then
		srv=t
		sqlx b -c "SELECT scuttlebutt.add_stream_peer('lat', 'localhost', ${LISTEN_OF[t]}, tls => true, sslrootcert => '$W/ca.crt')" >/dev/null
	else
		srv=a
		sqlx b -c "SELECT scuttlebutt.add_stream_peer('lat', '127.0.0.1', ${LISTEN_OF[a]})" >/dev/null
	fi
	for s in "$srv" b; do
		[ "$(sqlx1 "$s" -c "SELECT scuttlebutt.wait_for_sync('lat', '60s')")" = t ] || die "server $s did not sync"
	done
	[ "$(sqlx1 b -c "SELECT count(*) FROM scuttlebutt.peer_status WHERE state = 'live' AND tls = ('$1' = 'tls')")" = 1 ] ||
		die "no live $1 stream from b: $(sqlx1 b -c "SELECT string_agg(coalesce(state, '-') || ' ' || coalesce(last_error, ''), '; ') FROM scuttlebutt.peer_status")"
	SENDER=$srv
}

# latency SIDE REP: $N set() calls on the sender, then the p50 on b.
latency() {
	local side=$1 rep=$2 pre="$1_r$2_" tag="$W/$1.$2" got p50
	sqlx "$SENDER" -c "CHECKPOINT" >/dev/null
	sqlx b -c "CHECKPOINT" >/dev/null
	awk -v n="$N" -v pre="$pre" -v gap="$GAP_MS" 'BEGIN {
		for (i = 1; i <= n; i++) {
			printf "SELECT scuttlebutt.set('\''lat'\'', '\''%sk%d'\'', '\''{\"i\": %d}'\'');\n", pre, i, i
			printf "SELECT pg_sleep(%g);\n", gap / 1000
		} }' >"$tag.sql"
	quiet_gate
	disturb_begin
	sqlx "$SENDER" -At -f "$tag.sql" >"$tag.out" 2>&1 || die "set() on $SENDER failed: $(tail -3 "$tag.out")"
	disturb_end "$W/foreign"
	for _ in $(seq 1 600); do
		got=$(sqlx1 b -c "SELECT count(*) FROM public.bench_arrival WHERE key LIKE '${pre}%'")
		[ "$got" -eq "$N" ] && break
		sleep 0.1
	done
	[ "$got" -eq "$N" ] || die "only $got of $N updates reached b"
	sqlx1 b -c "SELECT arrived_ms - ts FROM public.bench_arrival WHERE key LIKE '${pre}%'" >"$tag.lat"
	p50=$(pctl 50 <"$tag.lat")
	echo "$p50" >>"$W/lat.$side.p50"
	pctl 99 <"$tag.lat" >>"$W/lat.$side.p99"
	log "stream_tls: live $side rep=$rep: p50 $p50 ms, p99 $(pctl 99 <"$tag.lat") ms; foreign CPU $(tail -1 "$W/foreign")%"
}

for f in tcp.p50 tls.p50 tcp.p99 tls.p99; do : >"$W/lat.$f"; done
for rep in $(seq 1 "$LAT_REPS"); do
	if [ $((rep % 2)) -eq 0 ]; then order="tls tcp"; else order="tcp tls"; fi
	for side in $order; do
		connect "$side"
		latency "$side" "$rep"
	done
done
bm=$(median <"$W/lat.tcp.p50"); em=$(median <"$W/lat.tls.p50"); r=$(ratio "$em" "$bm")
record stream_tls "live set() to b: p50, TCP / TLS" "$(printf '%.2f' "$bm")" "$(printf '%.2f' "$em")" "ms (median of $LAT_REPS runs x $N)" "$r" "<= $TARGET_LAT" "$(verdict "$r" '<=' "$TARGET_LAT")"
bm=$(median <"$W/lat.tcp.p99"); em=$(median <"$W/lat.tls.p99")
record stream_tls "live set() to b: p99, TCP / TLS" "$(printf '%.2f' "$bm")" "$(printf '%.2f' "$em")" "ms (median of $LAT_REPS runs x $N)" "$(ratio "$em" "$bm")" "-" "info"
record stream_tls "foreign CPU during runs (max)" "-" "$(disturb_max "$W/foreign")" "% of all CPUs" "-" "-" "info"

if [ -z "${BENCH_QUIET:-}" ]; then
	echo
	echo "stream_tls: baseline = the same over plain TCP; ratio = TLS / TCP"
	stream_conditions
	print_table stream_tls
fi
