#!/usr/bin/env bash
# Runs the whole test suite on a Debian 12 (PostgreSQL 15) or Debian 13
# (PostgreSQL 17) machine, as root or as a user with sudo:
#
#   1. installs what is missing (PostgreSQL server and headers, OpenSSL
#      and libpq headers, IPC::Run, node.js and npm, make, gcc,
#      clang and libFuzzer),
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
# Environment: PG_CONFIG (default: the distribution's PostgreSQL, see
# test/lib/setup.sh), SB_TEST_USER (default postgres), PROVE_TESTS (default
# test/t/*.pl, the highest-numbered first), PROVE_FLAGS (default "-j3 --timer": three
# files at a time, each one's time shown), SB_TEST_SEED (seed of the random interop vectors),
# SB_FUZZ_SEED, SB_FUZZ_CONNECTIONS and SB_FUZZ_SECONDS (the listener fuzz,
# test/t/136_listener_fuzz.pl), SB_LIBFUZZER_SECONDS (each libFuzzer
# target's run, test/t/135_libfuzzer.pl, default 60), MESH_SEED and
# MESH_SECONDS (the mesh fault schedule, test/t/160_fault_mesh.pl), COPT
# (extra compiler flags, e.g. -Werror as CI passes).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib/setup.sh"

tree="$pgwork/tree"
mkdir -p "$tree"
tar -C "$repo" --exclude=./.git --exclude=./tmp_check --exclude=./results \
	--exclude=./regression.diffs --exclude=./regression.out -cf - . | tar -C "$tree" -xf -
"${SUDO[@]}" chown -R "$test_user" "$pgwork"
regress_data="$pgwork/regress-data"


# ---------------------------------------------------------------------------
# 4. pg_regress against a throwaway cluster
# ---------------------------------------------------------------------------

say "pg_regress (make installcheck)"
regress_log="$work/regress.out"
regress_rc=0
start_cluster "$regress_data" <<<"fsync = off"

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
# Three files at a time: every file has its own clusters and ports.  The
# files start longest first (by their times in CI, as prove's --timer
# shows them: the fault mesh, which runs a fixed schedule, then the
# others), so that no long file is left running alone at the end; files
# not listed here come last, highest-numbered first.  A name without its
# file here is skipped.
slow_tests="160_fault_mesh 143_signed_servers 101_stream_js_client 111_two_servers
	102_stream_js_server 170_restore_base_backup 112_chain 140_bounded_memory
	115_stream_bad_input 127_libpq_live 126_libpq_faults 114_stream_read_only
	113_stream_restart_mid_sync 147_stream_tls 135_libfuzzer 142_signed_stream
	004_interop_semantics 002_concurrency 123_libpq_restart_mid_sync 171_restore_dump
	150_listen_rules 132_hostile_input 134_update_limits 131_clock_skew
	007_interop_reparse 144_signed_dialed 136_listener_fuzz 124_libpq_auth
	137_role_privileges 117_stream_sync_fairness 153_listen_rules_cert"
# SB_SKIP_TESTS: names of TAP files to leave out (CI's PostgreSQL 17 run
# leaves out files the other run and other files cover: see .ci/run); the
# summary lists them, so that nothing left out passes for run.
skipped=
if [ -z "${PROVE_TESTS:-}" ]; then
	PROVE_TESTS=$(cd "$tree" && {
		for t in $slow_tests; do [ -f "test/t/$t.pl" ] && echo "test/t/$t.pl"; done
		ls -r test/t/*.pl
	} | awk '!seen[$0]++' | tr '\n' ' ')
	for t in ${SB_SKIP_TESTS:-}; do
		case " $PROVE_TESTS " in
			*" test/t/$t.pl "*)
				PROVE_TESTS=$(echo " $PROVE_TESTS " | sed "s| test/t/$t.pl | |")
				skipped="$skipped $t"
				;;
		esac
	done
fi
prove_args+=(PROVE_TESTS="$PROVE_TESTS")
PROVE_FLAGS=${PROVE_FLAGS--j3 --timer}
[ -n "$PROVE_FLAGS" ] && prove_args+=(PROVE_FLAGS="$PROVE_FLAGS")
# PostgreSQL::Test::Cluster makes its socket directories with File::Temp
# and keeps them when a test fails: put them under $pgwork, which goes
# on every exit path, rather than in /tmp.
as_test_user mkdir -p "$pgwork/tmp"
set +e
as_test_user PATH="$pgbin:$PATH" TMPDIR="$pgwork/tmp" ${SB_TEST_SEED:+SB_TEST_SEED="$SB_TEST_SEED"} \
	${SB_FUZZ_SEED:+SB_FUZZ_SEED="$SB_FUZZ_SEED"} ${SB_FUZZ_CONNECTIONS:+SB_FUZZ_CONNECTIONS="$SB_FUZZ_CONNECTIONS"} \
	${SB_FUZZ_SECONDS:+SB_FUZZ_SECONDS="$SB_FUZZ_SECONDS"} \
	${SB_LIBFUZZER_SECONDS:+SB_LIBFUZZER_SECONDS="$SB_LIBFUZZER_SECONDS"} \
	${MESH_SEED:+MESH_SEED="$MESH_SEED"} ${MESH_SECONDS:+MESH_SECONDS="$MESH_SECONDS"} \
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

say "summary (PostgreSQL $pg_major, $((SECONDS / 60)) min $((SECONDS % 60)) s)"
echo "pg_regress:"
if grep -qE '^(# )? *(All [0-9]+ tests passed|[0-9]+ of [0-9]+ tests failed)' "$regress_log"; then
	# Each run's verdict (regress, then isolation) and the note pointing at
	# the diffs: PostgreSQL 15 frames it in "=====" lines, 16 and later
	# print TAP-style "# " lines.
	awk '
		/^=+$/ {
			if ((getline nxt) > 0 && nxt ~ /tests (passed|failed)/) {
				print; print nxt
				if ((getline nxt) > 0) print nxt
				note = 1
			}
			next
		}
		para && /^$/ { para = 0; note = 0; next }
		para { print; next }
		note && /^$/ { next }
		note && /^The differences/ { para = 1; print; next }
		{ note = 0 }
		/^# *(All [0-9]+ tests passed|[0-9]+ of [0-9]+ tests failed|The differences|A copy of the test summary)/ ||
			/^Bail out!/ { print }
	' "$regress_log"
else
	echo "(pg_regress printed no summary, exit status $regress_rc; see its output above)"
fi
echo "prove:"
[ -z "$skipped" ] || echo "left out of this run (SB_SKIP_TESTS):$skipped"
if grep -qE '^(All tests successful\.|Test Summary Report)' "$prove_log"; then
	sed -n -E '/^(All tests successful\.|Test Summary Report)/,$p' "$prove_log" | grep -v '^make'
else
	echo "(prove printed no summary, exit status $prove_rc; see its output above)"
fi

if [ "$regress_rc" -ne 0 ] || [ "$prove_rc" -ne 0 ]; then
	exit 1
fi
exit 0
