/*-------------------------------------------------------------------------
 *
 * conninfo.c
 *	  libpq connection strings as the extension shows them.
 *
 * A libpq peer's conninfo may carry a password; nothing the extension
 * shows (peer_status, log lines) does.  Parsing is libpq's own
 * (PQconninfoParse), so URIs and key=value strings are treated alike.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "libpq-fe.h"

#include "conninfo.h"

static bool
is_secret(const char *keyword)
{
	return strcmp(keyword, "password") == 0 || strcmp(keyword, "sslpassword") == 0;
}

/* Appends value as a conninfo value: quoted when it must be */
static void
append_value(StringInfo buf, const char *value)
{
	bool		plain = value[0] != '\0';

	for (const char *p = value; *p && plain; p++)
		plain = !(*p == ' ' || *p == '\'' || *p == '\\' || *p == '=' ||
				  *p == '\t' || *p == '\n' || *p == '\r');
	if (plain)
	{
		appendStringInfoString(buf, value);
		return;
	}
	appendStringInfoChar(buf, '\'');
	for (const char *p = value; *p; p++)
	{
		if (*p == '\'' || *p == '\\')
			appendStringInfoChar(buf, '\\');
		appendStringInfoChar(buf, *p);
	}
	appendStringInfoChar(buf, '\'');
}

/*
 * Options that make libpq read the server's own files (keys, certificates,
 * password and service files) or use its Kerberos setup: only a superuser
 * may give them, as postgres_fdw and dblink decide.
 */
static bool
is_superuser_only(const char *keyword)
{
	static const char *const keywords[] = {
		"passfile", "service", "sslcert", "sslkey", "sslrootcert", "sslcrl",
		"sslcrldir", "sslpassword", "krbsrvname", "gsslib", "gssdelegation",
	};

	for (size_t i = 0; i < lengthof(keywords); i++)
		if (strcmp(keyword, keywords[i]) == 0)
			return true;
	return false;
}

const char *
SbConninfoUnprivilegedProblem(const char *conninfo)
{
	PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
	const char *problem = "no password in the connection string";

	if (opts == NULL)
		return "not a libpq connection string";
	for (PQconninfoOption *o = opts; o->keyword; o++)
	{
		if (o->val == NULL || o->val[0] == '\0')
			continue;
		if (is_superuser_only(o->keyword))
		{
			problem = psprintf("option \"%s\" is for superusers only", o->keyword);
			break;
		}
		if (strcmp(o->keyword, "password") == 0)
			problem = NULL;
	}
	PQconninfoFree(opts);
	return problem;
}

void
SbConninfoCheck(const char *conninfo)
{
	char	   *err = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &err);

	if (opts == NULL)
	{
		char	   *msg = pstrdup(err ? err : "out of memory");

		if (err)
			PQfreemem(err);
		/* libpq's messages end with a newline */
		if (msg[0] != '\0' && msg[strlen(msg) - 1] == '\n')
			msg[strlen(msg) - 1] = '\0';
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid connection string: %s", msg),
				 errhint("A libpq connection string, as \"host=... port=... dbname=... user=...\" or a postgresql:// URI.")));
	}
	PQconninfoFree(opts);
}

char *
SbConninfoShown(const char *conninfo)
{
	PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
	StringInfoData buf;

	if (opts == NULL)
		return NULL;
	initStringInfo(&buf);
	for (PQconninfoOption *o = opts; o->keyword; o++)
	{
		if (o->val == NULL || is_secret(o->keyword))
			continue;
		if (buf.len > 0)
			appendStringInfoChar(&buf, ' ');
		appendStringInfo(&buf, "%s=", o->keyword);
		append_value(&buf, o->val);
	}
	PQconninfoFree(opts);
	return buf.data;
}

char *
SbConninfoAddress(const char *conninfo)
{
	PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
	const char *host = NULL;
	const char *hostaddr = NULL;
	const char *port = NULL;
	char	   *result;
	int			hostlen;
	int			portlen;

	if (opts == NULL)
		return NULL;
	for (PQconninfoOption *o = opts; o->keyword; o++)
	{
		if (o->val == NULL || o->val[0] == '\0')
			continue;
		if (strcmp(o->keyword, "host") == 0)
			host = o->val;
		else if (strcmp(o->keyword, "hostaddr") == 0)
			hostaddr = o->val;
		else if (strcmp(o->keyword, "port") == 0)
			port = o->val;
	}
	if (host == NULL)
		host = hostaddr ? hostaddr : "local";
	if (port == NULL)
		port = "5432";
	/* the first of a list of hosts and ports */
	hostlen = strcspn(host, ",");
	portlen = strcspn(port, ",");
	result = psprintf("%.*s:%.*s", hostlen, host, portlen, port);
	PQconninfoFree(opts);
	return result;
}
