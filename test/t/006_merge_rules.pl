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

# The sign of the pure function's order for (ts, a) against (ts, b)
sub c_order
{
	my ($a, $b) = @_;
	my $res = '';
	IPC::Run::run([ "$build/merge_test", '5', $a, '5', $b ], '>', \$res)
	  or die "merge_test failed";
	chomp $res;
	return $res + 0;
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
my $n = 0;
foreach my $db (sort { $a cmp $b } keys %{ { postgres => 1, $icu_db => 1 } })
{
	for my $i (0 .. $#sources)
	{
		for my $j (0 .. $#sources)
		{
			next if $i == $j;
			my ($a, $b) = ($sources[$i], $sources[$j]);
			# what the C rule says
			my $ua = $a;
			my $ub = $b;
			utf8::encode($ua);
			utf8::encode($ub);
			my $c = c_order($ua, $ub);
			my $expect = $c > 0 ? $a : $b;

			# what the tables do: a model key and a value, $a arriving first
			$n++;
			my $json_a = JSON::PP->new->ascii(0)->encode($a);
			my $json_b = JSON::PP->new->ascii(0)->encode($b);
			my $sql = <<"SQL";
SELECT scuttlebutt.create_model('m$n', 'model'), scuttlebutt.create_model('v$n', 'value');
SELECT scuttlebutt.apply_update('m$n', '[["k", 1], 1000, $json_a]');
SELECT scuttlebutt.apply_update('m$n', '[["k", 2], 1000, $json_b]');
SELECT scuttlebutt.apply_update('v$n', '[1, 1000, $json_a]');
SELECT scuttlebutt.apply_update('v$n', '[2, 1000, $json_b]');
SELECT (SELECT source FROM scuttlebutt.entries('m$n')) || '|' ||
       (SELECT h ->> 2 FROM scuttlebutt.history('v$n') h);
SQL
			my @lines = split /\n/, psql_text($db, $sql);
			my $winner = $lines[-1];
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
}

$node->stop;
done_testing();
