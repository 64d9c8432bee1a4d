#!/usr/bin/env bash
# test/bench/signed_set.sh: single-row scuttlebutt.set() throughput on a
# signed model, with pgbench as set_tps.sh runs it, against
#   - RSA 2048: OpenSSL's single-core signing rate, "openssl speed
#     -seconds $SECS rsa2048" sign/s (target: set() tps >= 0.8 of it);
#   - Ed25519: set() on an unsigned model of the same server in the same
#     run (target: signed tps >= 0.7 of unsigned), with openssl's Ed25519
#     sign/s as an info row.
#
# One cluster (lib.sh's, or run_all.sh's), database bench_signed; two new
# key pairs (openssl genpkey), the node's key set with ALTER SYSTEM SET
# scuttlebutt.signing_key_file + pg_reload_conf(), the RSA key for the RSA
# part and then the Ed25519 one (reset at the end).  Models, each holding
# the same $KEYS keys before the first run (so that every transaction
# updates an existing key): s_rsa (signed, rsa-sha1), s_ed25519 (signed,
# ed25519), plain (unsigned).  pgbench: -M prepared, $CLIENTS client(s),
# -T $SECS, synchronous_commit each of $SYNC (PGOPTIONS), the script
#   \set k random(1, KEYS)
#   \set v random(1, 1000000000)
#   SELECT scuttlebutt.set('<model>', 'k' || :k, jsonb_build_object('v', :v::integer));
# A VACUUM and a CHECKPOINT before every pgbench run; every run gated on
# foreign CPU (repeated twice at most when disturbed, as set_tps.sh).
# Per repetition, in an order flipping every repetition: RSA part openssl
# and set() on s_rsa (per synchronous_commit); Ed25519 part set() on plain
# and on s_ed25519 (per synchronous_commit) and openssl.  Medians of $REPS;
# a table row per synchronous_commit setting (with it on, every set() also
# waits for its WAL flush, which openssl's figure does not include).
# SIGNED_SET_ONE_THREAD=1 adds, per repetition and setting, set() on s_rsa
# with scuttlebutt.sign_threads = off (OpenSSL signs alone, in the
# backend) after the default's (an info row).  After the runs, every key's stored
# signature of each signed model verifies with openssl against the node's
# public key (a sample of 20 per model).
#
# SIGNED_SET_HELPER_RATES="100 400 0" adds, after the RSA part, one run of
# set() on s_rsa per rate (pgbench -R; 0: as fast as it goes), 1 client,
# synchronous_commit=on, and reports the CPU the signing backend and its
# helper thread (rsa_split_sign.c) used over the run (/proc, info rows):
# what the helper's spinning between close signatures costs.
#
#   SIGNED_SET_KEYS=10000 SIGNED_SET_REPS=3 SIGNED_SET_SECS=10 SIGNED_SET_CLIENTS=1 \
#   SIGNED_SET_SYNC="on off" SIGNED_SET_ONE_THREAD=0 SIGNED_SET_HELPER_RATES= \
#   test/bench/signed_set.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$BENCH_DIR/signed_lib.sh"

KEYS=${SIGNED_SET_KEYS:-10000}
REPS=${SIGNED_SET_REPS:-3}
SECS=${SIGNED_SET_SECS:-10}
CLIENTS=${SIGNED_SET_CLIENTS:-1}
SYNC=${SIGNED_SET_SYNC:-on off}
ONE_THREAD=${SIGNED_SET_ONE_THREAD:-0}
HELPER_RATES=${SIGNED_SET_HELPER_RATES:-}
TARGET_RSA=0.8
TARGET_ED=0.7

bench_cluster_start
bench_database bench_signed

W="$BENCH_OUT/signed_set"
mkdir -p "$W"
chmod 755 "$W"
: >"$W/foreign"
for alg in rsa ed25519; do
	gen_key "$alg" "$W/$alg.key"
done

# use_key ALG: the node signs with the key of ALG (none: no key); waits
# until new sessions see it.
use_key() {
	local want=""
	if [ "$1" = none ]; then
		sql -c "ALTER SYSTEM RESET scuttlebutt.signing_key_file" -c "SELECT pg_reload_conf()" >/dev/null
	else
		sql -c "ALTER SYSTEM SET scuttlebutt.signing_key_file = '$W/$1.key'" -c "SELECT pg_reload_conf()" >/dev/null
		want=$(<"$W/$1.key.pub")
	fi
	for _ in $(seq 1 100); do
		[ "$(sql1 -c "SELECT coalesce(scuttlebutt.node_public_key(), '')")" = "$want" ] && return 0
		sleep 0.1
	done
	die "the server does not sign with the $1 key after a reload: node_public_key() is '$(sql1 -c "SELECT scuttlebutt.node_public_key()")'; see the server log"
}

# load MODEL ALG: MODEL (signed for ALG, or unsigned with ALG=none) holding
# keys k1..k$KEYS, written with set_many() under the current key.
load() {
	{
		echo "SELECT scuttlebutt.drop_model('$1') FROM scuttlebutt.registry WHERE name = '$1';"
		signed_model_sql "$1" "$2"
		echo "SELECT scuttlebutt.set_many('$1', (SELECT jsonb_object_agg('k' || i, jsonb_build_object('v', 0)) FROM generate_series(1, $KEYS) i));"
	} | sql >/dev/null || die "loading model $1 failed"
}

for m in s_rsa s_ed25519 plain; do
	cat >"$W/$m.pgb" <<PGB
\\set k random(1, $KEYS)
\\set v random(1, 1000000000)
SELECT scuttlebutt.set('$m', 'k' || :k, jsonb_build_object('v', :v::integer));
PGB
done
# s_rsa_1t: set() on s_rsa with scuttlebutt.sign_threads = off
cp "$W/s_rsa.pgb" "$W/s_rsa_1t.pgb"

# pgbench_run MODEL SYNC REP: one pgbench run of set() on MODEL with
# synchronous_commit SYNC, appends its TPS to $W/MODEL.SYNC.tps.
pgbench_run() {
	local m=$1 sync=$2 rep=$3 out tps opts
	opts="-c synchronous_commit=$sync"
	[ "$m" = s_rsa_1t ] && opts="$opts -c scuttlebutt.sign_threads=off"
	for try in 1 2 3; do
		sql -c "VACUUM scuttlebutt.updates" -c "VACUUM scuttlebutt.clocks" -c "CHECKPOINT" >/dev/null
		out="$W/$m.$sync.$rep.$try.log"
		quiet_gate
		disturb_begin
		PGOPTIONS="$opts" "$PGBIN/pgbench" -n -M prepared -c "$CLIENTS" -j "$CLIENTS" \
			-T "$SECS" -f "$W/$m.pgb" >"$out" 2>&1 || die "pgbench on $m failed: $(tail -5 "$out")"
		disturb_end "$W/foreign.all"
		grep -q '^number of failed transactions: 0 ' "$out" || die "pgbench reported failed transactions, see $out"
		tps=$(awk '/^tps = / { print $3; exit }' "$out")
		if [ "$(tail -1 "$W/foreign.all")" -lt "${BENCH_MAX_FOREIGN:-10}" ] || [ "$try" -eq 3 ]; then
			break
		fi
		log "signed_set: $m run disturbed ($(tail -1 "$W/foreign.all")% CPU elsewhere, $tps tps), repeating"
	done
	echo "$tps" >>"$W/$m.$sync.tps"
	tail -1 "$W/foreign.all" >>"$W/foreign"
	log "signed_set: rep=$rep set() on $m, synchronous_commit=$sync: $tps tps (foreign CPU $(tail -1 "$W/foreign.all")%)"
}

# run SIDE REP: one measurement (openssl-<alg>, or <model>:<sync>).
run() {
	case $1 in
		openssl-*)
			openssl_speed "${1#openssl-}" "$SECS" "$W/$1"
			tail -1 "$W/$1.foreign" >>"$W/foreign"
			;;
		*) pgbench_run "${1%:*}" "${1#*:}" "$2" ;;
	esac
}

# with_sync MODEL...: each MODEL once per synchronous_commit setting.
with_sync() {
	local m s
	for m in "$@"; do
		for s in $SYNC; do printf '%s:%s ' "$m" "$s"; done
	done
}

# part ALG SIDES: the key of ALG, then $REPS repetitions of SIDES.
part() {
	local alg=$1 sides=$2 rep order side
	use_key "$alg"
	log "signed_set: $(alg_label "$alg") part, node $(sql1 -c "SELECT scuttlebutt.node_id()")"
	for rep in $(seq 1 "$REPS"); do
		if [ $((rep % 2)) -eq 1 ]; then order=$sides; else order=$(echo "$sides" | awk '{ for (i = NF; i > 0; i--) printf "%s ", $i }'); fi
		for side in $order; do
			run "$side" "$rep"
		done
	done
}

# check_signatures MODEL ALG: 20 stored updates of MODEL carry a signature
# that openssl verifies against the public key of ALG over
# JSON.stringify([change, ts, source]) (the update without element 3).
check_signatures() {
	local m=$1 alg=$2 i=0 line data sig node_id
	node_id=$("$OPENSSL" dgst -sha1 -binary "$W/$alg.key.pub" | base64)
	while IFS= read -r line; do
		i=$((i + 1))
		data=$("$NODE" -e 'const u = JSON.parse(process.argv[1]); u.pop(); process.stdout.write(JSON.stringify(u))' "$line")
		sig=$("$NODE" -e 'process.stdout.write(JSON.parse(process.argv[1])[3] || "")' "$line")
		[ -n "$sig" ] || die "update of $m not signed: $line"
		printf '%s' "$data" >"$W/check.data"
		printf '%s' "$sig" | base64 -d >"$W/check.sig"
		if [ "$alg" = rsa ]; then
			"$OPENSSL" dgst -sha1 -verify "$W/$alg.key.pub" -signature "$W/check.sig" "$W/check.data" >/dev/null
		else
			"$OPENSSL" pkeyutl -verify -pubin -inkey "$W/$alg.key.pub" -rawin -in "$W/check.data" -sigfile "$W/check.sig" >/dev/null
		fi || die "the signature of an update of $m does not verify with openssl: $line"
	done < <(sql1 -c "SELECT line FROM scuttlebutt.export('$m') AS line WHERE line LIKE '[%' AND line LIKE '%\"$node_id\"%' LIMIT 20")
	[ "$i" -eq 20 ] || die "found $i updates of $m signed by the node $node_id, expected 20"
}

for m in s_rsa s_rsa_1t s_ed25519 plain; do
	for s in $SYNC; do : >"$W/$m.$s.tps"; done
done
for alg in rsa ed25519; do : >"$W/openssl-$alg.sign"; : >"$W/openssl-$alg.verify"; : >"$W/openssl-$alg.foreign"; done

log "signed_set: loading $KEYS keys into s_rsa, s_ed25519 and plain"
use_key rsa
load s_rsa rsa
load plain none
use_key ed25519
load s_ed25519 ed25519
sql -c "VACUUM ANALYZE scuttlebutt.updates" -c "VACUUM ANALYZE scuttlebutt.clocks" >/dev/null

if [ "$ONE_THREAD" = 1 ]; then
	part rsa "openssl-rsa $(with_sync s_rsa s_rsa_1t)"
else
	part rsa "openssl-rsa $(with_sync s_rsa)"
fi
check_signatures s_rsa rsa

# helper_cpu RATE: set() on s_rsa at RATE/s (0: unthrottled) for $SECS s;
# records the CPU of the signing backend and of its helper thread, as % of
# a core, measured from 2 s in to 1 s before the end
helper_cpu() {
	local rate=$1 out="$W/helper.$1.log" pid tid t0b t0h t1b t1h ticks span rated
	ticks=$(getconf CLK_TCK)
	span=$((SECS - 3))
	[ "$span" -ge 1 ] || die "SIGNED_SET_HELPER_RATES needs SIGNED_SET_SECS of 4 or more"
	rated=()
	[ "$rate" -gt 0 ] && rated=(-R "$rate")
	quiet_gate
	PGOPTIONS="-c synchronous_commit=on" "$PGBIN/pgbench" -n -M prepared -c 1 -j 1 "${rated[@]}" \
		-T "$SECS" -f "$W/s_rsa.pgb" >"$out" 2>&1 &
	sleep 2
	pid=$(sql1 -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgbench' LIMIT 1")
	[ -n "$pid" ] || die "no pgbench session found for the helper's CPU"
	tid=$(ls "/proc/$pid/task" | grep -vx "$pid" | head -1)
	[ -n "$tid" ] || die "the signing backend $pid runs no helper thread"
	t0b=$(awk '{ print $14 + $15 }' "/proc/$pid/task/$pid/stat")
	t0h=$(awk '{ print $14 + $15 }' "/proc/$pid/task/$tid/stat")
	sleep "$span"
	t1b=$(awk '{ print $14 + $15 }' "/proc/$pid/task/$pid/stat")
	t1h=$(awk '{ print $14 + $15 }' "/proc/$pid/task/$tid/stat")
	wait $! || die "pgbench on s_rsa at rate $rate failed: $(tail -5 "$out")"
	local tps backend helper
	tps=$(awk '/^tps = / { printf "%.0f", $3; exit }' "$out")
	backend=$(awk -v a="$t0b" -v b="$t1b" -v t="$ticks" -v s="$span" 'BEGIN { printf "%.0f", (b - a) * 100 / t / s }')
	helper=$(awk -v a="$t0h" -v b="$t1h" -v t="$ticks" -v s="$span" 'BEGIN { printf "%.0f", (b - a) * 100 / t / s }')
	log "signed_set: set() on s_rsa at ${rate:-0}/s offered: $tps tps, backend $backend %, helper $helper % of a core"
	record signed_set "RSA 2048, sync_commit=on, $([ "$rate" -gt 0 ] && echo "$rate/s offered" || echo unthrottled) ($tps tps): backend vs helper thread CPU" \
		"$backend" "$helper" "% of a core (backend, helper)" "-" "-" "info"
}
for rate in $HELPER_RATES; do
	helper_cpu "$rate"
done
part ed25519 "$(with_sync plain s_ed25519) openssl-ed25519"
check_signatures s_ed25519 ed25519
use_key none

for m in s_rsa s_ed25519 plain; do
	n=$(sql1 -c "SELECT count(*) FROM scuttlebutt.keys('$m')")
	[ "$n" -eq "$KEYS" ] || die "model $m holds $n keys, expected $KEYS"
	for s in $SYNC; do log "signed_set: raw $m synchronous_commit=$s tps: $(paste -sd' ' "$W/$m.$s.tps")"; done
done
if [ "$ONE_THREAD" = 1 ]; then
	for s in $SYNC; do log "signed_set: raw s_rsa with sign_threads=off synchronous_commit=$s tps: $(paste -sd' ' "$W/s_rsa_1t.$s.tps")"; done
fi
for alg in rsa ed25519; do log "signed_set: raw openssl $alg sign/s: $(paste -sd' ' "$W/openssl-$alg.sign")"; done

rsa_sign=$(median <"$W/openssl-rsa.sign")
ed_sign=$(median <"$W/openssl-ed25519.sign")
for s in $SYNC; do
	how="tps (median of $REPS x ${SECS}s, clients=$CLIENTS)"
	rsa_tps=$(median <"$W/s_rsa.$s.tps")
	ed_tps=$(median <"$W/s_ed25519.$s.tps")
	plain_tps=$(median <"$W/plain.$s.tps")
	r=$(ratio "$rsa_tps" "$rsa_sign")
	record signed_set "RSA 2048, sync_commit=$s: signed set() vs openssl speed sign/s" "$rsa_sign" "$rsa_tps" "$how" "$r" ">= $TARGET_RSA" "$(verdict "$r" '>=' "$TARGET_RSA")"
	r=$(ratio "$ed_tps" "$plain_tps")
	record signed_set "Ed25519, sync_commit=$s: signed set() vs unsigned set()" "$plain_tps" "$ed_tps" "$how" "$r" ">= $TARGET_ED" "$(verdict "$r" '>=' "$TARGET_ED")"
	record signed_set "Ed25519, sync_commit=$s: signed set() vs openssl speed sign/s" "$ed_sign" "$ed_tps" "$how" "$(ratio "$ed_tps" "$ed_sign")" "-" "info"
	if [ "$ONE_THREAD" = 1 ]; then
		one=$(median <"$W/s_rsa_1t.$s.tps")
		record signed_set "RSA 2048, sync_commit=$s, sign_threads=off: signed set() vs openssl speed sign/s" "$rsa_sign" "$one" "$how" "$(ratio "$one" "$rsa_sign")" "-" "info"
	fi
	record signed_set "RSA 2048, sync_commit=$s: signed set() vs unsigned set() (Ed25519 part's)" "$plain_tps" "$rsa_tps" "$how" "$(ratio "$rsa_tps" "$plain_tps")" "-" "info"
	# what signing adds to a set(), against openssl's time per signature
	record signed_set "RSA 2048, sync_commit=$s: time signing adds per set() vs openssl's per signature" \
		"$(awk -v r="$rsa_sign" 'BEGIN { printf "%.1f", 1e6 / r }')" \
		"$(awk -v a="$rsa_tps" -v b="$plain_tps" 'BEGIN { printf "%.1f", 1e6 / a - 1e6 / b }')" "us" "-" "-" "info"
done
record signed_set "foreign CPU during runs (max)" "-" "$(disturb_max "$W/foreign")" "% of all CPUs" "-" "-" "info"

if [ -z "${BENCH_QUIET:-}" ]; then
	echo
	echo "signed_set: pgbench single-row set(); baselines: openssl speed single-core sign/s (RSA), unsigned set() (Ed25519); ratio = extension / baseline"
	bench_conditions
	echo "openssl: $("$OPENSSL" version)"
	print_table signed_set
fi
# standalone: exit status 2 when a target is missed (run_all.sh checks the
# combined table itself)
if [ -z "${BENCH_QUIET:-}" ] && grep -q $'^signed_set\t.*\tMISS$' "$BENCH_OUT/results.tsv"; then
	exit 2
fi
