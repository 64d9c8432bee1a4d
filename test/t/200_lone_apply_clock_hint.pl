# A lone update (a live pull's, or apply_update()'s: the same path,
# lone_apply.c) advances its source's clock row where that process last
# left it (a hint kept per process), without a probe of clocks_pkey.  The
# row found there is taken only if it is the live, settled row of the
# same model and source; else the index is asked, as before.  One session
# (S) applies, so that its hint is kept between calls:
#
#  - "hint": S's second update of a source scans clocks_pkey no more than
#    its first (the hint is used), and both apply;
#  - "moved": another session advanced the row since (the hinted version
#    is dead): S's next update is applied past it;
#  - "other row": VACUUM FULL rewrote clocks and the hinted TID holds
#    another source's row: that row is left as it was, the right one
#    advanced;
#  - "other model": the same with the row of another model's source of
#    the same name;
#  - "shrunk": VACUUM FULL left clocks shorter than the hinted page: no
#    error, applied;
#  - "wait": another transaction's uncommitted advance of the row is
#    waited for, then S's update is applied past it;
#  - "in progress": the hinted TID holds the row's newest version, of a
#    transaction still in progress (pruning freed the hinted version's
#    line pointer, and that update took it): waited for, as by the
#    index, then applied past it (updating it would fail: not yet
#    visible to anyone else).
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

sub update_of
{
	my ($model, $key, $ts, $source) = @_;
	return qq{SELECT scuttlebutt.apply_update('$model', '[["$key",1],$ts,"$source"]')};
}
sub clock_of
{
	my ($model, $source) = @_;
	return q1(qq{SELECT ts FROM scuttlebutt.clocks
		WHERE model_id = (SELECT id FROM scuttlebutt.registry WHERE name = '$model') AND source = '$source'});
}
sub ctid_of
{
	my ($model, $source) = @_;
	return q1(qq{SELECT ctid FROM scuttlebutt.clocks
		WHERE model_id = (SELECT id FROM scuttlebutt.registry WHERE name = '$model') AND source = '$source'});
}

q1(q{SELECT scuttlebutt.create_model('m')});
# each source's clock row, advanced before (a lone update needs one)
q1(q{SELECT scuttlebutt.apply_update('m', format('[["k",1],1000,"a%s"]', g)::json) FROM generate_series(1, 12) g});

my $s = $node->background_psql('postgres');

# S's update of a source, and the scans of clocks_pkey it made (counted
# within one transaction: the counts pending there are not reported, and
# reset, before it ends)
my $scans = q{SELECT pg_stat_get_xact_numscans('scuttlebutt.clocks_pkey'::regclass)};
sub apply_counted
{
	my ($key, $ts, $source) = @_;
	my ($before, $applied, $after) = split /\n/,
	  $s->query_safe(qq{BEGIN; $scans; } . update_of('m', $key, $ts, $source) . qq{; $scans; COMMIT});
	return "$applied " . ($after - $before);
}

# ---- hint ----
is(apply_counted('h1', 2000, 'a1'), 't 1', 'hint: the first update applies, found by a scan of clocks_pkey');
is(apply_counted('h2', 3000, 'a1'), 't 0', 'hint: the second applies with no scan of clocks_pkey');
is(clock_of('m', 'a1'), 3000, 'hint: a1\'s clock is at the second');

# ---- moved ----
q1(update_of('m', 'mv', 4000, 'a1'));
is(apply_counted('h3', 5000, 'a1'), 't 1',
	'moved: after another session advanced the row, S\'s update applies, found by clocks_pkey');
is(clock_of('m', 'a1'), 5000, 'moved: a1\'s clock is at it');

# ---- other row ----
# rows of new sources after a1's hinted version: VACUUM FULL moves every
# row down by the dead versions before it, one of them onto the hint
q1(q{SELECT scuttlebutt.apply_update('m', format('[["k",1],1000,"b%s"]', g)::json) FROM generate_series(1, 20) g});
my $hinted = ctid_of('m', 'a1');
q1(q{VACUUM FULL scuttlebutt.clocks});
my $there = q1(qq{SELECT source FROM scuttlebutt.clocks WHERE ctid = '$hinted'});
ok($there ne '' && $there ne 'a1', "other row: after VACUUM FULL the hinted TID $hinted holds another source's row ($there)");
my $there_clock = clock_of('m', $there);
is($s->query_safe(update_of('m', 'o1', 6000, 'a1')), 't', 'other row: S\'s update of a1 applies');
is(clock_of('m', 'a1'), 6000, 'other row: a1\'s clock is at it');
is(clock_of('m', $there), $there_clock, "other row: $there\'s clock is as it was");

# ---- other model ----
is($s->query_safe(update_of('m', 'om', 2000, 'a5')), 't', 'other model: S advances a5');
$hinted = ctid_of('m', 'a5');
# twenty models, each with its own source a5, after it
for my $i (1 .. 20)
{
	q1(qq{SELECT scuttlebutt.create_model('om$i')});
	q1(update_of("om$i", 'k', 1000, 'a5'));
}
q1(q{VACUUM FULL scuttlebutt.clocks});
my $other = q1(qq{SELECT r.name FROM scuttlebutt.clocks c JOIN scuttlebutt.registry r ON r.id = c.model_id
	WHERE c.ctid = '$hinted' AND c.source = 'a5'});
like($other, qr/^om\d+$/, "other model: after VACUUM FULL the hinted TID $hinted holds another model's a5 ($other)");
is($s->query_safe(update_of('m', 'om2', 3000, 'a5')), 't', 'other model: S\'s update of m\'s a5 applies');
is(clock_of('m', 'a5'), 3000, 'other model: m\'s a5 is at it');
is(clock_of($other, 'a5'), 1000, "other model: $other\'s a5 is as it was");

# ---- shrunk ----
# S's hint on the last of several pages, then the table one page again
q1(q{SELECT scuttlebutt.create_model('big')});
q1(q{SELECT scuttlebutt.apply_update('big', format('[["k",1],1000,"%s"]', repeat('s', 100) || g)::json) FROM generate_series(1, 300) g});
q1(update_of('m', 'late', 6500, 'a2'));
q1(q{DELETE FROM scuttlebutt.clocks WHERE source = 'a2'});
q1(q{INSERT INTO scuttlebutt.clocks SELECT id, 'a2', 6500 FROM scuttlebutt.registry WHERE name = 'm'});
is($s->query_safe(update_of('m', 's1', 7000, 'a2')), 't', 'shrunk: S advances a2, its row on a later page');
my ($page) = ctid_of('m', 'a2') =~ /^\((\d+),/;
cmp_ok($page, '>', 0, "shrunk: a2's row is on page $page");
q1(q{SELECT scuttlebutt.drop_model('big')});
q1(q{VACUUM FULL scuttlebutt.clocks});
is(q1(q{SELECT pg_relation_size('scuttlebutt.clocks') / current_setting('block_size')::int}), 1,
	'shrunk: clocks is one page after VACUUM FULL');
is($s->query_safe(update_of('m', 's2', 8000, 'a2')), 't', 'shrunk: S\'s next update of a2 applies');
is(clock_of('m', 'a2'), 8000, 'shrunk: a2\'s clock is at it');

# ---- wait ----
is($s->query_safe(update_of('m', 'w1', 9000, 'a3')), 't', 'wait: S advances a3');
my $holder = LibpqTest::hold($node, update_of('m', 'w2', 10000, 'a3') . ';', qr/^t$/m);
ok($holder->{held}, 'wait: another transaction advances a3, not committed');
$s->query_until(qr/waiting/, "\\echo waiting\n" . update_of('m', 'w3', 11000, 'a3') . ";\n");
ok(LibpqTest::waits_on_lock($node, '11000'), 'wait: S\'s update of a3 waits for it');
LibpqTest::release($holder);
is($s->query_safe(q{SELECT 'after'}), "t\nafter", 'wait: then applies');
is(clock_of('m', 'a3'), 11000, 'wait: a3\'s clock is at S\'s update');
is(q1(q{SELECT string_agg(key, ',' ORDER BY key) FROM scuttlebutt.keys('m') key WHERE key LIKE 'w%'}), 'w1,w2,w3',
	'wait: all three updates are held');

# ---- in progress ----
q1(q{VACUUM FULL scuttlebutt.clocks});
is($s->query_safe(update_of('m', 'i1', 12000, 'a4')), 't', 'in progress: S advances a4');
$hinted = ctid_of('m', 'a4');
q1(update_of('m', 'i2', 13000, 'a4'));
# the hinted version dead, its line pointer freed (a heap-only tuple's)
q1(q{VACUUM scuttlebutt.clocks});
my $model_m = q1(q{SELECT id FROM scuttlebutt.registry WHERE name = 'm'});
$holder = LibpqTest::hold($node,
	update_of('m', 'i3', 14000, 'a4') . qq{; SELECT ctid FROM scuttlebutt.clocks WHERE model_id = $model_m AND source = 'a4';},
	qr/^\(\d+,\d+\)$/m);
my ($taken) = $holder->{out} =~ /^(\(\d+,\d+\))$/m;
is($taken, $hinted, "in progress: another transaction's advance of a4, not committed, took the hinted TID $hinted");
$s->query_until(qr/waiting/, "\\echo waiting\n" . update_of('m', 'i4', 15000, 'a4') . ";\n");
ok(LibpqTest::waits_on_lock($node, '15000'), 'in progress: S\'s update of a4 waits for it');
LibpqTest::release($holder);
is($s->query_safe(q{SELECT 'after'}), "t\nafter", 'in progress: then applies');
is(clock_of('m', 'a4'), 15000, 'in progress: a4\'s clock is at S\'s update');

$s->quit;
done_testing();
