# The text a signature covers: JsAppendReparsed (src/jscanon.c) must write
# exactly what Node's JSON.stringify(JSON.parse(text)) writes, for any
# layout a peer may give the same value.  test/fuzz/jscanon_cli (the C code
# as a filter, with AddressSanitizer and UndefinedBehaviorSanitizer) is
# compared byte for byte with Node on the random hostile texts of
# test/interop/json_reparse.js (SB_REPARSE_TEXTS of them, default 20000,
# seeded by SB_TEST_SEED), and the comparison is shown to catch a single
# wrong byte.  Needs clang (test/lib/setup.sh installs it) and node; no
# server.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;

plan skip_all => 'clang is not installed (test/lib/setup.sh installs it)'
  unless system('sh', '-c', 'command -v "${CLANG:-clang}" >/dev/null 2>&1') == 0;

my $top = "$FindBin::RealBin/../..";
my $build = PostgreSQL::Test::Utils::tempdir('reparse');
my $cli = "$build/jscanon_cli";
my $texts = $ENV{SB_REPARSE_TEXTS} // 20000;
my $script = "$top/test/interop/json_reparse.js";

my ($out, $err) = ('', '');
ok( IPC::Run::run(
		[
			'make', '-s', '-C', "$top/test/fuzz", "BUILD=$build",
			'PG_CONFIG=' . ($ENV{PG_CONFIG} // 'pg_config'), $cli
		],
		'>', \$out, '2>', \$err),
	'jscanon_cli builds') or diag("$out$err");

# Runs the filter on texts (NUL-separated records), returns its lines
sub reparse
{
	my @in = @_;
	my ($o, $e) = ('', '');
	IPC::Run::run([ $cli, '-z' ], '<', \join('', map { "$_\0" } @in), '>', \$o, '2>', \$e)
	  or die "jscanon_cli failed: $e";
	return split /\n/, $o, -1;
}

# a few cases of the protocol notes, without node
my @got = reparse(
	'{"b":1,"10":2,"1":3,"a":4,"4294967295":5,"4294967294":6,"01":7}',
	"[ 1E2 ,\t1.50,\r\n-0, 1e-7 ,1e21, 5e-324, 1e400 ]",
	'{"a":1,"b":2,"\u0061":3}',
	'"\u0041\/\ud83d\ude00\u001F"',
	'"\u0000"', '"\ud800"', '[1,]', '{"a":1 "b":2}');
is_deeply(
	\@got,
	[
		'{"1":3,"10":2,"4294967294":6,"b":1,"a":4,"4294967295":5,"01":7}',
		'[100,1.5,0,1e-7,1e+21,5e-324,null]',
		'{"a":3,"b":2}',
		"\"A/\xf0\x9f\x98\x80\\u001f\"",
		'INVALID', 'INVALID', 'INVALID', 'INVALID', ''
	],
	'key order, repeated keys, numbers, escapes, and what is refused');

# the differential test against Node
($out, $err) = ('', '');
my $ran = IPC::Run::run([ 'node', $script, $cli, $texts ], '>', \$out, '2>', \$err);
ok($ran, "Node and jscanon.c agree on $texts random texts") or diag("$out$err");
note($out);
my ($compared) = $out =~ /^compared (\d+) texts byte for byte, all equal/m;
cmp_ok($compared // 0, '>=', $texts, 'every text was compared');

# the comparison catches one wrong byte: a filter that appends a space to
# its 50th line
my $wrapper = "$build/off_by_a_space.sh";
open(my $fh, '>', $wrapper) or die "could not write $wrapper: $!";
print $fh "#!/bin/sh\n\"$cli\" \"\$@\" | sed '50s/\$/ /'\n";
close($fh);
chmod(0755, $wrapper) or die "could not chmod $wrapper: $!";
($out, $err) = ('', '');
$ran = IPC::Run::run([ 'node', $script, $wrapper, 200 ], '>', \$out, '2>', \$err);
ok(!$ran, 'a single wrong byte fails the comparison');
like($out, qr/^MISMATCH \(\w[^)]*\) #49$/m, 'and names the text');

done_testing();
