/*-------------------------------------------------------------------------
 *
 * jwt.h
 *	  JSON Web Tokens naming the role a stream connection acts as.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_JWT_H
#define SCUTTLEBUTT_JWT_H

#include "utils/guc.h"

extern char *sb_jwt_secret;
extern char *sb_jwt_public_key_file;
extern char *sb_jwt_audience;

/*
 * Checks a JWT (scuttlebutt.jwt_secret HS256, or
 * scuttlebutt.jwt_public_key_file RS256/EdDSA; exp, nbf, and aud when
 * scuttlebutt.jwt_audience is set).  True and *role (palloc'd) = its
 * "role" claim when valid; false and *reason (palloc'd, for the server
 * log only) otherwise.
 */
extern bool SbJwtVerify(const char *token, char **role, char **reason);

/* Hooks of the settings (guc.c defines them) */
extern bool SbCheckJwtSecret(char **newval, void **extra, GucSource source);
extern bool SbCheckJwtPublicKeyFile(char **newval, void **extra, GucSource source);
extern void SbAssignJwtPublicKeyFile(const char *newval, void *extra);

#endif							/* SCUTTLEBUTT_JWT_H */
