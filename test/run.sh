#!/usr/bin/env bash
# Runs the whole test suite on a Debian 12 machine, as root or as a user
# with sudo:
#
#   1. installs what is missing (PostgreSQL 15 server and headers, OpenSSL
#      and libpq headers, IPC::Run, node.js and npm, make, gcc),
#   2. installs the npm test dependencies (npm ci in test/),
#   3. builds and installs the extension,
#   4. runs pg_regress (make installcheck) against a throwaway cluster on a
#      free loopback port with a private socket directory,
#   5. runs the TAP tests (make prove-installcheck: test/t/*.pl).
#
# The servers run as an unprivileged user (initdb refuses root): the
# "postgres" system user by default, or SB_TEST_USER.  Tests run in a
# copy of the tree that this user owns; clusters and temporary files are
# removed on every exit path.  The output ends with pg_regress's summary,
# then prove's.  The exit status is non-zero if anything failed.
#
# Environment: PG_CONFIG (default /usr/lib/postgresql/15/bin/pg_config),
# SB_TEST_USER (default postgres), PROVE_TESTS (default test/t/*.pl),
# PROVE_FLAGS, SB_TEST_SEED (seed of the random interop vectors).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
pgbin=/usr/lib/postgresql/15/bin
test_user=${SB_TEST_USER:-postgres}

say() { printf '\n=== %s\n' "$*"; }

# Privileges: root runs things directly, anyone else through sudo.
if [ "$(id -u)" -eq 0 ]; then
	SUDO=()
else
	SUDO=(sudo)
fi

# Runs a command as the test user, with the given environment.
as_test_user() {
	if [ "$(id -un)" = "$test_user" ]; then
		env HOME="${pgwork:-/tmp}" "$@"
	elif [ "$(id -u)" -eq 0 ]; then
		runuser -u "$test_user" -- env HOME="${pgwork:-/tmp}" "$@"
	else
		sudo -u "$test_user" -- env HOME="${pgwork:-/tmp}" "$@"
	fi
}

# ---------------------------------------------------------------------------
# 1. Packages (apt only when something is missing)
# ---------------------------------------------------------------------------

missing=()
[ -x "$pgbin/initdb" ] && [ -x "$pgbin/pgbench" ] || missing+=(postgresql-15)
[ -x /usr/lib/postgresql/15/bin/pg_config ] && [ -f /usr/include/postgresql/15/server/postgres.h ] ||
	missing+=(postgresql-server-dev-15)
[ -f /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
[ -f /usr/include/postgresql/libpq-fe.h ] || missing+=(libpq-dev)
command -v prove >/dev/null 2>&1 && perl -MIPC::Run -MJSON::PP -e1 >/dev/null 2>&1 ||
	missing+=(perl libipc-run-perl)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
[ -f /usr/include/stdio.h ] || missing+=(libc6-dev)
# keep an installed node.js (e.g. from NodeSource, which ships its own npm
# and conflicts with Debian's npm package)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
[ -f /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)

if [ ${#missing[@]} -gt 0 ]; then
	say "installing ${missing[*]}"
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		"${missing[@]}" ca-certificates
else
	say "all packages present, skipping apt"
fi
id "$test_user" >/dev/null 2>&1 || { echo "user $test_user does not exist" >&2; exit 1; }

# ---------------------------------------------------------------------------
# 2. npm test dependencies
# ---------------------------------------------------------------------------

say "npm ci (test/)"
(cd "$repo/test" && npm ci --no-audit --no-fund --loglevel=error)

# ---------------------------------------------------------------------------
# 3. Build and install
# ---------------------------------------------------------------------------

say "building and installing the extension"
make -C "$repo" -s PG_CONFIG="$PG_CONFIG"
"${SUDO[@]}" make -C "$repo" -s install PG_CONFIG="$PG_CONFIG"

# ---------------------------------------------------------------------------
# A copy of the tree the test user owns; cleanup on every exit path
# ---------------------------------------------------------------------------

# $work (ours) holds the logs; $pgwork (the test user's) holds the copy
# of the tree, the pg_regress cluster and its socket directory.
work=$(mktemp -d "${TMPDIR:-/tmp}/scuttlebutt-test.XXXXXX")
chmod 755 "$work"
pgwork="$work/pg"
cleanup() {
	local rc=$?
	set +e
	# every cluster started under $pgwork: the pg_regress one, and any TAP
	# node left running by an interrupted prove
	if [ -d "$pgwork" ]; then
		while IFS= read -r pidfile; do
			as_test_user PATH="$pgbin:$PATH" pg_ctl -D "$(dirname "$pidfile")" -m immediate -w stop >/dev/null 2>&1
		done < <("${SUDO[@]}" find "$pgwork" -name postmaster.pid 2>/dev/null)
	fi
	"${SUDO[@]}" rm -rf "$work"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

tree="$pgwork/tree"
mkdir -p "$tree"
tar -C "$repo" --exclude=./.git --exclude=./tmp_check --exclude=./results \
	--exclude=./regression.diffs --exclude=./regression.out -cf - . | tar -C "$tree" -xf -
"${SUDO[@]}" chown -R "$test_user" "$pgwork"
regress_data="$pgwork/regress-data"
sockdir="$pgwork/sock"

# ---------------------------------------------------------------------------
# 4. pg_regress against a throwaway cluster
# ---------------------------------------------------------------------------

free_port() {
	perl -MIO::Socket::INET -e '
		my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1", LocalPort => 0, Proto => "tcp")
			or die "no free port: $!\n";
		print $s->sockport, "\n";'
}

say "pg_regress (make installcheck)"
regress_log="$work/regress.out"
regress_rc=0
as_test_user PATH="$pgbin:$PATH" initdb -D "$regress_data" -A trust -E UTF8 --no-locale >"$work/initdb.log" 2>&1 ||
	{ cat "$work/initdb.log"; exit 1; }
as_test_user mkdir -p "$sockdir"
started=0
for attempt in 1 2 3 4 5; do
	port=$(free_port)
	as_test_user sh -c "cat >> '$regress_data/postgresql.conf'" <<EOF
# added by test/run.sh
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$sockdir'
shared_preload_libraries = 'scuttlebutt'
fsync = off
EOF
	if as_test_user PATH="$pgbin:$PATH" pg_ctl -D "$regress_data" -l "$pgwork/regress-server.log" -w -t 60 start >/dev/null; then
		started=1
		break
	fi
	echo "could not start the server on port $port (attempt $attempt), retrying"
done
if [ $started -ne 1 ]; then
	"${SUDO[@]}" tail -20 "$pgwork/regress-server.log" || true
	exit 1
fi

set +e
as_test_user PATH="$pgbin:$PATH" PGHOST="$sockdir" PGPORT="$port" \
	make -C "$tree" installcheck PG_CONFIG="$PG_CONFIG" 2>&1 | tee "$regress_log"
regress_rc=${PIPESTATUS[0]}
set -e
as_test_user PATH="$pgbin:$PATH" pg_ctl -D "$regress_data" -m fast -w stop >/dev/null 2>&1 || true
if [ "$regress_rc" -ne 0 ] && [ -f "$tree/regression.diffs" ]; then
	say "regression.diffs (first 300 lines; kept in $repo/regression.diffs)"
	head -n 300 "$tree/regression.diffs"
	cp "$tree/regression.diffs" "$tree/regression.out" "$repo/" 2>/dev/null || true
fi

# ---------------------------------------------------------------------------
# 5. TAP tests
# ---------------------------------------------------------------------------

say "TAP tests (make prove-installcheck)"
prove_log="$work/prove.out"
prove_args=(PG_CONFIG="$PG_CONFIG")
[ -n "${PROVE_TESTS:-}" ] && prove_args+=(PROVE_TESTS="$PROVE_TESTS")
[ -n "${PROVE_FLAGS:-}" ] && prove_args+=(PROVE_FLAGS="$PROVE_FLAGS")
set +e
as_test_user PATH="$pgbin:$PATH" ${SB_TEST_SEED:+SB_TEST_SEED="$SB_TEST_SEED"} \
	make -C "$tree" -s prove-installcheck "${prove_args[@]}" 2>&1 | tee "$prove_log"
prove_rc=${PIPESTATUS[0]}
set -e
if [ "$prove_rc" -ne 0 ] && [ -d "$tree/tmp_check/log" ]; then
	rm -rf "$repo/tmp_check/log" && mkdir -p "$repo/tmp_check" &&
		cp -r "$tree/tmp_check/log" "$repo/tmp_check/log" 2>/dev/null &&
		say "TAP logs kept in $repo/tmp_check/log"
	for f in "$tree"/tmp_check/log/regress_log_*; do
		[ -f "$f" ] || continue
		if grep -q '^\[[0-9:.]*\]([0-9.]*s) not ok\|exited with\|died' "$f"; then
			say "tail of $(basename "$f")"
			tail -n 60 "$f"
		fi
	done
fi

# ---------------------------------------------------------------------------
# Summaries: pg_regress's, then prove's, copied from their own output
# ---------------------------------------------------------------------------

say "summary"
echo "pg_regress:"
if grep -qE '^ *(All [0-9]+ tests passed|[0-9]+ of [0-9]+ tests failed)' "$regress_log"; then
	# the "=====" framed block, and the note pointing at the diffs
	awk '/^=+$/ { if (getline nxt > 0 && nxt ~ /tests (passed|failed)/) { grab = 1; print; print nxt; next } }
		grab && /^make/ { exit }
		grab { print }' "$regress_log"
else
	echo "(pg_regress printed no summary, exit status $regress_rc; see its output above)"
fi
echo "prove:"
if grep -qE '^(All tests successful\.|Test Summary Report)' "$prove_log"; then
	sed -n -E '/^(All tests successful\.|Test Summary Report)/,$p' "$prove_log" | grep -v '^make'
else
	echo "(prove printed no summary, exit status $prove_rc; see its output above)"
fi

if [ "$regress_rc" -ne 0 ] || [ "$prove_rc" -ne 0 ]; then
	exit 1
fi
exit 0
