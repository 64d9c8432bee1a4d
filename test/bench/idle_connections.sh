#!/usr/bin/env bash
# test/bench/idle_connections.sh: the replication worker's memory per idle
# incoming stream connection, and its CPU while they idle.
#
# Server "a" (a stream listener; max_connections and
# max_connections_per_address raised to $CONNS) holds model m with one key.
# A Perl client opens $CONNS connections from 127.0.0.1; on each it sends a
# header, reads the server's header, history and "SYNC", and answers
# "SYNC", as a JavaScript client does, then leaves it idle.  The worker's
# RssAnon (its private memory) and Pss (smaps_rollup) are read before and
# with the connections open: the growth per connection is printed in kB.
# Then, the connections idle, the worker's CPU time over 10 s with one
# local write a second (which each connection is sent), against the same
# with no connection.
#
#   IDLE_CONNS=2000 test/bench/idle_connections.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$BENCH_DIR/stream_lib.sh"

CONNS=${IDLE_CONNS:-2000}
W="$SERVERS_TMP/idle"
mkdir -p "$W"
BENCH_EXTRA_CONF="scuttlebutt.max_connections = $CONNS
scuttlebutt.max_connections_per_address = $CONNS" stream_server a
sqlx a -c "SELECT scuttlebutt.create_model('m'); SELECT scuttlebutt.set('m', 'k', '1')" >/dev/null
pid=$(worker_pid a)
[ -n "$pid" ] || die "no replication worker on a"
pss_kb() { awk '$1 == "Pss:" { print $2 }' "/proc/$1/smaps_rollup"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# cpu_over_10s: the worker's CPU ticks over 10 s with a write a second
cpu_over_10s() {
	local t0 i
	t0=$(cpu_ticks "$pid")
	for i in $(seq 1 10); do
		sqlx a -c "SELECT scuttlebutt.set('m', 'k', '$i')" >/dev/null
		sleep 1
	done
	echo $(($(cpu_ticks "$pid") - t0))
}

cpu_none=$(cpu_over_10s)
rss0=$(status_kb "$pid" RssAnon)
pss0=$(pss_kb "$pid")

# the client: opens and handshakes CONNS connections, writes "ready", and
# holds them until its standard input closes
mkfifo "$W/hold"
perl -MIO::Socket::INET -e '
	my ($port, $n, $ready) = @ARGV;
	my @socks;
	for my $i (1 .. $n) {
		my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $port, Proto => "tcp")
		  or die "connection $i: $!";
		print $s qq({"id":"IDLE$i","clock":{},"meta":"m"}\n);
		$s->flush;
		while (defined(my $line = <$s>)) { last if $line eq "\"SYNC\"\n"; }
		print $s qq("SYNC"\n);
		$s->flush;
		push @socks, $s;
	}
	open(my $f, ">", $ready) or die; print $f scalar(@socks), "\n"; close $f;
	<STDIN>;
' "${LISTEN_OF[a]}" "$CONNS" "$W/ready" <"$W/hold" &
client=$!
track_pid "$client"
exec 7>"$W/hold"
t0=$(date +%s)
until [ -s "$W/ready" ]; do
	kill -0 "$client" 2>/dev/null || die "the client failed"
	sleep 0.5
done
log "idle_connections: $CONNS connections open in $(($(date +%s) - t0)) s"
held=$(sqlx a -At -c "SELECT count(*) FROM scuttlebutt.peer_status WHERE direction = 'in' AND state = 'live'")
[ "$held" -eq "$CONNS" ] || die "a holds $held live incoming connections, expected $CONNS"
sleep 2
rss1=$(status_kb "$pid" RssAnon)
pss1=$(pss_kb "$pid")
cpu_idle=$(cpu_over_10s)
exec 7>&-
wait "$client" || true

printf '%-36s %12s\n' "connections" "$CONNS"
printf '%-36s %12s\n' "worker RssAnon before (kB)" "$rss0"
printf '%-36s %12s\n' "worker RssAnon with them (kB)" "$rss1"
printf '%-36s %12.1f\n' "RssAnon per connection (kB)" "$(echo "($rss1 - $rss0) / $CONNS" | bc -l)"
printf '%-36s %12.4f\n' "RssAnon per connection (MB)" "$(echo "($rss1 - $rss0) / $CONNS / 1024" | bc -l)"
printf '%-36s %12.1f\n' "Pss per connection (kB)" "$(echo "($pss1 - $pss0) / $CONNS" | bc -l)"
printf '%-36s %12s\n' "worker CPU ticks, 10 writes, none" "$cpu_none"
printf '%-36s %12s\n' "worker CPU ticks, 10 writes, all" "$cpu_idle"
