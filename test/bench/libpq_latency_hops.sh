#!/usr/bin/env bash
# test/bench/libpq_latency_hops.sh: where one write's time goes until the
# peer has applied it, a pulled scuttlebutt set() beside logical
# replication's INSERT, measured with perf (root; Debian's linux-perf).
#
# The servers, model, table and subscription of libpq_latency.sh: b dials
# a (add_peer) for model lat; a publishes kv_lat, b subscribes
# (copy_data = false, synchronous_commit = off) only during the logical
# runs.  One run: $N writes on a, one per transaction, $GAP_MS ms apart,
# while perf records, system-wide, three uprobes and two tracepoints:
#   the write's timestamp: SbSequencerNext's return in scuttlebutt.so (the
#     update's ts is taken there), clock_timestamp() for the INSERT;
#   the WAL flush of its commit: the writer's fdatasync() returning (and
#     entered: the flush's own duration);
#   the apply's commit on b: CommitTransactionCommand()'s return in the
#     receiver (b's scuttlebutt worker, or the subscription's apply
#     worker), the first after that flush.
# Per write: ts -> flushed (the rest of the statement and the commit's
# flush), flushed -> applied (the wake-up of the sender, its read, the
# transfer, the receiver's apply and commit), their sum, and the
# fdatasync() itself.  Each uprobe
# costs a few microseconds, alike on both sides.  What a reader on b then
# waits (libpq_latency.sh's polling) is not included.  The sides
# alternate, $REPS runs each; the table shows the medians over runs of
# each run's p50, and of each run's p99 (the tail: where a write's
# slowest part is).
#
#   HOPS_N=300 HOPS_GAP_MS=20 HOPS_REPS=3 test/bench/libpq_latency_hops.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$BENCH_DIR/libpq_lib.sh"

N=${HOPS_N:-300}
GAP_MS=${HOPS_GAP_MS:-20}
REPS=${HOPS_REPS:-3}
command -v perf >/dev/null || die "perf is needed (apt-get install linux-perf)"
[ "$(id -u)" -eq 0 ] || die "perf's uprobes need root"
has_side logical && has_side scuttlebutt || die "this script compares both sides"

SO="$("$PG_CONFIG" --pkglibdir)/scuttlebutt.so"
PGBINARY="$PGBIN/postgres"
GROUP=sbhops
# the probes go on every exit, before servers_lib.sh's cleanup (which
# exits with the status it is handed)
trap 'rc=$?; perf probe -q -d "$GROUP:*" >/dev/null 2>&1; (exit $rc); servers_cleanup' EXIT
perf probe -q -d "$GROUP:*" >/dev/null 2>&1 || true
perf probe -q -x "$PGBINARY" -a "$GROUP:commit_done=CommitTransactionCommand%return" -a "$GROUP:clock_ts=clock_timestamp" ||
	die "could not add uprobes to $PGBINARY"
perf probe -q -x "$SO" -a "$GROUP:update_ts=SbSequencerNext%return" || die "could not add a uprobe to $SO"

W="$SERVERS_TMP/hops"
mkdir -p "$W"
lat_servers

# run CASE REP: one run recorded; its per-write hops (µs) in $W/CASE.REP.hops
run() {
	local case=$1 rep=$2 tag="$W/$1.$2" pre="$1_r$2_k" receiver writer tsev kind count held
	if [ "$case" = logical ]; then
		lat_subscribe
		receiver=$(apply_worker_pid)
		tsev=clock_ts kind=logical
		count="SELECT count(*) FROM public.kv_lat WHERE key LIKE '$pre%'"
	else
		[ "$(sqlx1 b -c "SELECT scuttlebutt.wait_for_sync('lat', '60s')")" = t ] || die "b not in sync before the run: $(peer_line b)"
		receiver=$(worker_pid b)
		tsev=update_ts kind=scuttlebutt
		count="SELECT count(*) FROM scuttlebutt.keys('lat') k WHERE k LIKE '$pre%'"
	fi
	# (its first line prints the writer's pid)
	{ echo "SELECT pg_backend_pid();"; lat_writes "$kind" "$pre" "$N" "$GAP_MS"; } >"$tag.sql"
	sqlx a -c CHECKPOINT >/dev/null
	sqlx b -c CHECKPOINT >/dev/null
	quiet_gate
	perf record -q -a -k CLOCK_MONOTONIC -o "$tag.data" \
		-e "$GROUP:*" -e syscalls:sys_enter_fdatasync -e syscalls:sys_exit_fdatasync -- \
		"$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$SERVERS_TMP/sock" -p "${PORT_OF[a]}" -U postgres -d postgres \
		-f "$tag.sql" >"$tag.out" 2>"$tag.err" || die "writes on a failed: $(tail -3 "$tag.err")"
	for _ in $(seq 1 100); do
		held=$(sqlx1 b -c "$count")
		[ "$held" -ge "$N" ] && break
		sleep 0.1
	done
	[ "$held" -eq "$N" ] || die "$case: b holds $held of the $N keys"
	[ "$case" = logical ] && sub_drop b s_lat
	writer=$(head -1 "$tag.out")
	# (one uprobe may fire twice per call, at the PLT and the function: one per 0.2 ms)
	perf script -i "$tag.data" -F pid,time,event 2>/dev/null | awk -v w="$writer" -v r="$receiver" -v ev="$tsev" '
		{ pid = $1; t = $2 + 0; e = $3 }
		pid == w && index(e, ev) { if (t - last > 0.0002) ts = t; last = t; next }
		pid == w && index(e, "sys_enter_fdatasync") { entered = t; next }
		pid == w && index(e, "sys_exit_fdatasync") && ts { flushed = t; ts_of = ts; flush_s = t - entered; ts = 0; next }
		pid == r && index(e, "commit_done") && flushed {
			printf "%.1f %.1f %.1f %.1f\n", (flushed - ts_of) * 1e6, (t - flushed) * 1e6, (t - ts_of) * 1e6, flush_s * 1e6
			flushed = 0 }' >"$tag.hops"
	[ "$(wc -l <"$tag.hops")" -ge $((N * 9 / 10)) ] || die "$case: only $(wc -l <"$tag.hops") of $N writes traced (BENCH_KEEP=1 keeps $tag.data)"
	rm -f "$tag.data"
	for c in 1 2 3 4; do
		awk -v c=$c '{ print $c }' "$tag.hops" | pctl 50 >>"$W/$case.p50.$c"
		awk -v c=$c '{ print $c }' "$tag.hops" | pctl 99 >>"$W/$case.p99.$c"
	done
	log "libpq_latency_hops: $case rep=$rep: ts->flushed $(tail -1 "$W/$case.p50.1") µs, flushed->applied $(tail -1 "$W/$case.p50.2") µs, ts->applied $(tail -1 "$W/$case.p50.3") µs (p50 of $(wc -l <"$tag.hops"))"
}

for rep in $(seq 1 "$REPS"); do
	if [ $((rep % 2)) = 1 ]; then run pull "$rep"; run logical "$rep"; else run logical "$rep"; run pull "$rep"; fi
done

names=("" "the write's timestamp to its commit's WAL flush" "the flush to the apply's commit on the peer" "the write's timestamp to the apply's commit" "the commit's fdatasync() on the writer")
for q in p50 p99; do
	for c in 1 2 3 4; do
		l=$(median <"$W/logical.$q.$c"); p=$(median <"$W/pull.$q.$c")
		record libpq_latency_hops "${names[$c]}: $q" "$(fmt 0 "$l")" "$(fmt 0 "$p")" "µs (median of $REPS runs x $N)" "$(ratio "$p" "$l")" "-" "info"
	done
done
for c in logical pull; do log "libpq_latency_hops: raw $c ts->applied p50: $(paste -sd' ' "$W/$c.p50.3")"; done
if [ -z "${BENCH_QUIET:-}" ]; then
	echo
	echo "libpq_latency_hops: one write's hops until the peer applied it (perf uprobes), $N writes ${GAP_MS} ms apart per run; baseline = logical replication a->b (INSERT, subscription synchronous_commit=off); scuttlebutt = set() on a, pulled by b"
	libpq_conditions
	print_table libpq_latency_hops
fi
