# Helpers shared by the TAP tests in test/t/.
#
#   my $node = ScuttlebuttTest::new_node('name', %init_params);
#       an initialized, started PostgreSQL::Test::Cluster (UTF8, no locale,
#       the library preloaded) with the extension created in "postgres"
#
#   ScuttlebuttTest::run_interop($node, 'script.js', @args);
#       runs test/interop/script.js with the node's connection string and
#       turns every check it reports into a TAP assertion; a message of
#       another kind goes to $ScuttlebuttTest::on_message, if set (a sub
#       given the decoded message)
#
# Loading it also sends every plain safe_psql and poll_query_until of the
# test through a psql session kept open (test/lib/PsqlSession.pm).
package ScuttlebuttTest;

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use PsqlSession;
use Test::More;

our $test_dir = abs_path(dirname(__FILE__) . '/..');    # .../test

# A JSON codec (character strings, like JSON::PP->new): Cpanel::JSON::XS
# where installed, since Perl 5.40's JSON::PP takes seconds per megabyte of
# non-ASCII text (the interop scripts report 700 kB values)
my $json_class = eval { require Cpanel::JSON::XS; 'Cpanel::JSON::XS' } // 'JSON::PP';

sub json_codec
{
	return $json_class->new;
}
# every plain query and poll through a psql session kept open
PsqlSession::install();

our $interop_dir = "$test_dir/interop";
our $on_message;

# initdb once per run and per set of options: the first cluster's fresh
# data directory is kept as a template (under TMPDIR, which test/run.sh
# removes), and later clusters copy it.  initdb costs over a second of CPU
# and the suite makes some two hundred clusters; PostgreSQL 17's
# Cluster.pm does the same (INITDB_TEMPLATE), but not for clusters made
# with initdb options, as ours are.
{
	no warnings 'redefine';
	my $system_or_bail = \&PostgreSQL::Test::Utils::system_or_bail;
	*PostgreSQL::Test::Utils::system_or_bail = sub {
		my ($cmd, $flag, $pgdata, @options) = @_;
		return $system_or_bail->(@_)
		  unless $cmd eq 'initdb' && $flag eq '-D' && $ENV{TMPDIR};
		my $template = "$ENV{TMPDIR}/initdb-template" . join('', @options) =~ s/[^A-Za-z0-9]+/_/gr;
		unless (-d $template)
		{
			my $fresh = "$template.$$";
			$system_or_bail->('initdb', '-D', $fresh, @options);
			# a concurrent test may have made it first: keep that one
			rename($fresh, $template) or $system_or_bail->('rm', '-rf', $fresh);
		}
		$system_or_bail->('cp', '-RPp', $template, $pgdata);
	};
}

# Settings every test node gets.  The library is preloaded, as the
# extension's own regression tests run it.
our $common_conf = <<'EOC';
shared_preload_libraries = 'scuttlebutt'
max_connections = 40
log_min_messages = warning
log_statement = none
EOC

sub new_node
{
	my ($name, %params) = @_;
	my $conf = delete $params{conf} // '';
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%params, extra => [ '--encoding=UTF8', '--no-locale' ]);
	$node->append_conf('postgresql.conf', $common_conf . $conf);
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION scuttlebutt');
	return $node;
}

# Reloads $node's configuration and waits (at most $timeout s) until the
# replication worker has taken it: a reload reaches the worker after the
# backend that polls current_setting(). True once it has.
sub reload_worker
{
	my ($node, $timeout) = @_;
	my $before = $node->safe_psql('postgres', 'SELECT clock_timestamp()');
	$node->reload;
	local $PostgreSQL::Test::Utils::timeout_default = $timeout // 60;
	return $node->poll_query_until('postgres',
		"SELECT scuttlebutt.worker_conf_load_time() > '$before'");
}

# Whether node.js and the npm packages are there (test/run.sh installs
# them with "npm ci").
sub node_available
{
	my $out = '';
	my $ok = eval {
		IPC::Run::run([ 'node', '-e', 'require("scuttlebutt/model"); require("r-value"); console.log("ok")' ],
			'>', \$out, '2>', \my $err, init => sub { chdir $test_dir });
	};
	return $ok && $out =~ /^ok/;
}

# Runs an interop script and reports its checks.  Returns the number of
# checks the script made.
sub run_interop
{
	my ($node, $script, @args) = @_;
	my ($out, $err) = ('', '');
	my $connstr = $node->connstr('postgres');
	my @cmd = ('node', "$interop_dir/$script", $connstr, @args);
	# a script that waits for something that never comes must fail the
	# test, not hang the suite: three times the default timeout
	my $limit = 3 * $PostgreSQL::Test::Utils::timeout_default;
	my $ran = eval {
		IPC::Run::run(\@cmd, '<', \'', '>', \$out, '2>', \$err,
			IPC::Run::timeout($limit));
	};
	$err .= "\n$script: killed after $limit s: $@" if $@;
	my $json = json_codec();    # byte strings in, byte strings out
	my ($done, $checks) = (0, 0);
	for my $line (split /\n/, $out)
	{
		my $msg = eval { $json->decode($line) };
		if (!$msg)
		{
			note("$script: $line");
			next;
		}
		my $k = $msg->{kind};
		if ($k eq 'is')
		{
			is($msg->{got}, $msg->{expected}, "$script: $msg->{name}");
			$checks++;
		}
		elsif ($k eq 'ok')
		{
			ok($msg->{pass}, "$script: $msg->{name}")
			  or diag($msg->{diag});
			$checks++;
		}
		elsif ($k eq 'note')
		{
			note("$script: $msg->{text}");
		}
		elsif ($k eq 'done')
		{
			$done = 1;
			is($msg->{checks}, $checks, "$script: every check was reported");
		}
		elsif ($on_message)
		{
			$on_message->($msg);
		}
	}
	ok($ran && $done, "$script ran to completion")
	  or diag("exit status $?; stderr:\n$err");
	diag("$script stderr:\n$err") if $err ne '' && $ran;
	return $checks;
}

1;
