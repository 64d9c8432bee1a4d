/*-------------------------------------------------------------------------
 *
 * conninfo.h
 *	  libpq connection strings as the extension shows them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_CONNINFO_H
#define SCUTTLEBUTT_CONNINFO_H

/*
 * Checks a connection string with libpq's own parser: ERROR
 * (invalid_parameter_value) with libpq's message if it is not one.
 */
extern void SbConninfoCheck(const char *conninfo);

/*
 * Why a role that is not superuser may not connect with this connection
 * string (dblink's and postgres_fdw's rules): no password given, or an
 * option that reads the server's files; NULL if it may.
 */
extern const char *SbConninfoUnprivilegedProblem(const char *conninfo);

/* The connection string without its password options (palloc'd); NULL if invalid */
extern char *SbConninfoShown(const char *conninfo);

/* "host:port" of its first host (palloc'd); NULL if invalid */
extern char *SbConninfoAddress(const char *conninfo);

#endif							/* SCUTTLEBUTT_CONNINFO_H */
