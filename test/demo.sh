#!/usr/bin/env bash
# The quick-start demo: builds and installs the extension, starts two
# throwaway PostgreSQL servers and an unmodified JavaScript scuttlebutt
# peer, and shows one model replicated between the three.  Servers and
# files are removed when it ends.  Run as root or a user with sudo:
#
#   bash test/demo.sh
set -euo pipefail
SB_WORK_NAME=demo
source "$(dirname "${BASH_SOURCE[0]}")/lib/setup.sh"

say "starting two throwaway servers, A and B"
start_cluster "$pgwork/a" <<<""
port_a=$port
start_cluster "$pgwork/b" <<<""
port_b=$port
sql_a() { as_test_user PATH="$pgbin:$PATH" psql -h "$sockdir" -p "$port_a" -X -q -v ON_ERROR_STOP=1 -d postgres "$@"; }
sql_b() { as_test_user PATH="$pgbin:$PATH" psql -h "$sockdir" -p "$port_b" -X -q -v ON_ERROR_STOP=1 -d postgres "$@"; }

# sync FROM TO: send FROM's updates that TO lacks (history over TO's clock)
sync() {
	local from=$1 to=$2 clock
	clock=$("sql_$to" -At -c "SELECT scuttlebutt.clock('users')")
	"sql_$from" -At -c "SELECT h FROM scuttlebutt.history('users', '$clock') h" >"$work/delta"
	echo "  $from -> $to: $(wc -l <"$work/delta") update(s), applied: $(
		"sql_$to" -At -v lines="$(cat "$work/delta")" <<<"SELECT scuttlebutt.import('users', :'lines')")"
}

say "each server creates the model 'users' and writes to it"
for s in a b; do "sql_$s" -c "CREATE EXTENSION scuttlebutt" -c "SELECT scuttlebutt.create_model('users')" >/dev/null; done
sql_a -c "SELECT scuttlebutt.set('users', 'alice', '{\"name\": \"Alice\", \"admin\": true}')" \
	-c "SELECT scuttlebutt.set('users', 'bob', '{\"name\": \"Bob\"}')" >/dev/null
sql_b -c "SELECT scuttlebutt.set('users', 'carol', '{\"name\": \"Carol\"}')" \
	-c "SELECT scuttlebutt.set('users', 'bob', '{\"name\": \"Robert\"}')" >/dev/null
echo "A: $(sql_a -At -c "SELECT scuttlebutt.to_json('users')")"
echo "B: $(sql_b -At -c "SELECT scuttlebutt.to_json('users')")"

say "reconciling: each side sends the history the other's clock lacks"
sync a b
sync b a
echo "A: $(sql_a -At -c "SELECT scuttlebutt.to_json('users')")"
echo "B: $(sql_b -At -c "SELECT scuttlebutt.to_json('users')")"
echo "(bob: the later write wins on both sides)"

say "an unmodified JavaScript scuttlebutt Model loads A's dump, adds dave, and dumps back"
sql_a -At -c "SELECT * FROM scuttlebutt.export('users')" | (cd "$repo/test" && node demo/js_peer.js) >"$work/js.dump"
echo "  into A: $(sql_a -At -v lines="$(cat "$work/js.dump")" <<<"SELECT scuttlebutt.import('users', :'lines')") update(s) applied"
sync a b

say "converged"
a=$(sql_a -At -c "SELECT scuttlebutt.to_json('users')")
b=$(sql_b -At -c "SELECT scuttlebutt.to_json('users')")
echo "A: $a"
echo "B: $b"
sql_b -c "SELECT key, value, source FROM scuttlebutt.entries('users')"
if [ "$a" = "$b" ] && [ "$(sql_a -At -c "SELECT scuttlebutt.clock('users')")" = "$(sql_b -At -c "SELECT scuttlebutt.clock('users')")" ]; then
	echo "A and B hold the same state and the same clock."
else
	echo "A and B differ" >&2
	exit 1
fi
