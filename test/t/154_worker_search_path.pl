# The worker runs as a superuser: no function of another role may stand in
# for the ones its statements call.
#
# A role that may create objects in schema public (the default before
# PostgreSQL 15, and still common) defines public.unnest(text[]): an exact
# match that PostgreSQL prefers to pg_catalog.unnest(anyarray) under the
# default search_path.  Its body, run as a superuser, would make the role
# superuser and note who ran it.  A stream client then writes an update,
# which the worker applies with statements that call unnest() on a text[].
# Checked: the update is applied, the trojan never ran, the role is still
# not superuser.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use ScuttlebuttTest;
use StreamTest;
use Test::More;

my $node = StreamTest::new_node('searchpath');
sub q1 { StreamTest::q1($node, @_) }

q1(q{CREATE ROLE mallory LOGIN; GRANT CREATE ON SCHEMA public TO mallory});
q1(q{SELECT scuttlebutt.create_model('m')});
my ($rc, $out, $err) = $node->psql('postgres', <<'EOS', extra_params => [ '-U', 'mallory' ]);
CREATE TABLE public.trojan_ran (who name);
GRANT INSERT ON public.trojan_ran TO PUBLIC;
CREATE FUNCTION public.unnest(a text[]) RETURNS SETOF text
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.trojan_ran VALUES (current_user);
	IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
		EXECUTE 'ALTER ROLE mallory SUPERUSER';
	END IF;
	RETURN QUERY SELECT x FROM pg_catalog.unnest(a) x;
END $$;
EOS
is($rc, 0, 'the role defines public.unnest(text[])') or diag($err);
# the overload is real: a session with the default search_path takes it
is(q1(q{SELECT count(*) FROM unnest(ARRAY['a']::text[]); SELECT count(*) FROM public.trojan_ran}),
	"1\n1", 'an ordinary session with the default search_path calls the overload');
q1(q{TRUNCATE public.trojan_ran; ALTER ROLE mallory NOSUPERUSER});

my $c = StreamTest::Raw->new(StreamTest::port($node));
my ($header) = $c->handshake('m', id => 'PEER');
ok(defined $header, 'a stream client connects');
my $ts = sprintf('%.3f', time() * 1000);
$c->send_line(qq([["k","from the peer"],$ts,"PEER"]));
ok($node->poll_query_until('postgres',
	q{SELECT scuttlebutt.get('m', 'k') = '"from the peer"'}),
	'the worker applied the peer\'s update');

is(q1(q{SELECT count(*) FROM public.trojan_ran}), '0',
	'the worker did not call the role\'s unnest()');
is(q1(q{SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'}), 'f',
	'the role did not become superuser');

done_testing();
