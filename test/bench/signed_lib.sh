# test/bench/signed_lib.sh: helpers of the signed-update benchmarks
# (signed_verify.sh, signed_set.sh, signed_sync.sh), sourced after lib.sh.
#
# Key types are named "rsa" (RSA 2048, the reference's RSA-SHA1 PKCS#1
# v1.5) and "ed25519".  The baselines are OpenSSL's own single-core figures
# for the same key type and size, "openssl speed -seconds N rsa2048" and
# "openssl speed -seconds N ed25519", run in the same script, interleaved
# with the extension's runs, gated on foreign CPU like them.
#
# Environment (besides lib.sh's):
#   NODE      node.js binary (default: node); the signed dumps are written
#             by js/sign_dump.js with the reference scuttlebutt package
#             (npm ci in test/)
#   OPENSSL   openssl binary (default: openssl)

NODE=${NODE:-node}
OPENSSL=${OPENSSL:-openssl}

# alg_label ALG: how the tables name the key type.
alg_label() { case $1 in rsa) echo "RSA 2048" ;; ed25519) echo "Ed25519" ;; *) die "unknown key type $1" ;; esac; }

# alg_model ALG: the signature algorithm of a signed model for keys of ALG.
alg_model() { case $1 in rsa) echo "rsa-sha1" ;; ed25519) echo "ed25519" ;; *) die "unknown key type $1" ;; esac; }

# alg_speed ALG: the argument of "openssl speed" for ALG.
alg_speed() { case $1 in rsa) echo "rsa2048" ;; ed25519) echo "ed25519" ;; *) die "unknown key type $1" ;; esac; }

# gen_key ALG FILE: a new private key of type ALG in FILE (PKCS#8 PEM),
# readable by the cluster's owner only (what scuttlebutt.signing_key_file
# accepts); its public key (SPKI PEM, as "openssl pkey -pubout" writes it)
# in FILE.pub.
gen_key() {
	case $1 in
		rsa) "$OPENSSL" genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$2" 2>/dev/null ;;
		ed25519) "$OPENSSL" genpkey -algorithm ed25519 -out "$2" 2>/dev/null ;;
	esac || die "openssl genpkey $1 failed"
	"$OPENSSL" pkey -in "$2" -pubout -out "$2.pub" || die "openssl pkey -pubout failed"
	chmod 600 "$2"
	chmod 644 "$2.pub"
	chown postgres: "$2" "$2.pub" 2>/dev/null || true
}

# openssl_speed ALG SECS OUT: one "openssl speed" run of ALG for SECS
# seconds per operation, single process (openssl's default: one core);
# appends its sign/s to OUT.sign and verify/s to OUT.verify and its foreign
# CPU share to OUT.foreign.  Parses the result line:
#   rsa 2048 bits 0.000257s 0.000015s   3892.5  66320.0
#    253 bits EdDSA (Ed25519)   0.0000s   0.0001s  36866.5  13610.0
openssl_speed() {
	local alg=$1 secs=$2 out=$3 line
	quiet_gate
	disturb_begin
	"$OPENSSL" speed -seconds "$secs" "$(alg_speed "$alg")" >"$out.log" 2>&1 ||
		die "openssl speed $(alg_speed "$alg") failed: $(tail -3 "$out.log")"
	disturb_end "$out.foreign"
	line=$(awk '/^rsa 2048 bits / || /EdDSA \(Ed25519\)/ { print $(NF - 1), $NF }' "$out.log" | tail -1)
	[ -n "$line" ] || die "no result line in openssl speed's output: $(tail -3 "$out.log")"
	echo "${line% *}" >>"$out.sign"
	echo "${line#* }" >>"$out.verify"
	log "openssl speed $(alg_speed "$alg"): sign $(tail -1 "$out.sign")/s, verify $(tail -1 "$out.verify")/s (foreign CPU $(tail -1 "$out.foreign")%)"
}

# sign_dump KEY N PREFIX [CHUNK]: N signed updates (keys k1..kN, as
# build_model writes them) from the source owning private key KEY, written
# by js/sign_dump.js: PREFIX.0, PREFIX.1, ... (CHUNK updates per file,
# default all), PREFIX.pub and PREFIX.id.  Readable by the servers
# (pg_read_file).
sign_dump() {
	local key=$1 n=$2 pre=$3 chunk=${4:-$2} t0
	[ -d "$BENCH_DIR/../node_modules/scuttlebutt" ] || die "run npm ci in test/ first (js/sign_dump.js needs the reference scuttlebutt package)"
	t0=$(date +%s)
	(cd "$BENCH_DIR/js" && "$NODE" sign_dump.js "$key" "$n" "$pre" "$chunk") >"$pre.log" 2>&1 ||
		die "sign_dump.js failed: $(tail -5 "$pre.log")"
	chmod 644 "$pre".*
	cmp -s "$pre.pub" "$key.pub" || die "js/sign_dump.js's public key differs from openssl pkey -pubout's"
	log "signed $n updates with $(basename "$key") in $(($(date +%s) - t0)) s (source $(<"$pre.id"))"
}

# trust_on NAME PREFIX: server NAME (servers_lib.sh) trusts the key of
# the dump PREFIX; checks the id trust_key() returns is the dump's source.
trust_on() {
	local id
	id=$(sqlx1 "$1" -c "SELECT scuttlebutt.trust_key(pg_read_file('$2.pub'))")
	[ "$id" = "$(<"$2.id")" ] || die "trust_key() on $1 returned '$id', the dump's source is '$(<"$2.id")'"
}

# signed_model_sql MODEL ALG: the statements creating MODEL signed with the
# algorithm of ALG keys (none: unsigned).
signed_model_sql() {
	if [ "$2" = none ]; then
		echo "SELECT scuttlebutt.create_model('$1');"
	else
		echo "SELECT scuttlebutt.create_model('$1', 'model', true);"
		echo "SELECT scuttlebutt.set_signature_algorithm('$1', '$(alg_model "$2")');"
	fi
}

# lib.sh's disturb_end first waits (_cluster_settle) until the first
# server's postmaster has no more children than before the run: the
# backends of a finished client exit a moment after it.  After a libpq
# pull that server keeps the peer's sessions (TCP from 127.0.0.1; the
# scripts' own sessions use the Unix socket), and the wait would last its
# full 3 s, much longer on a loaded machine: those are not counted.
_cluster_settle() {
	local k c
	for _ in $(seq 1 300); do
		k=0
		for c in $(pgrep -P "$BENCH_POSTMASTER"); do
			case $(tr '\0' ' ' <"/proc/$c/cmdline" 2>/dev/null) in
				*"127.0.0.1("*) ;;
				*) k=$((k + 1)) ;;
			esac
		done
		[ "$k" -le "$1" ] && return 0
		sleep 0.01
	done
}

# rate N MS: N per second in MS milliseconds.
rate() { awk -v n="$1" -v ms="$2" 'BEGIN { if (ms <= 0) print "nan"; else printf "%.1f\n", n * 1000 / ms }'; }
