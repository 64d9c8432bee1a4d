# Persistence format against the reference packages: export() read by a
# reference createWriteStream(), a reference createReadStream() dump read by
# import(), for each model kind (test/interop/persist.js).
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

my $node = ScuttlebuttTest::new_node('persist');

ScuttlebuttTest::run_interop($node, 'persist.js');

$node->stop;
done_testing();
