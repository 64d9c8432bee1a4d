# poll() and wait_for_commit() read a page as the extension's owner (who
# holds every model's rows): the SQL they may run on the way (the
# sequencer's first read of a model's reservation after a restart) runs
# with search_path pg_catalog, pg_temp, never the caller's.  A role that
# may read a model, and has a schema of its own on its search_path ahead
# of pg_catalog with an "=" operator for int4 and text and a max(float8)
# that fail when run by a superuser, polls right after a restart (the
# reservation not read yet): its objects are never called, and the
# answers are the model's updates.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use LibpqTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = LibpqTest::new_node('n');
sub q1 { LibpqTest::q1($node, @_) }

q1(q{SELECT scuttlebutt.create_model('m')});
q1(q{SELECT scuttlebutt.set('m', 'k1', '1'); SELECT scuttlebutt.set('m', 'k2', '2')});
q1(q{CREATE ROLE reader LOGIN; GRANT CREATE ON DATABASE postgres TO reader});
q1(q{SELECT scuttlebutt.grant('m', 'reader', 'read')});
# reader's own schema: objects that stand in for pg_catalog's, and refuse
# to run as a superuser (the extension's owner here)
$node->safe_psql('postgres', q{
	CREATE SCHEMA trap;
	CREATE FUNCTION trap.refuse_superuser() RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
			RAISE EXCEPTION 'trap called as superuser %', current_user;
		END IF;
	END $$;
	CREATE FUNCTION trap.int4eq(int4, int4) RETURNS bool LANGUAGE plpgsql AS $$
	BEGIN PERFORM trap.refuse_superuser(); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
	CREATE FUNCTION trap.texteq(text, text) RETURNS bool LANGUAGE plpgsql AS $$
	BEGIN PERFORM trap.refuse_superuser(); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
	CREATE OPERATOR trap.= (LEFTARG = int4, RIGHTARG = int4, FUNCTION = trap.int4eq);
	CREATE OPERATOR trap.= (LEFTARG = text, RIGHTARG = text, FUNCTION = trap.texteq);
	CREATE FUNCTION trap.max_sfunc(float8, float8) RETURNS float8 LANGUAGE plpgsql AS $$
	BEGIN PERFORM trap.refuse_superuser(); RETURN pg_catalog.float8larger($1, $2); END $$;
	CREATE AGGREGATE trap.max(float8) (SFUNC = trap.max_sfunc, STYPE = float8);
}, extra_params => [ '-U', 'reader' ]);
# the traps work: called as a superuser, they fail
my ($rc, $out, $err) = $node->psql('postgres',
	q{SET search_path = trap, pg_catalog; SELECT 1 = 1});
like($err, qr/trap called as superuser/, 'the trap fires when a superuser resolves "=" through it');

for my $case ([ 'poll()', q{SELECT count(*) FROM scuttlebutt.poll('m', '{}', 10)}, '3' ],
	[ 'wait_for_commit() with a page',
		q{CALL scuttlebutt.wait_for_commit('m', '{}', 0, 10, 0, 0, NULL)}, undef ])
{
	my ($name, $sql, $want) = @$case;
	# the reservation is read again after a restart, on the first look at the clock
	$node->restart;
	($rc, $out, $err) = $node->psql('postgres', "SET search_path = trap, pg_catalog; $sql",
		extra_params => [ '-U', 'reader' ]);
	is($err, '', "$name as the reader with its schema first, right after a restart: no error")
	  or diag($err);
	is($out, $want, "$name: the page holds the model's updates and its header") if defined $want;
	like($out, qr/"k2"/, "$name: the page holds the model's updates") unless defined $want;
}

done_testing();
