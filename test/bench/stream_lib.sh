# test/bench/stream_lib.sh: helpers of the replication (stream) benchmarks.
#
# Sourced by stream_js_sync.sh, stream_server_sync.sh, stream_latency.sh and
# stream_memory.sh, after lib.sh.  Those need several servers with the
# replication worker: servers_lib.sh starts them (and removes them on
# exit); stream_server NAME adds a scuttlebutt listener on 127.0.0.1, at
# port LISTEN_OF[NAME].  The shared cluster of run_all.sh is not used (it
# has no listener).
#
# Like the other scripts, every measured run waits for the machine to quiet
# down (lib.sh's quiet_gate: BENCH_MAX_FOREIGN, BENCH_QUIET_WAIT) and
# measures the CPU share used by anything else (disturb_begin/_end; the
# "foreign CPU" rows), over all the servers and helpers started here.
#
# Environment (besides lib.sh's and servers_lib.sh's):
#   NODE                      node.js binary (default: node)

NODE=${NODE:-node}
JS_DIR="$BENCH_DIR/js"
SERVERS_KIND=stream
. "$BENCH_DIR/servers_lib.sh"
declare -A LISTEN_OF=()

# stream_server NAME: a cluster with the replication worker attached to
# database postgres, listening for stream peers on 127.0.0.1, and the
# extension created there.
stream_server() {
	start_server "$1" "max_connections = 20
shared_preload_libraries = 'scuttlebutt'
scuttlebutt.database = 'postgres'
scuttlebutt.listen_addresses = '127.0.0.1'" scuttlebutt.port stream_listening
	LISTEN_OF[$1]=${EXTRA_PORT_OF[$1]}
	sqlx "$1" -c "CREATE EXTENSION scuttlebutt" >/dev/null
	log "server $1: port ${PORT_OF[$1]}, scuttlebutt listener 127.0.0.1:${LISTEN_OF[$1]}"
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

# stream_conditions: bench_conditions for our servers (first server).
stream_conditions() {
	servers_conditions
	printf 'node %s; scuttlebutt (npm) %s\n' "$("$NODE" --version)" \
		"$("$NODE" -p "require('$BENCH_DIR/../node_modules/scuttlebutt/package.json').version" 2>/dev/null || echo '?')"
}

# arrival_probe SERVER: public.bench_arrival gets a row (key, ts, wall
# clock ms) the first time each key's update is stored on SERVER, by
# whichever path it came (the latency benchmarks' far end).
arrival_probe() {
	sqlx "$1" <<'SQL' >/dev/null
CREATE TABLE public.bench_arrival (key text PRIMARY KEY, ts float8 NOT NULL, arrived_ms float8 NOT NULL);
CREATE FUNCTION public.bench_note_arrival() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.bench_arrival (key, ts, arrived_ms)
		VALUES (NEW.key, NEW.ts, extract(epoch FROM clock_timestamp()) * 1000)
		ON CONFLICT (key) DO NOTHING;
	RETURN NULL;
END
$$;
CREATE TRIGGER bench_arrival AFTER INSERT OR UPDATE ON scuttlebutt.updates
	FOR EACH ROW EXECUTE FUNCTION public.bench_note_arrival();
SQL
}
