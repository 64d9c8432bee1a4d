/*-------------------------------------------------------------------------
 *
 * jwt.c
 *	  Checking the JSON Web Token a stream client sends in its header.
 *
 * A placeholder: no token is accepted until the verifier (HS256 with
 * scuttlebutt.jwt_secret, RS256/EdDSA with scuttlebutt.jwt_public_key_file)
 * takes its place.  A "token" rule of scuttlebutt.listen_rules thus
 * refuses every connection it matches.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "jwt.h"

/* Refuses every token: none can be checked yet */
bool
SbJwtVerify(const char *token pg_attribute_unused(), char **role, char **reason)
{
	*role = NULL;
	*reason = pstrdup("tokens are not configured");
	return false;
}
