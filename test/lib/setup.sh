#!/usr/bin/env bash
# Shared by test/run.sh (the test suite) and test/demo.sh (the demo): on a
# Debian 12 or 13 machine, as root or as a user with sudo,
#   - installs what is missing (the PostgreSQL server and headers of the
#     major version in use, OpenSSL and libpq headers, IPC::Run, node.js
#     and npm, make, gcc, clang and libFuzzer, Chromium and certutil),
#   - installs the npm dependencies (npm ci in test/),
#   - builds and installs the extension,
#   - makes a work directory ($work; $pgwork belongs to the unprivileged
#     user that runs the servers, since initdb refuses root) that is
#     removed, with every cluster started under it, on any exit,
# and defines say, as_test_user, free_port and start_cluster.
#
# Environment: PG_CONFIG (default /usr/lib/postgresql/N/bin/pg_config, N
# being the distribution's PostgreSQL: 15 on Debian 12 "bookworm", 17 on
# Debian 13 "trixie"), SB_TEST_USER (default postgres),
# SB_NODE_MODULES_READY and SB_SETUP_PACKAGES_ONLY (see below).  The
# packages come from PG_CONFIG's major version.  A PG_CONFIG elsewhere (a
# relocated copy of the server, to test a build without replacing the
# installed one) also supplies the server binaries.
# Source it with "set -euo pipefail" in effect.

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
test_user=${SB_TEST_USER:-postgres}

say() { printf '\n=== %s\n' "$*"; }

# A LANG or LC_* naming a locale that is not generated (common on a fresh
# root, or over ssh from another machine) makes perl, apt and psql warn on
# every call: fall back to C.UTF-8, which glibc always has.
if [ -n "$(locale 2>&1 >/dev/null)" ]; then
	echo "note: locale ${LC_ALL:-${LANG:-}} is not available here, using C.UTF-8" >&2
	export LC_ALL=C.UTF-8
	unset LANGUAGE
fi

# The PostgreSQL major version: PG_CONFIG's if given (from its path, or
# by asking it), else the distribution's.
if [ -n "${PG_CONFIG:-}" ]; then
	if [[ $PG_CONFIG =~ /postgresql/([0-9]+)/bin/pg_config$ ]]; then
		pg_major=${BASH_REMATCH[1]}
	else
		pg_major=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
	fi
else
	case "$(. /etc/os-release && echo "${VERSION_CODENAME:-}")" in
		trixie) pg_major=17 ;;
		*) pg_major=15 ;;
	esac
	PG_CONFIG=/usr/lib/postgresql/$pg_major/bin/pg_config
fi
pgbin=$(dirname "$PG_CONFIG")

# Privileges: root runs things directly, anyone else through sudo.
if [ "$(id -u)" -eq 0 ]; then
	SUDO=()
else
	SUDO=(sudo)
fi

# Runs a command as the test user, with the given environment, from a
# directory that user can enter (PostgreSQL's tools complain on every call
# when the working directory, e.g. a checkout under /root, is not).
as_test_user() (
	cd "${pgwork:-/}" 2>/dev/null || cd /
	if [ "$(id -un)" = "$test_user" ]; then
		env HOME="${pgwork:-/tmp}" "$@"
	elif [ "$(id -u)" -eq 0 ]; then
		runuser -u "$test_user" -- env HOME="${pgwork:-/tmp}" "$@"
	else
		sudo -u "$test_user" -- env HOME="${pgwork:-/tmp}" "$@"
	fi
)

# ---------------------------------------------------------------------------
# 1. Packages (apt only when something is missing)
# ---------------------------------------------------------------------------

missing=()
[ -x "$pgbin/initdb" ] && [ -x "$pgbin/pgbench" ] || missing+=("postgresql-$pg_major")
[ -x "/usr/lib/postgresql/$pg_major/bin/pg_config" ] &&
	[ -f "/usr/include/postgresql/$pg_major/server/postgres.h" ] ||
	missing+=("postgresql-server-dev-$pg_major")
[ -f /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
[ -f /usr/include/postgresql/libpq-fe.h ] || missing+=(libpq-dev)
command -v prove >/dev/null 2>&1 && perl -MIPC::Run -MJSON::PP -MCpanel::JSON::XS -e1 >/dev/null 2>&1 ||
	missing+=(perl libipc-run-perl libcpanel-json-xs-perl)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
[ -f /usr/include/stdio.h ] || missing+=(libc6-dev)
# keep an installed node.js (e.g. from NodeSource, which ships its own npm
# and conflicts with Debian's npm package)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
# SB_NODE_MODULES_READY=1: test/node_modules is installed beforehand
# (.ci/chroot.sh can copy the host's), so npm is not needed
if [ -n "${SB_NODE_MODULES_READY:-}" ]; then
	npm_needed=
else
	npm_needed=1
	command -v npm >/dev/null 2>&1 || missing+=(npm)
fi
[ -f /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
# libFuzzer (test/fuzz, TAP 135): clang and its compiler-rt, whose package
# is named after clang's major version (Debian 12: 14, Debian 13: 19)
if command -v clang >/dev/null 2>&1; then
	clang_major=$(clang -dumpversion | cut -d. -f1)
else
	case "$(. /etc/os-release && echo "${VERSION_CODENAME:-}")" in
		trixie) clang_major=19 ;;
		*) clang_major=14 ;;
	esac
	missing+=(clang)
fi
printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }\n' |
	clang -fsanitize=fuzzer -x c - -o /dev/null >/dev/null 2>&1 ||
	missing+=("libclang-rt-$clang_major-dev")
# TAP 183 drives Debian's Chromium (puppeteer-core) and makes it trust the
# test CA with certutil; chromium-sandbox's setuid helper keeps Chromium
# sandboxed where it cannot make user namespaces (a chroot, as in CI)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ -u /usr/lib/chromium/chrome-sandbox ] || missing+=(chromium-sandbox)
command -v certutil >/dev/null 2>&1 || missing+=(libnss3-tools)
# TAP 128 resolves localhost to ::1 and 127.0.0.1 through it where the
# machine's own /etc/hosts gives one family only
compgen -G '/usr/lib/*/libnss_wrapper.so' >/dev/null || missing+=(libnss-wrapper)

if [ ${#missing[@]} -gt 0 ]; then
	say "installing ${missing[*]}"
	apt_start=$SECONDS
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		"${missing[@]}" ca-certificates
	echo "packages installed in $((SECONDS - apt_start)) s"
else
	say "all packages present, skipping apt"
fi
# SB_SETUP_PACKAGES_ONLY=1 bash test/lib/setup.sh: only the packages (.ci/run
# prepares a root with it while another run goes on)
if [ -n "${SB_SETUP_PACKAGES_ONLY:-}" ]; then
	return 0 2>/dev/null || exit 0
fi
id "$test_user" >/dev/null 2>&1 || { echo "user $test_user does not exist" >&2; exit 1; }

# ---------------------------------------------------------------------------
# 2. npm test dependencies
# ---------------------------------------------------------------------------

if [ -n "$npm_needed" ]; then
	say "npm ci (test/)"
	(cd "$repo/test" && npm ci --no-audit --no-fund --loglevel=error)
elif [ -d "$repo/test/node_modules" ]; then
	say "test/node_modules installed beforehand, skipping npm ci"
else
	echo "SB_NODE_MODULES_READY is set but test/node_modules is missing" >&2
	exit 1
fi

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
work=$(mktemp -d "${TMPDIR:-/tmp}/scuttlebutt-${SB_WORK_NAME:-test}.XXXXXX")
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

free_port() {
	perl -MIO::Socket::INET -e '
		my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1", LocalPort => 0, Proto => "tcp")
			or die "no free port: $!\n";
		print $s->sockport, "\n";'
}

# start_cluster DATADIR: initdb and start a throwaway server on a free
# loopback port (sets $port), with its socket in $sockdir, the library
# preloaded, and the extra postgresql.conf lines given on stdin.
start_cluster() {
	local data=$1 extra attempt
	extra=$(cat)
	as_test_user PATH="$pgbin:$PATH" initdb -D "$data" -A trust -E UTF8 --no-locale >"$work/initdb.log" 2>&1 ||
		{ cat "$work/initdb.log"; return 1; }
	as_test_user mkdir -p "$sockdir"
	for attempt in 1 2 3 4 5; do
		port=$(free_port)
		printf '%s\n' "# added by test/lib/setup.sh" "port = $port" \
			"listen_addresses = '127.0.0.1'" "unix_socket_directories = '$sockdir'" \
			"shared_preload_libraries = 'scuttlebutt'" "$extra" |
			as_test_user sh -c "cat >> '$data/postgresql.conf'"
		if as_test_user PATH="$pgbin:$PATH" pg_ctl -D "$data" -l "$data.log" -w -t 60 start >/dev/null; then
			return 0
		fi
		echo "could not start the server on port $port (attempt $attempt), retrying"
	done
	"${SUDO[@]}" tail -20 "$data.log" || true
	return 1
}

mkdir -p "$pgwork"
"${SUDO[@]}" chown "$test_user" "$pgwork"
sockdir="$pgwork/sock"
