#!/usr/bin/env bash
# Runs the test suite (or another command) of this checkout in a fresh
# Debian root made with debootstrap.  As root on Debian 12:
#
#   .ci/chroot.sh trixie            # Debian 13: the suite on PostgreSQL 17
#   .ci/chroot.sh bookworm          # Debian 12 as a newcomer has it: PostgreSQL 15
#   .ci/chroot.sh trixie bash test/demo.sh
#
# 1. debootstrap --variant=minbase SUITE into a new directory: the bare
#    system, without git, ca-certificates, locales, and with Debian's stock
#    /etc/hosts (localhost as 127.0.0.1 and ::1; on bookworm netbase writes
#    it when the test packages pull it in).  Services are never started in
#    it (policy-rc.d).
# 2. copies the checkout (tracked and untracked files, no build products)
#    to /root/scuttlebutt in it,
# 3. in private mount and PID namespaces, mounts /proc, /sys, /dev,
#    /dev/pts and /dev/shm into it and runs the command in
#    /root/scuttlebutt, with a clean environment and PG_CONFIG set to the
#    suite's PostgreSQL (bookworm: 15, trixie: 17).  The default command,
#    "bash test/run.sh", installs the packages it needs with apt-get.
# 4. on every exit path: processes left in the root end with the PID
#    namespace, the mounts with the mount namespace (the host never sees
#    them); regression.diffs and the TAP logs of a failed run are copied
#    back to tmp_check/chroot-SUITE/; the root is removed.
# The exit status is the command's.
#
# Environment:
#   SB_CHROOT_DIR     the root to use.  If it already holds a root of SUITE
#                     made by this script, it is reused as it is (faster
#                     repeated runs); it is kept either way.  Default: a
#                     new directory under /var/tmp, removed at the end.
#   SB_CHROOT_MIRROR  Debian mirror (default http://deb.debian.org/debian)
#   SB_CHROOT_CACHE   a directory kept between runs for the downloaded
#                     .deb files (debootstrap's and apt's); default none
#   SB_CHROOT_NODE_MODULES=1  copy the checkout's test/node_modules (from
#                     "npm ci" on the host) too, so that the root needs
#                     node.js but not Debian's npm and its ~400 packages
#   The host's local CA certificates (/usr/local/share/ca-certificates, as
#   behind a TLS-inspecting proxy) are copied in, for npm.
#   CI, COPT, PROVE_TESTS, PROVE_FLAGS, SB_SKIP_TESTS, SB_TEST_SEED, SB_FUZZ_SEED,
#   SB_FUZZ_CONNECTIONS, SB_FUZZ_SECONDS, SB_LIBFUZZER_SECONDS, LANG: passed
#   in when set (nothing else is).
set -euo pipefail

usage() {
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
	exit 2
}

# ---------------------------------------------------------------------------
# Inside the private namespaces (the script calls itself): mount, chroot,
# run.  What is mounted or started here ends with the namespaces.
# ---------------------------------------------------------------------------

in_namespace() {
	local root=$1 suite=$2 rc
	shift 2
	mount -t proc proc "$root/proc"
	mount --rbind /sys "$root/sys"
	mount --bind /dev "$root/dev"
	mount --bind /dev/pts "$root/dev/pts"
	mkdir -p "$root/dev/shm"
	mount -t tmpfs -o mode=1777,nosuid,nodev shm "$root/dev/shm"
	[ -z "${SB_CHROOT_CACHE:-}" ] ||
		mount --bind "$SB_CHROOT_CACHE/apt-$suite" "$root/var/cache/apt/archives"
	set +e
	chroot "$root" "$@"
	rc=$?
	umount -R "$root/sys" "$root/proc" "$root/dev/shm" "$root/dev/pts" "$root/dev" 2>/dev/null
	[ -z "${SB_CHROOT_CACHE:-}" ] || umount "$root/var/cache/apt/archives" 2>/dev/null
	return $rc
}

main() {
[ $# -ge 1 ] || usage
case "$1" in -h | --help) usage ;; esac
suite=$1
shift
case "$suite" in
	bookworm) pg_major=15 ;;
	trixie) pg_major=17 ;;
	*) echo "unknown suite $suite (bookworm or trixie)" >&2; exit 2 ;;
esac
[ $# -gt 0 ] || set -- bash test/run.sh
[ "$(id -u)" -eq 0 ] || { echo "$0 must run as root (debootstrap, chroot, mount)" >&2; exit 2; }
for tool in debootstrap unshare chroot; do
	command -v "$tool" >/dev/null 2>&1 ||
		{ echo "$tool is missing: apt-get install debootstrap" >&2; exit 2; }
done

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mirror=${SB_CHROOT_MIRROR:-http://deb.debian.org/debian}
keep=${SB_CHROOT_DIR:+1}
root=${SB_CHROOT_DIR:-$(mktemp -d /var/tmp/scuttlebutt-"$suite".XXXXXX)}
mkdir -p "$root"
root=$(cd "$root" && pwd)
[ "$root" != / ] || { echo "refusing / as the root" >&2; exit 2; }
marker="$root/etc/scuttlebutt-chroot-suite"

# Copies what a failed run kept, removes the root unless it is to be kept.
cleanup() {
	local rc=$?
	set +e
	trap - EXIT INT TERM HUP
	if [ -d "$root/root/scuttlebutt" ]; then
		local keepdir="$repo/tmp_check/chroot-$suite" f kept=
		for f in regression.diffs regression.out tmp_check/log; do
			if [ -e "$root/root/scuttlebutt/$f" ]; then
				[ -n "$kept" ] || rm -rf "$keepdir"
				mkdir -p "$keepdir"
				cp -r "$root/root/scuttlebutt/$f" "$keepdir/"
				kept=1
			fi
		done
		[ -n "$kept" ] && echo "logs of the failed run kept in $keepdir" >&2
	fi
	if [ -z "$keep" ]; then
		# nothing is mounted here (the mounts lived in the namespace), but
		# never remove a tree that still has a mount in it
		if grep -qF " $root/" /proc/self/mountinfo; then
			echo "$root still has mounts: not removing it" >&2
		else
			rm -rf --one-file-system "$root"
		fi
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# ---------------------------------------------------------------------------
# 1. The root
# ---------------------------------------------------------------------------

start=$SECONDS
if [ -f "$marker" ] && [ "$(cat "$marker")" = "$suite" ]; then
	echo "=== reusing the $suite root in $root"
else
	[ -z "$(ls -A "$root")" ] || { echo "$root is not empty and holds no $suite root" >&2; exit 2; }
	# the root's "/" (mktemp -d makes it 0700: no user but root could
	# run anything in it)
	chmod 755 "$root"
	echo "=== debootstrap --variant=minbase $suite $root $mirror"
	cache_args=()
	if [ -n "${SB_CHROOT_CACHE:-}" ]; then
		mkdir -p "$SB_CHROOT_CACHE/debootstrap-$suite"
		cache_args=(--cache-dir="$SB_CHROOT_CACHE/debootstrap-$suite")
	fi
	if ! debootstrap --variant=minbase "${cache_args[@]}" "$suite" "$root" "$mirror" \
		>"$root.debootstrap.log" 2>&1; then
		tail -n 30 "$root.debootstrap.log" >&2
		echo "debootstrap failed (whole log: $root.debootstrap.log)" >&2
		exit 1
	fi
	rm -f "$root.debootstrap.log"
	# No service starts in the root: it shares the host's network, and a
	# cluster started by the postgresql package would stay behind.
	printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
	chmod 755 "$root/usr/sbin/policy-rc.d"
	# dpkg's fsyncs are wasted on a root thrown away after the run
	echo force-unsafe-io >"$root/etc/dpkg/dpkg.cfg.d/scuttlebutt-unsafe-io"
	cp /etc/resolv.conf "$root/etc/resolv.conf"
	echo "$suite" >"$marker"
	echo "debootstrap: $((SECONDS - start)) s"
fi

# ---------------------------------------------------------------------------
# 2. The checkout
# ---------------------------------------------------------------------------

[ -z "${SB_CHROOT_CACHE:-}" ] || mkdir -p "$SB_CHROOT_CACHE/apt-$suite/partial"
dest="$root/root/scuttlebutt"
rm -rf "$dest"
mkdir -p "$dest"
if [ -e "$repo/.git" ] && command -v git >/dev/null 2>&1; then
	(cd "$repo" && git ls-files -z --cached --others --exclude-standard |
		xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh |
		tar --null -T - -cf -) | tar -C "$dest" -xf -
else
	tar -C "$repo" --exclude=./.git --exclude='*.o' --exclude='*.so' --exclude='*.bc' \
		--exclude=.deps --exclude=./tmp_check --exclude=./results --exclude=node_modules \
		--exclude=./regression.diffs --exclude=./regression.out --exclude=./output_iso \
		-cf - . | tar -C "$dest" -xf -
fi

if [ -d /usr/local/share/ca-certificates ]; then
	mkdir -p "$root/usr/local/share/ca-certificates"
	cp -r /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
fi

node_modules_ready=
if [ -n "${SB_CHROOT_NODE_MODULES:-}" ] && [ -f "$repo/test/node_modules/.package-lock.json" ]; then
	tar -C "$repo" -cf - test/node_modules | tar -C "$dest" -xf -
	node_modules_ready=1
fi

# ---------------------------------------------------------------------------
# 3. The command, in a private mount namespace
# ---------------------------------------------------------------------------

envs=(HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
	TERM="${TERM:-dumb}" PG_CONFIG="/usr/lib/postgresql/$pg_major/bin/pg_config"
	${node_modules_ready:+SB_NODE_MODULES_READY=1})
for v in CI COPT PROVE_TESTS PROVE_FLAGS SB_SKIP_TESTS SB_TEST_SEED SB_FUZZ_SEED SB_FUZZ_CONNECTIONS SB_FUZZ_SECONDS SB_LIBFUZZER_SECONDS LANG; do
	[ -n "${!v:-}" ] && envs+=("$v=${!v}")
done
echo "=== in the $suite root (PostgreSQL $pg_major): $*"
set +e
unshare --mount --pid --fork --kill-child --propagation private -- \
	"$BASH" "${BASH_SOURCE[0]}" --in-namespace "$root" "$suite" \
	/usr/bin/env -i "${envs[@]}" /bin/bash -c 'cd /root/scuttlebutt && exec "$@"' bash "$@"
exit $?
}

# This compound command is read whole before it runs, and never returns:
# an edit of the script during a run cannot break the run.
if [ "${1:-}" = "--in-namespace" ]; then
	shift
	in_namespace "$@"
	exit
else
	main "$@"
	exit
fi
