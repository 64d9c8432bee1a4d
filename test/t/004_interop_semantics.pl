# Merge rules, history(model, clock), ties, rejected updates and local
# timestamps against the reference packages (test/interop/semantics.js).
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

my $node = ScuttlebuttTest::new_node('semantics');

ScuttlebuttTest::run_interop($node, 'semantics.js');

$node->stop;
done_testing();
