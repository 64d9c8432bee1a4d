#!/usr/bin/env bash
# test/bench/signed_sync.sh: what signing costs an initial sync over libpq:
# a fresh server pulling $N updates of a signed model (Ed25519, RSA 2048),
# side by side with the same sync of an unsigned model.  No target: the
# times and their ratio.
#
# Two servers (a, b, configured as the libpq benchmarks': libpq_lib.sh).
# a holds three models of the same $N keys k1..kN, values
# {"v": i, "s": "value i"}:
#   u        unsigned, written with set_many() (build_model, as libpq_sync.sh);
#   s_<alg>  signed, per key type: a new key pair (openssl genpkey), $N
#            updates signed with it by js/sign_dump.js (RSA by the
#            reference's security.js, Ed25519 by crypto.sign), imported
#            into a in chunks of 100,000 (a and b trust the key).
# Before every run b is fresh (no peer, no model but the one synced,
# created again: signed for the key type or unsigned; tables truncated; no
# connection left), both CHECKPOINTed.  Timed as libpq_sync.sh times its
# syncs, in one psql session on b, by the server's clock:
#   SELECT scuttlebutt.add_peer('<model>', '<a's conninfo>');
#   SELECT scuttlebutt.wait_for_sync('<model>', '900s');  -- true
# then b must hold N updates and a's clock of the model.  Repetition 0
# (the unsigned model) warms up and is not kept; then $REPS repetitions,
# the order of the models rotating.  Table: median seconds, unsigned
# (baseline) vs signed, ratio signed / unsigned; info rows: the CPU
# seconds of both servers during the runs, and the verification's cost per
# update ((signed - unsigned) / N).
#
#   SIGNED_SYNC_UPDATES=1000000 SIGNED_SYNC_REPS=3 SIGNED_SYNC_ALGS="ed25519 rsa" \
#   test/bench/signed_sync.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"
LIBPQ_SIDES=scuttlebutt
. "$BENCH_DIR/libpq_lib.sh"
. "$BENCH_DIR/signed_lib.sh"

N=${SIGNED_SYNC_UPDATES:-1000000}
REPS=${SIGNED_SYNC_REPS:-3}
ALGS=${SIGNED_SYNC_ALGS:-ed25519 rsa}
CHUNK=100000

W="$SERVERS_TMP/signed_sync"
mkdir -p "$W"
chmod 755 "$W"
libpq_server a
libpq_server b
: >"$W/foreign"

t0=$(date +%s)
build_model a u "$N"
[ "$(model_count a u)" -eq "$N" ] || die "model u holds $(model_count a u) updates, expected $N"
log "signed_sync: built u ($N unsigned updates) on a in $(($(date +%s) - t0)) s"
MODELS="u"
for alg in $ALGS; do
	gen_key "$alg" "$W/$alg.key"
	sign_dump "$W/$alg.key" "$N" "$W/$alg" "$CHUNK"
	trust_on a "$W/$alg"
	trust_on b "$W/$alg"
	t0=$(date +%s)
	signed_model_sql "s_$alg" "$alg" | sqlx a >/dev/null
	for f in "$W/$alg".[0-9]*; do
		sqlx a -c "SELECT scuttlebutt.import('s_$alg', pg_read_file('$f'))" >/dev/null || die "importing $f into a failed"
		rm -f "$f"
	done
	[ "$(model_count a "s_$alg")" -eq "$N" ] || die "a's s_$alg holds $(model_count a "s_$alg") updates, expected $N"
	log "signed_sync: imported s_$alg ($N updates signed with $(alg_label "$alg")) into a in $(($(date +%s) - t0)) s"
	MODELS="$MODELS s_$alg"
done
sqlx a -c "VACUUM ANALYZE scuttlebutt.updates" -c "VACUUM ANALYZE scuttlebutt.clocks" >/dev/null
log "signed_sync: a's scuttlebutt.updates $(sqlx1 a -c "SELECT pg_size_pretty(pg_total_relation_size('scuttlebutt.updates'))") with indexes"
for m in $MODELS; do
	model_clock a "$m" >"$W/$m.clock"
	: >"$W/$m.ms"; : >"$W/$m.cpu"
done

both_ticks() { echo $(($(server_ticks a) + $(server_ticks b))); }

# fresh_b MODEL: b as described above.
fresh_b() {
	local alg=none
	case $1 in s_*) alg=${1#s_} ;; esac
	{
		echo "SELECT scuttlebutt.remove_peer(id) FROM scuttlebutt.peers;"
		echo "SELECT scuttlebutt.drop_model(name) FROM scuttlebutt.registry;"
		echo "TRUNCATE scuttlebutt.updates, scuttlebutt.clocks;"
		signed_model_sql "$1" "$alg"
	} | sqlx b >/dev/null
	wait_no_connections a b
	sqlx a -c "CHECKPOINT" >/dev/null
	sqlx b -c "VACUUM ANALYZE scuttlebutt.updates" -c "VACUUM ANALYZE scuttlebutt.clocks" -c "CHECKPOINT" >/dev/null
}

# run MODEL REP: one timed initial sync of MODEL from a to a fresh b.
run() {
	local m=$1 rep=$2 tag="$W/$1.$2" ok t0 t1 ms c0 cpu got
	fresh_b "$m"
	cat >"$tag.sql" <<SQL
SELECT extract(epoch FROM clock_timestamp()) * 1000;
SELECT scuttlebutt.add_peer('$m', '$(conninfo a)');
SELECT scuttlebutt.wait_for_sync('$m', '900s'), extract(epoch FROM clock_timestamp()) * 1000;
SQL
	quiet_gate
	c0=$(both_ticks)
	disturb_begin
	sqlx b -At -F ' ' -f "$tag.sql" >"$tag.out" 2>"$tag.err" || die "sync of $m failed: $(cat "$tag.err" "$tag.out")"
	disturb_end "$W/foreign.all"
	cpu=$(ticks_to_s $(($(both_ticks) - c0)))
	t0=$(sed -n 1p "$tag.out")
	read -r ok t1 < <(sed -n 3p "$tag.out")
	[ "$ok" = t ] || die "wait_for_sync('$m') on b returned '$ok': $(cat "$tag.out"); b: $(peer_line b)"
	got=$(model_count b "$m")
	[ "$got" -eq "$N" ] || die "b holds $got updates of $m after sync, expected $N; b: $(peer_line b)"
	[ "$(model_clock b "$m")" = "$(<"$W/$m.clock")" ] || die "b's clock of $m differs from a's after sync"
	ms=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
	log "signed_sync: $m rep=$rep: $(awk -v ms="$ms" 'BEGIN { printf "%.2f s", ms / 1000 }'); CPU of a+b $cpu s; foreign CPU $(tail -1 "$W/foreign.all")%; b: $(peer_line b)"
	remove_peers b
	if [ "$rep" -gt 0 ]; then
		echo "$ms" >>"$W/$m.ms"; echo "$cpu" >>"$W/$m.cpu"
		tail -1 "$W/foreign.all" >>"$W/foreign"
	fi
}

run u 0
for rep in $(seq 1 "$REPS"); do
	# rotate the order of the models every repetition
	set -- $MODELS
	for ((i = 0; i < (rep - 1) % $#; i++)); do set -- "${@:2}" "$1"; done
	for m in "$@"; do
		run "$m" "$rep"
	done
done

secs() { awk -v ms="$1" 'BEGIN { printf "%.3f", ms / 1000 }'; }
u=$(secs "$(median <"$W/u.ms")")
uc=$(median <"$W/u.cpu")
log "signed_sync: raw u ms: $(paste -sd' ' "$W/u.ms")"
for alg in $ALGS; do
	label=$(alg_label "$alg")
	s=$(secs "$(median <"$W/s_$alg.ms")")
	sc=$(median <"$W/s_$alg.cpu")
	log "signed_sync: raw s_$alg ms: $(paste -sd' ' "$W/s_$alg.ms")"
	record signed_sync "initial sync of $N updates, $label signed vs unsigned" "$u" "$s" "s (median of $REPS)" "$(ratio "$s" "$u")" "-" "info"
	record signed_sync "CPU of both servers, $label signed vs unsigned" "$uc" "$sc" "CPU s (median of $REPS)" "$(ratio "$sc" "$uc")" "-" "info"
	record signed_sync "$label: added time per update" "-" "$(awk -v s="$s" -v u="$u" -v n="$N" 'BEGIN { printf "%.1f", (s - u) * 1e6 / n }')" "us per update" "-" "-" "info"
done
record signed_sync "foreign CPU during runs (max)" "-" "$(disturb_max "$W/foreign")" "% of all CPUs" "-" "-" "info"

if [ -z "${BENCH_QUIET:-}" ]; then
	echo
	echo "signed_sync: fresh b pulls from a over libpq (add_peer + wait_for_sync); baseline = the unsigned model, extension = the signed one; ratio = signed / unsigned"
	libpq_conditions
	echo "openssl: $("$OPENSSL" version)"
	print_table signed_sync
fi
