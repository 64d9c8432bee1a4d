/*-------------------------------------------------------------------------
 *
 * jwt.h
 *	  Checking the JSON Web Token a stream client sends in its header.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_JWT_H
#define SCUTTLEBUTT_JWT_H

/*
 * Checks a JWT (scuttlebutt.jwt_secret HS256, or
 * scuttlebutt.jwt_public_key_file RS256/EdDSA; exp, nbf, aud when
 * scuttlebutt.jwt_audience is set).  True and *role (palloc'd) = its
 * "role" claim when valid; false and *reason (palloc'd, for the server log
 * only) otherwise.
 */
extern bool SbJwtVerify(const char *token, char **role, char **reason);

#endif							/* SCUTTLEBUTT_JWT_H */
