/*-------------------------------------------------------------------------
 *
 * key_file.h
 *	  Whether a private key file may be used: the checks PostgreSQL makes
 *	  of ssl_key_file.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_KEY_FILE_H
#define SCUTTLEBUTT_KEY_FILE_H

/*
 * True if path is a regular file owned by the database user (no group or
 * world access) or by root (at most group read); false with *why set
 * (palloc'd) otherwise.
 */
extern bool SbKeyFilePermitted(const char *path, char **why);

/*
 * OpenSSL's passphrase callback that never prompts: an encrypted key is
 * refused (a server has no one to ask)
 */
extern int	SbNoPassphrase(char *buf, int size, int rwflag, void *u);

#endif							/* SCUTTLEBUTT_KEY_FILE_H */
