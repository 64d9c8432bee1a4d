#!/usr/bin/env bash
# test/bench/signed_verify.sh: how fast signed updates are verified on the
# way in, against OpenSSL's single-core verification rate for the same key
# type and size, for RSA 2048 and Ed25519.
#
# Per key type, once per run: a new key pair (openssl genpkey) and a dump of
# $N updates signed with it by js/sign_dump.js (keys k1..kN, values
# {"v": i, "s": "value i"}; RSA signatures by the reference's security.js,
# Ed25519 ones by crypto.sign over the same bytes).  Two servers (a, b,
# configured as the libpq benchmarks': libpq_lib.sh) trust the key; a holds
# the dump in signed model p_<alg> (imported, untimed).
#
# Per repetition and key type, in an order flipping every repetition:
#   openssl:  "openssl speed -seconds $SECS rsa2048|ed25519": verify/s;
#   import:   on b, into signed model i_<alg> (dropped and created again,
#             empty): SELECT scuttlebutt.import('i_<alg>', pg_read_file(dump)),
#             timed by the server's clock around the statement (reading
#             the dump from the page cache is included, about 1 %);
#   pull:     b fresh (no peer, p_<alg> dropped and created again, signed,
#             the tables truncated, no connection left), then in one psql
#             session: add_peer('p_<alg>', a) + wait_for_sync, timed as in
#             libpq_sync.sh;
#   import_alone, pull_alone (info): the same with scuttlebutt.verify_threads
#             = 0 (b's worker reloaded for the pull): the process verifies
#             alone, as before the helper threads;
#   unsigned import, unsigned pull (info): the same dump into an unsigned
#             model (signatures kept, not verified): what verification adds.
# Checked after each run: the model holds N updates and the dump's clock.
# Table: median verify/s of openssl vs median updates/s of each path,
# ratio updates/s / openssl verify/s (target >= 0.5).
#
#   VERIFY_UPDATES=100000 VERIFY_REPS=3 VERIFY_SECS=3 VERIFY_ALGS="rsa ed25519" \
#   test/bench/signed_verify.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"
LIBPQ_SIDES=scuttlebutt
. "$BENCH_DIR/libpq_lib.sh"
. "$BENCH_DIR/signed_lib.sh"

N=${VERIFY_UPDATES:-100000}
REPS=${VERIFY_REPS:-3}
SECS=${VERIFY_SECS:-3}
ALGS=${VERIFY_ALGS:-rsa ed25519}
TARGET=0.5

W="$SERVERS_TMP/verify"
mkdir -p "$W"
chmod 755 "$W"
libpq_server a
libpq_server b
: >"$W/foreign"

for alg in $ALGS; do
	gen_key "$alg" "$W/$alg.key"
	sign_dump "$W/$alg.key" "$N" "$W/$alg"
	trust_on a "$W/$alg"
	trust_on b "$W/$alg"
	{
		signed_model_sql "p_$alg" "$alg"
		echo "SELECT scuttlebutt.import('p_$alg', pg_read_file('$W/$alg.0'));"
		echo "VACUUM ANALYZE scuttlebutt.updates;"
		echo "VACUUM ANALYZE scuttlebutt.clocks;"
	} | sqlx a >/dev/null || die "importing the $alg dump into a failed"
	[ "$(model_count a "p_$alg")" -eq "$N" ] || die "a's p_$alg holds $(model_count a "p_$alg") updates, expected $N"
	model_clock a "p_$alg" >"$W/$alg.clock"
	for s in openssl import pull import_alone pull_alone unsigned unsigned_pull; do : >"$W/$alg.$s.ms"; done
	: >"$W/$alg.openssl.verify"
	: >"$W/$alg.openssl.sign"
	: >"$W/$alg.openssl.foreign"
done
log "signed_verify: a's scuttlebutt.updates $(sqlx1 a -c "SELECT pg_size_pretty(pg_total_relation_size('scuttlebutt.updates'))") with indexes"

# check_model MODEL ALG: b's MODEL holds the dump of ALG (count and clock).
check_model() {
	local got
	got=$(model_count b "$1")
	[ "$got" -eq "$N" ] || die "b's $1 holds $got updates, expected $N; b: $(peer_line b)"
	[ "$(model_clock b "$1")" = "$(<"$W/$2.clock")" ] || die "b's clock of $1 differs from the dump's"
}

# fresh_b MODEL ALG: on b no peer, no model but MODEL (created, signed for
# ALG or unsigned with ALG=none), empty tables, no connection left.
fresh_b() {
	{
		echo "SELECT scuttlebutt.remove_peer(id) FROM scuttlebutt.peers;"
		echo "SELECT scuttlebutt.drop_model(name) FROM scuttlebutt.registry;"
		echo "TRUNCATE scuttlebutt.updates, scuttlebutt.clocks;"
		signed_model_sql "$1" "$2"
	} | sqlx b >/dev/null
	wait_no_connections a b
	sqlx b -c "VACUUM ANALYZE scuttlebutt.updates" -c "VACUUM ANALYZE scuttlebutt.clocks" -c "CHECKPOINT" >/dev/null
	sqlx a -c "CHECKPOINT" >/dev/null
}

# timed TAG: run TAG.sql on b, whose first statement prints the server's
# clock (ms) and whose last prints it again as its last column, gated on
# foreign CPU; sets MS to the elapsed ms.  (Not inside $(...): lib.sh's
# disturb_* read the children's CPU of this shell.)
timed() {
	local tag=$1 t0 t1
	quiet_gate
	disturb_begin
	sqlx b -At -F ' ' -f "$tag.sql" >"$tag.out" 2>"$tag.err" || die "$(basename "$tag") failed: $(cat "$tag.err" "$tag.out" | head -5)"
	disturb_end "$W/foreign.all"
	t0=$(sed -n 1p "$tag.out")
	t1=$(tail -1 "$tag.out" | awk '{ print $NF }')
	MS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f\n", b - a }')
}

# b_verify_threads N|DEFAULT: scuttlebutt.verify_threads in b's
# configuration (its worker's), reloaded
b_verify_threads() {
	if [ "$1" = DEFAULT ]; then
		sqlx b -c "ALTER SYSTEM RESET scuttlebutt.verify_threads" -c "SELECT pg_reload_conf()" >/dev/null
	else
		sqlx b -c "ALTER SYSTEM SET scuttlebutt.verify_threads = $1" -c "SELECT pg_reload_conf()" >/dev/null
	fi
}

# run SIDE ALG REP: one measurement; appends to $W/ALG.SIDE.ms (openssl:
# to $W/ALG.openssl.*).
run() {
	local side=$1 alg=$2 rep=$3 tag="$W/$2.$1.$3" ms model
	case $side in
		openssl)
			openssl_speed "$alg" "$SECS" "$W/$alg.openssl"
			tail -1 "$W/$alg.openssl.foreign" >>"$W/foreign"
			return 0
			;;
		import | import_alone | unsigned)
			if [ "$side" = unsigned ]; then model=u_$alg; fresh_b "$model" none; else model=i_$alg; fresh_b "$model" "$alg"; fi
			cat >"$tag.sql" <<SQL
SET scuttlebutt.verify_threads = $([ "$side" = import_alone ] && echo 0 || echo DEFAULT);
SELECT extract(epoch FROM clock_timestamp()) * 1000;
SELECT scuttlebutt.import('$model', pg_read_file('$W/$alg.0')), extract(epoch FROM clock_timestamp()) * 1000;
SQL
			;;
		pull | pull_alone | unsigned_pull)
			model=p_$alg
			if [ "$side" = unsigned_pull ]; then fresh_b "$model" none; else fresh_b "$model" "$alg"; fi
			[ "$side" = pull_alone ] && b_verify_threads 0
			cat >"$tag.sql" <<SQL
SELECT extract(epoch FROM clock_timestamp()) * 1000;
SELECT scuttlebutt.add_peer('$model', '$(conninfo a)');
SELECT scuttlebutt.wait_for_sync('$model', '600s'), extract(epoch FROM clock_timestamp()) * 1000;
SQL
			;;
	esac
	timed "$tag"
	ms=$MS
	[ "$side" = pull_alone ] && b_verify_threads DEFAULT
	if [ "${side%_alone}" = pull ] || [ "$side" = unsigned_pull ]; then
		[ "$(tail -1 "$tag.out" | awk '{ print $1 }')" = t ] || die "wait_for_sync('$model') on b did not return true: $(cat "$tag.out"); b: $(peer_line b)"
		check_model "$model" "$alg"
		log "signed_verify: b: $(peer_line b)"
		remove_peers b
	else
		check_model "$model" "$alg"
	fi
	echo "$ms" >>"$W/$alg.$side.ms"
	tail -1 "$W/foreign.all" >>"$W/foreign"
	log "signed_verify: $(alg_label "$alg") $side rep=$rep: $N updates in $(awk -v ms="$ms" 'BEGIN { printf "%.2f s", ms / 1000 }') = $(rate "$N" "$ms") updates/s (foreign CPU $(tail -1 "$W/foreign.all")%)"
}

SIDES=${VERIFY_SIDES:-openssl import pull import_alone pull_alone unsigned unsigned_pull}
for rep in $(seq 1 "$REPS"); do
	for alg in $ALGS; do
		if [ $((rep % 2)) -eq 1 ]; then order=$SIDES; else order=$(echo "$SIDES" | awk '{ for (i = NF; i > 0; i--) printf "%s ", $i }'); fi
		for side in $order; do
			run "$side" "$alg" "$rep"
		done
	done
done

for alg in $ALGS; do
	label=$(alg_label "$alg")
	v=$(median <"$W/$alg.openssl.verify")
	for side in import pull import_alone pull_alone; do
		[ -s "$W/$alg.$side.ms" ] || continue
		u=$(rate "$N" "$(median <"$W/$alg.$side.ms")")
		r=$(ratio "$u" "$v")
		case $side in
			import) what="import() of $N signed updates" ;;
			pull) what="libpq pull of $N signed updates (add_peer + wait_for_sync)" ;;
			import_alone) what="the same import() with verify_threads = 0" ;;
			pull_alone) what="the same pull with verify_threads = 0 on b" ;;
		esac
		if [ "${side%_alone}" = "$side" ]; then
			record signed_verify "$label: $what vs openssl speed verify" "$v" "$u" "updates/s (median of $REPS)" \
				"$r" ">= $TARGET" "$(verdict "$r" '>=' "$TARGET")"
		else
			record signed_verify "$label: $what" "$v" "$u" "updates/s (median of $REPS)" "$r" "-" "info"
		fi
		log "signed_verify: raw $label $side ms: $(paste -sd' ' "$W/$alg.$side.ms")"
	done
	for side in unsigned unsigned_pull; do
		[ -s "$W/$alg.$side.ms" ] || continue
		u=$(rate "$N" "$(median <"$W/$alg.$side.ms")")
		case $side in
			unsigned) what="import() of the same dump into an unsigned model (not verified)" ;;
			unsigned_pull) what="libpq pull of the same updates into an unsigned model (not verified)" ;;
		esac
		record signed_verify "$label: $what" "$v" "$u" "updates/s (median of $REPS)" "$(ratio "$u" "$v")" "-" "info"
	done
	log "signed_verify: raw $label openssl verify/s: $(paste -sd' ' "$W/$alg.openssl.verify")"
done
record signed_verify "foreign CPU during runs (max)" "-" "$(disturb_max "$W/foreign")" "% of all CPUs" "-" "-" "info"

if [ -z "${BENCH_QUIET:-}" ]; then
	echo
	echo "signed_verify: baseline = openssl speed, single core, verifications/s of the same key type; extension = signed updates/s verified and stored on b; ratio = extension / baseline"
	libpq_conditions
	echo "openssl: $("$OPENSSL" version)"
	print_table signed_verify
fi
# standalone: exit status 2 when a target is missed (run_all.sh checks the
# combined table itself)
if [ -z "${BENCH_QUIET:-}" ] && grep -q $'^signed_verify\t.*\tMISS$' "$BENCH_OUT/results.tsv"; then
	exit 2
fi
