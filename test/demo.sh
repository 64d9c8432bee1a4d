#!/usr/bin/env bash
# The quick-start demo: builds and installs the extension, starts two
# throwaway PostgreSQL servers with the replication worker and an
# unmodified JavaScript scuttlebutt peer, and shows one model replicated
# live between the three: B and A over libpq (add_peer), the JavaScript
# peer and A over the scuttlebutt stream protocol.  Servers and files are
# removed when it ends.
# Run as root or as a user with sudo:
#
#   bash test/demo.sh
set -euo pipefail
SB_WORK_NAME=demo
source "$(dirname "${BASH_SOURCE[0]}")/lib/setup.sh"

say "starting server A (scuttlebutt listener) and server B"
listen_a=$(free_port)
start_cluster "$pgwork/a" <<<"scuttlebutt.port = $listen_a
scuttlebutt.listen_addresses = '127.0.0.1'"
port_a=$port
start_cluster "$pgwork/b" <<<""
port_b=$port
sql_a() { as_test_user PATH="$pgbin:$PATH" psql -h "$sockdir" -p "$port_a" -X -q -At -v ON_ERROR_STOP=1 -d postgres "$@"; }
sql_b() { as_test_user PATH="$pgbin:$PATH" psql -h "$sockdir" -p "$port_b" -X -q -At -v ON_ERROR_STOP=1 -d postgres "$@"; }
echo "  A listens for scuttlebutt streams on 127.0.0.1:$listen_a"

say "each server creates the model 'users' and writes to it"
for s in a b; do "sql_$s" -c "CREATE EXTENSION scuttlebutt" -c "SELECT scuttlebutt.create_model('users')" >/dev/null; done
sql_a -c "SELECT scuttlebutt.set('users', 'alice', '{\"name\": \"Alice\", \"admin\": true}')" >/dev/null
sql_b -c "SELECT scuttlebutt.set('users', 'carol', '{\"name\": \"Carol\"}')" >/dev/null
echo "  A: $(sql_a -c "SELECT scuttlebutt.to_json('users')")"
echo "  B: $(sql_b -c "SELECT scuttlebutt.to_json('users')")"

conninfo_a="host=127.0.0.1 port=$port_a dbname=postgres"
say "B dials A over libpq: SELECT scuttlebutt.add_peer('users', '$conninfo_a')"
sql_b -c "SELECT scuttlebutt.add_peer('users', '$conninfo_a')" >/dev/null
echo "  synced: $(sql_b -c "SELECT scuttlebutt.wait_for_sync('users', '30s')")"
echo "  B: $(sql_b -c "SELECT scuttlebutt.to_json('users')")"

say "an unmodified JavaScript scuttlebutt Model connects to A's listener"
(cd "$repo/test" && exec node demo/js_peer.js 127.0.0.1 "$listen_a" >"$work/js.out" 2>&1) &
js_pid=$!
for _ in $(seq 1 200); do
	grep -q '^READY$' "$work/js.out" 2>/dev/null && break
	kill -0 "$js_pid" 2>/dev/null || break
	sleep 0.1
done
sed -n '1,/^READY$/p' "$work/js.out" | grep -v '^READY$'

say "a write on B reaches the JavaScript peer live: B pushes it to A over libpq, A relays it on the stream"
sql_b -c "SELECT scuttlebutt.set('users', 'from_b', '\"written on B\"')" >/dev/null
wait "$js_pid"
sed -n '/^READY$/,$p' "$work/js.out" | grep -v '^READY$'

say "converged"
sql_a -c "SELECT scuttlebutt.wait_for_sync('users', '30s')" >/dev/null
sql_b -c "SELECT scuttlebutt.wait_for_sync('users', '30s')" >/dev/null
a=$(sql_a -c "SELECT scuttlebutt.to_json('users')")
b=$(sql_b -c "SELECT scuttlebutt.to_json('users')")
echo "  A: $a"
echo "  B: $b"
sql_b -c "SELECT transport || ' ' || direction || ' ' || remote_addr || ' ' || state || ', sent ' || sent || ', received ' || received FROM scuttlebutt.peer_status" | sed 's/^/  B peer_status: /'
if [ "$a" = "$b" ] && [ "$(sql_a -c "SELECT scuttlebutt.clock('users')")" = "$(sql_b -c "SELECT scuttlebutt.clock('users')")" ]; then
	echo "  A and B hold the same state and the same clock."
else
	echo "A and B differ" >&2
	exit 1
fi
