# Certificates for the TLS tests, made at test time with the openssl
# command (no key is kept in the repository):
#
#   TestCA::make_ca($dir, 'ca')
#       $dir/ca.crt and $dir/ca.key: a CA certificate (two days)
#
#   TestCA::issue($dir, $name, $subject, $ca, $san, $usage, $days)
#       $dir/$name.crt and $dir/$name.key (0600), issued by $ca for $days
#       days (negative: already expired), with subjectAltName $san (or
#       none) and extendedKeyUsage $usage ('serverAuth', 'clientAuth')
#
# Each reports its own ok(): a test that cannot make its certificates
# says so first.
package TestCA;

use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;

sub _openssl
{
	return PostgreSQL::Test::Utils::run_log([ 'openssl', @_ ]);
}

sub make_ca
{
	my ($dir, $ca) = @_;
	ok( _openssl('req', '-x509', '-new', '-nodes', '-newkey', 'rsa:2048', '-days', '2',
			'-subj', "/CN=scuttlebutt test $ca", '-keyout', "$dir/$ca.key", '-out', "$dir/$ca.crt",
			'-addext', 'basicConstraints=critical,CA:TRUE',
			'-addext', 'keyUsage=critical,keyCertSign,cRLSign'),
		"openssl: $ca certificate");
}

sub issue
{
	my ($dir, $name, $subject, $ca, $san, $usage, $days) = @_;
	open my $fh, '>', "$dir/$name.ext" or die "$dir/$name.ext: $!";
	print $fh ($san ? "subjectAltName = $san\n" : '')
	  . "basicConstraints = CA:FALSE\n"
	  . "keyUsage = critical, digitalSignature, keyEncipherment\n"
	  . "extendedKeyUsage = $usage\n";
	close $fh;
	my @sign = ('x509', '-req', '-in', "$dir/$name.csr", '-CA', "$dir/$ca.crt",
		'-CAkey', "$dir/$ca.key", '-CAcreateserial',
		'-out', "$dir/$name.crt", '-extfile', "$dir/$name.ext");
	my $ok = _openssl('req', '-new', '-nodes', '-newkey', 'rsa:2048', '-subj', $subject,
		'-keyout', "$dir/$name.key", '-out', "$dir/$name.csr")
	  && (_openssl(@sign, '-days', $days)
		# OpenSSL 3.4 and later refuse negative -days: an expired validity
		# is given as dates there (3.0 has no such options)
		|| ($days < 0
			&& _openssl(@sign, '-not_before', '20200101000000Z', '-not_after', '20200102000000Z')));
	chmod 0600, "$dir/$name.key";
	ok($ok, "openssl: $name certificate");
}

1;
