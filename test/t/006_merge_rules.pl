# The merge rules: the pure functions of src/merge.c pass their unit tests
# (test/unit/merge_test.c, ties included), and the SQL that applies them
# to the tables agrees with them at timestamp ties, also for non-ASCII
# sources and in a database whose default collation (ICU "en") would order
# them differently from bytes.
use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use ScuttlebuttTest;
use Test::More;

my $top = "$FindBin::RealBin/../..";
my $build = PostgreSQL::Test::Utils::tempdir('merge_unit');

# build and run the unit test program
my ($out, $err) = ('', '');
ok( IPC::Run::run([ 'make', '-s', '-C', "$top/test/unit", "BUILD=$build", "$build/merge_test" ],
		'>', \$out, '2>', \$err),
	'the merge rules unit test builds')
  or diag("$out$err");
($out, $err) = ('', '');
my $ran = IPC::Run::run([ "$build/merge_test" ], '>', \$out, '2>', \$err);
ok($ran, 'the merge rules unit test exits 0') or diag("$out$err");

my ($planned) = $out =~ /^1\.\.(\d+)$/m;
my @ok = $out =~ /^ok \d+ - .*$/mg;
my @not_ok = $out =~ /^not ok \d+ - .*$/mg;
ok(defined $planned && $planned >= 30, 'the unit test plans its checks');
is(scalar(@ok), $planned // -1, 'every planned unit check passed');
is_deeply(\@not_ok, [], 'no unit check failed');
like($out, qr/^ok \d+ - tie: greater source wins/m, 'the unit test covers ties');

# A source as test names show it: non-ASCII as U+XXXX (TAP output is bytes,
# and a wide character in it ends some Perls' formatter)
sub shown
{
	return join '', map { ord($_) < 128 ? $_ : sprintf('U+%04X', ord($_)) } split //, shift;
}

# The sign of the pure function's order for (ts, a) against (ts, b), for
# each [a, b] given (byte strings), from one run of the program
sub c_orders
{
	my $res = '';
	IPC::Run::run([ "$build/merge_test", map { ('5', $_->[0], '5', $_->[1]) } @_ ], '>', \$res)
	  or die "merge_test failed";
	my @signs = split /\n/, $res;
	die 'merge_test printed ' . scalar(@signs) . ' signs for ' . scalar(@_) . ' pairs' unless @signs == @_;
	return map { $_ + 0 } @signs;
}

my $node = ScuttlebuttTest::new_node('merge');

# psql with text (not bytes) in and out
sub psql_text
{
	my ($db, $sql) = @_;
	utf8::encode($sql);
	my $res = $node->safe_psql($db, $sql);
	utf8::decode($res);
	return $res;
}

# a database whose default collation sorts é before z (ICU "en"), if ICU
# is there; the rule must not depend on it
my $icu_db = 'postgres';
my ($rc) = $node->psql('postgres',
	q{CREATE DATABASE merge_icu TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'en' LOCALE 'C'});
if ($rc == 0)
{
	$icu_db = 'merge_icu';
	$node->safe_psql($icu_db, 'CREATE EXTENSION scuttlebutt');
	is(psql_text($icu_db, q{SELECT 'é' < 'z'}), 't', 'the ICU database orders é before z');
}
else
{
	note('no ICU: the collation check runs in the C database only');
}

my @sources = ('A', 'B', 'a', 'ab', '10', '9', 'é', 'z', "\x{FFFD}", "\x{1F600}", 'Ω', 'ω');

# Every ordered pair of distinct sources, with the winner the C rule
# picks at a tie (asked once per pair: it does not depend on the database)
my @pairs;
for my $i (0 .. $#sources)
{
	for my $j (0 .. $#sources)
	{
		next if $i == $j;
		my ($a, $b) = ($sources[$i], $sources[$j]);
		push @pairs, [ $a, $b ];
	}
}
my @signs = c_orders(map { [ map { my $u = $_; utf8::encode($u); $u } @$_ ] } @pairs);
push @{ $pairs[$_] }, $signs[$_] > 0 ? $pairs[$_][0] : $pairs[$_][1] for 0 .. $#pairs;

# What the tables do: per pair, a model key and a value of models of
# their own, $a arriving first.  One psql session per database runs every
# pair's statements (each in its own transaction, as psql sends them) and
# tags each pair's result line with the pair's number.
my $n = 0;
foreach my $db (sort { $a cmp $b } keys %{ { postgres => 1, $icu_db => 1 } })
{
	my $sql = '';
	for my $p (0 .. $#pairs)
	{
		my ($a, $b) = @{ $pairs[$p] };
		$n++;
		my $json_a = JSON::PP->new->ascii(0)->encode($a);
		my $json_b = JSON::PP->new->ascii(0)->encode($b);
		$sql .= <<"SQL";
SELECT scuttlebutt.create_model('m$n', 'model'), scuttlebutt.create_model('v$n', 'value');
SELECT scuttlebutt.apply_update('m$n', '[["k", 1], 1000, $json_a]');
SELECT scuttlebutt.apply_update('m$n', '[["k", 2], 1000, $json_b]');
SELECT scuttlebutt.apply_update('v$n', '[1, 1000, $json_a]');
SELECT scuttlebutt.apply_update('v$n', '[2, 1000, $json_b]');
SELECT 'pair $p: ' || (SELECT source FROM scuttlebutt.entries('m$n')) || '|' ||
       (SELECT h ->> 2 FROM scuttlebutt.history('v$n') h);
SQL
	}
	my %winner = map { /^pair (\d+): (.*)$/ ? ($1 => $2) : () } split /\n/, psql_text($db, $sql);
	for my $p (0 .. $#pairs)
	{
		my ($a, $b, $expect) = @{ $pairs[$p] };
		my $winner = $winner{$p} // '(no result)';
		if ($winner ne "$expect|$expect")
		{
			fail("$db: at a tie, " . shown($a) . ' then ' . shown($b) . ': the tables keep ' . shown($expect));
			diag('got ' . shown($winner));
		}
		else
		{
			pass("$db: at a tie, " . shown($a) . ' then ' . shown($b) . ': the tables keep ' . shown($expect));
		}
	}
}

$node->stop;
done_testing();
