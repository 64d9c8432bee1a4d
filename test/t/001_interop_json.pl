# JSON text: scuttlebutt.stringify(jsonb) must write what JavaScript's
# JSON.stringify writes for the same value, byte for byte (the text is what
# peers sign and compare).  The vectors and the oracle live in
# test/interop/json_text.js.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use ScuttlebuttTest;
use Test::More;

ok(ScuttlebuttTest::node_available(), 'node.js and the npm packages are installed (npm ci in test/)')
  or BAIL_OUT('node.js or test/node_modules missing: run "npm ci" in test/');

my $node = ScuttlebuttTest::new_node('json');

ScuttlebuttTest::run_interop($node, 'json_text.js');

# a few fixed cases straight from the protocol notes, without node
is( $node->safe_psql(
		'postgres',
		q{SELECT scuttlebutt.stringify('{"b":1,"10":2,"1":3,"a":4,"4294967295":5,"4294967294":6,"01":7}')}
	),
	'{"1":3,"10":2,"4294967294":6,"a":4,"b":1,"01":7,"4294967295":5}',
	'index-like keys first, then jsonb key order');
is($node->safe_psql('postgres', q{SELECT scuttlebutt.stringify('[0.000001,999000000000000000000,9.99e-7,1e21,-0]')}),
	'[0.000001,999000000000000000000,9.99e-7,1e+21,0]',
	'number notation boundaries');

$node->stop;
done_testing();
