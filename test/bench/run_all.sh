#!/usr/bin/env bash
# test/bench/run_all.sh: every scuttlebutt benchmark against its baseline in
# one throw-away cluster, then one combined table.  Each script's settings
# pass through (TPS_*, MANY_*, HISTORY_*, JS_SYNC_*, SERVER_SYNC_*, LATENCY_*, TLS_*,
# STREAM_MEM_*, LIBPQ_*, SIGNED_*, VERIFY_*; see the scripts' headers).
# BENCH_KEEP=1 keeps the raw numbers, logs and plans.
#
#   make install && test/bench/run_all.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"

bench_cluster_start
export BENCH_QUIET=1
started=$(date +%s)
"$BENCH_DIR/set_tps.sh"
"$BENCH_DIR/set_many.sh"
"$BENCH_DIR/history.sh"
# replication: each starts servers of its own (they need the worker's listener)
"$BENCH_DIR/stream_js_sync.sh"
"$BENCH_DIR/stream_server_sync.sh"
"$BENCH_DIR/stream_latency.sh"
"$BENCH_DIR/stream_tls.sh"
"$BENCH_DIR/stream_memory.sh"
# replication over libpq (add_peer), against PostgreSQL's logical
# replication: servers of their own as well
"$BENCH_DIR/libpq_sync.sh"
"$BENCH_DIR/libpq_live_throughput.sh"
"$BENCH_DIR/libpq_latency.sh"
"$BENCH_DIR/libpq_memory.sh"
"$BENCH_DIR/libpq_notify_cost.sh"
# signed updates: set() on signed models in the shared cluster; verification
# and the signed initial sync in servers of their own
"$BENCH_DIR/signed_set.sh"
"$BENCH_DIR/signed_verify.sh"
"$BENCH_DIR/signed_sync.sh"

echo
echo "scuttlebutt benchmarks, $(date -u +%Y-%m-%dT%H:%MZ), $(($(date +%s) - started)) s"
echo "$(bench_conditions)"
echo "baseline: set_tps plain upsert, set_many plain INSERT..jsonb_each..ON CONFLICT,"
echo "          history the 10k-key model (delta) / a plain query of the same rows (dump),"
echo "          stream_js_sync a JavaScript server, stream_server_sync s/100k at the smallest size,"
echo "          stream_tls the same sync and latency over plain TCP,"
echo "          stream_memory one peer, libpq_sync / libpq_live_throughput / libpq_latency logical replication,"
echo "          libpq_memory one peer, libpq_notify_cost plain upsert (and set() without a peer),"
echo "          signed_set openssl speed sign/s (RSA) and unsigned set() (Ed25519), signed_verify openssl speed verify/s,"
echo "          signed_sync the same sync of an unsigned model"
echo "ratio: extension / baseline"
print_table
if grep -q $'\tMISS$' "$BENCH_OUT/results.tsv"; then
	echo
	echo "some targets were missed"
	[ -f "$BENCH_OUT/history/explain.big.txt" ] && grep -q 'history.*MISS' "$BENCH_OUT/results.tsv" &&
		cat "$BENCH_OUT/history/explain.small.txt" "$BENCH_OUT/history/explain.big.txt"
	exit 2
fi
