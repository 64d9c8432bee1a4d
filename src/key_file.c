/*-------------------------------------------------------------------------
 *
 * key_file.c
 *	  The ownership and permission checks of a private key file, as
 *	  be-secure-common.c makes them of ssl_key_file.
 *
 * The signing key (node_key.c), the TLS listener's key and a dialed TLS
 * peer's client key are all refused when others may read them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>
#include <unistd.h>

#include "key_file.h"

bool
SbKeyFilePermitted(const char *path, char **why)
{
	struct stat st;

	if (stat(path, &st) != 0)
	{
		*why = psprintf("could not access \"%s\": %m", path);
		return false;
	}
	if (!S_ISREG(st.st_mode))
	{
		*why = psprintf("\"%s\" is not a regular file", path);
		return false;
	}
	/* as be-secure-common.c: the server's own file, or root's */
	if (st.st_uid != geteuid() && st.st_uid != 0)
	{
		*why = psprintf("\"%s\" must be owned by the database user or root", path);
		return false;
	}
	if ((st.st_uid == geteuid() && (st.st_mode & (S_IRWXG | S_IRWXO))) ||
		(st.st_uid == 0 && (st.st_mode & (S_IWGRP | S_IXGRP | S_IRWXO))))
	{
		*why = psprintf("\"%s\" has group or world access; it must be u=rw (0600) or less if owned by the database user, or u=rw,g=r (0640) or less if owned by root",
						path);
		return false;
	}
	return true;
}

int
SbNoPassphrase(char *buf pg_attribute_unused(), int size pg_attribute_unused(),
			   int rwflag pg_attribute_unused(), void *u pg_attribute_unused())
{
	return 0;
}
