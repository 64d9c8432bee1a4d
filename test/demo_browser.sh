#!/usr/bin/env bash
# The browser demo: builds and installs the extension, starts a throwaway
# PostgreSQL server whose scuttlebutt listener accepts WebSockets from the
# demo page's origin, and serves a page bundled with browserify from the
# unmodified npm packages (a scuttlebutt Model over websocket-stream).  A
# Node.js peer connects over TCP and a headless Chromium opens the page:
# an edit in the browser shows up in SQL and at the Node.js peer, edits in
# SQL and at the Node.js peer show up in the browser, all live.  Run from
# a terminal, it then prints the page's URL and keeps serving it, for you
# to open and edit, until Enter.  Servers and files are removed when it
# ends.  Run as root or as a user with sudo:
#
#   bash test/demo_browser.sh
set -euo pipefail
SB_WORK_NAME=demo-browser
source "$(dirname "${BASH_SOURCE[0]}")/lib/setup.sh"

say "starting a server whose listener takes WebSockets from the page's origin"
listen=$(free_port)
http=$(free_port)
start_cluster "$pgwork/a" <<<"scuttlebutt.port = $listen
scuttlebutt.listen_addresses = '127.0.0.1'
scuttlebutt.websocket_origins = 'http://127.0.0.1:$http'"
sql() { as_test_user PATH="$pgbin:$PATH" psql -h "$sockdir" -p "$port" -X -q -At -v ON_ERROR_STOP=1 -d postgres "$@"; }
echo "  postgresql.conf: scuttlebutt.port = $listen, scuttlebutt.websocket_origins = 'http://127.0.0.1:$http'"

say "the model 'users', written in SQL"
sql -c "CREATE EXTENSION scuttlebutt" -c "SELECT scuttlebutt.create_model('users')" >/dev/null
sql -c "SELECT scuttlebutt.set('users', 'alice', '{\"name\": \"Alice\", \"from\": \"sql\"}')" >/dev/null
echo "  $(sql -c "SELECT scuttlebutt.to_json('users')")"

say "the page, a Node.js peer and a headless Chromium"
site="$work/site"
mkdir -p "$site"
js_rc=0
(cd "$repo/test" && PATH="$pgbin:$PATH" node demo/browser_demo.js "$listen" "$http" "$site" \
	"host=127.0.0.1 port=$port dbname=postgres user=$test_user") || js_rc=$?
[ "$js_rc" -eq 0 ] || { echo "the browser demo failed" >&2; exit 1; }

say "the database holds"
echo "  $(sql -c "SELECT scuttlebutt.to_json('users')")"
