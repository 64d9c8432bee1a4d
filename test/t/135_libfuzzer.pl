# The libFuzzer targets of test/fuzz (the wire message parser, the
# JavaScript JSON text writer and JSON.stringify(JSON.parse(text)), with
# AddressSanitizer and UndefinedBehaviorSanitizer) build, and each runs
# from its committed corpus for SB_LIBFUZZER_SECONDS (default 60) without
# a crash, a sanitizer report or a failed property.  The figures
# (executions, executions per second) are printed.  A crash prints its
# input (Base64) and fails.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;

my $top = "$FindBin::RealBin/../..";
my $build = PostgreSQL::Test::Utils::tempdir('fuzz');
my $seconds = $ENV{SB_LIBFUZZER_SECONDS} // 60;
my @make = ('make', '-s', '-C', "$top/test/fuzz", "BUILD=$build",
	'PG_CONFIG=' . ($ENV{PG_CONFIG} // 'pg_config'));

my ($out, $err) = ('', '');
ok(IPC::Run::run([ @make, 'all' ], '>', \$out, '2>', \$err), 'the fuzz targets build')
  or diag("$out$err");

($out, $err) = ('', '');
my $ran = IPC::Run::run([ @make, 'run', "FUZZ_SECONDS=$seconds" ], '>', \$out, '2>', \$err);
note($out);
ok($ran, "every fuzz target ran ${seconds}s without a crash") or diag("$out$err");
for my $t (qw(fuzz_wire fuzz_jstext fuzz_jscanon))
{
	my ($section) = $out =~ /^== $t\n(.*?)(?=^== |\z)/ms;
	$section //= '';
	like($section, qr/^$t: no crash$/m, "$t: no crash");
	my ($runs) = $section =~ /stat::number_of_executed_units:\s*(\d+)/;
	my ($rate) = $section =~ /stat::average_exec_per_sec:\s*(\d+)/;
	cmp_ok($runs // 0, '>', 1000, "$t: it ran (" . ($runs // 0) . ' executions, '
		  . ($rate // 0) . '/s)');
}

done_testing();
