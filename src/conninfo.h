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

/* The connection string without its password options (palloc'd); NULL if invalid */
extern char *SbConninfoShown(const char *conninfo);

/* "host:port" of its first host (palloc'd); NULL if invalid */
extern char *SbConninfoAddress(const char *conninfo);

#endif							/* SCUTTLEBUTT_CONNINFO_H */
