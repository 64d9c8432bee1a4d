/*-------------------------------------------------------------------------
 *
 * listen_rules.c
 *	  Who may connect on the stream port: scuttlebutt.listen_rules.
 *
 * The rules are to the stream port what pg_hba.conf is to PostgreSQL's:
 * ordered by position, the first whose address (a cidr; NULL for any) and
 * model (NULL for any) match the connection decides, by its method:
 *
 *	trust	the connection acts as the rule's role
 *	cert	a client certificate verified against scuttlebutt.ssl_ca_file:
 *			its Common Name names the role
 *	token	a JWT in the header's meta.token (jwt.c): its "role" claim
 *			names the role
 *	reject	refused
 *
 * For cert and token, a role in the rule restricts the rule to members of
 * that role (as pg_hba's +group): another authenticated role is refused.
 * No matching rule refuses.  The decision is made at the connection's
 * header, which names the model, inside the transaction that reads the
 * rules: a change of the table applies from the next connection on, with
 * no reload.  The reasons logged (never sent to the client) say which rule
 * decided and why.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <netdb.h>

#include "catalog/pg_type.h"
#include "common/ip.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/inet.h"

#include "jwt.h"
#include "listen_rules.h"
#include "spi_util.h"
#include "wire.h"

/* The rule deciding a connection from an address for a model */
#define SB_RULE_QUERY \
	"SELECT position, method, role::text FROM scuttlebutt.listen_rules" \
	" WHERE (address IS NULL OR $1 OPERATOR(pg_catalog.<<=) address)" \
	"   AND (model IS NULL OR model OPERATOR(pg_catalog.=) $2)" \
	" ORDER BY position LIMIT 1"

static SPIPlanPtr rule_plan = NULL;

/* The client's address as an inet value (NULL: not an IP address) */
static Datum
address_datum(const SockAddr *addr, bool *isnull)
{
	char		host[NI_MAXHOST];
	char	   *pct;

	*isnull = true;
	if (addr->addr.ss_family != AF_INET && addr->addr.ss_family != AF_INET6)
		return (Datum) 0;
	if (pg_getnameinfo_all(&addr->addr, addr->salen, host, sizeof(host),
						   NULL, 0, NI_NUMERICHOST) != 0)
		return (Datum) 0;
	/* a link-local address's zone ("%eth0") is no part of an inet */
	if ((pct = strchr(host, '%')) != NULL)
		*pct = '\0';
	*isnull = false;
	return DirectFunctionCall1(inet_in, CStringGetDatum(host));
}

static void
refuse(SbListenDecision *out, SbCloseReason reason, const char *fmt,...)
	pg_attribute_printf(3, 4);

static void
refuse(SbListenDecision *out, SbCloseReason reason, const char *fmt,...)
{
	va_list		args;
	StringInfoData buf;

	initStringInfo(&buf);
	for (;;)
	{
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(&buf, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&buf, needed);
	}
	out->allowed = false;
	out->reason = reason;
	out->detail = buf.data;
}

/* A role named by a certificate or a token (InvalidOid: none such) */
static Oid
named_role(const char *name)
{
	if (name == NULL || name[0] == '\0' || strlen(name) >= NAMEDATALEN)
		return InvalidOid;
	return get_role_oid(name, true);
}

/* Authenticates by the matched rule's method; fills out */
static void
apply_rule(SbListenDecision *out, int32 position, const char *method,
		   const char *rule_role, bool tls, const char *peer_cn,
		   const char *token, bool token_too_long)
{
	Oid			role = InvalidOid;

	if (strcmp(method, "reject") == 0)
	{
		refuse(out, SB_CLOSE_REJECTED_BY_RULE,
			   "Rule %d of scuttlebutt.listen_rules rejects the connection.", position);
		return;
	}
	if (strcmp(method, "trust") == 0)
	{
		role = rule_role ? get_role_oid(rule_role, true) : InvalidOid;
		if (!OidIsValid(role))
		{
			refuse(out, SB_CLOSE_AUTH_FAILED,
				   "Rule %d of scuttlebutt.listen_rules names role \"%s\", which does not exist.",
				   position, rule_role ? rule_role : "");
			return;
		}
	}
	else if (strcmp(method, "cert") == 0)
	{
		if (!tls || peer_cn == NULL)
		{
			refuse(out, SB_CLOSE_AUTH_FAILED,
				   "Rule %d of scuttlebutt.listen_rules needs a verified client certificate; the connection %s.",
				   position, tls ? "presented none" : "is not TLS");
			return;
		}
		role = named_role(peer_cn);
		if (!OidIsValid(role))
		{
			refuse(out, SB_CLOSE_AUTH_FAILED,
				   "Rule %d: the client certificate's Common Name \"%s\" names no role.",
				   position, peer_cn);
			return;
		}
	}
	else if (strcmp(method, "token") == 0)
	{
		char	   *claimed = NULL;
		char	   *why = NULL;

		if (token_too_long)
		{
			refuse(out, SB_CLOSE_AUTH_FAILED,
				   "Rule %d: the token in the header's meta.token is longer than %d bytes.",
				   position, SB_MAX_TOKEN_BYTES);
			return;
		}
		if (token == NULL)
		{
			refuse(out, SB_CLOSE_AUTH_FAILED,
				   "Rule %d of scuttlebutt.listen_rules needs a token in the header's meta.token; there is none.",
				   position);
			return;
		}
		if (!SbJwtVerify(token, &claimed, &why))
		{
			refuse(out, SB_CLOSE_AUTH_FAILED, "Rule %d: invalid token: %s.",
				   position, why ? why : "rejected");
			return;
		}
		role = named_role(claimed);
		if (!OidIsValid(role))
		{
			refuse(out, SB_CLOSE_AUTH_FAILED,
				   "Rule %d: the token's role \"%s\" does not exist.",
				   position, claimed ? claimed : "");
			return;
		}
	}
	else
	{
		/* the table's CHECK allows no other */
		refuse(out, SB_CLOSE_REJECTED_BY_RULE,
			   "Rule %d of scuttlebutt.listen_rules has an unknown method \"%s\".",
			   position, method);
		return;
	}

	/* cert, token: a role in the rule admits its members only */
	if (strcmp(method, "trust") != 0 && rule_role != NULL)
	{
		Oid			group = get_role_oid(rule_role, true);

		if (!OidIsValid(group) || !is_member_of_role_nosuper(role, group))
		{
			refuse(out, SB_CLOSE_PERMISSION_DENIED,
				   "Rule %d of scuttlebutt.listen_rules admits members of role \"%s\" only; \"%s\" is not one.",
				   position, rule_role, GetUserNameFromId(role, false));
			return;
		}
	}
	out->allowed = true;
	out->role = role;
	strlcpy(out->method, method, sizeof(out->method));
}

void
SbListenRulesDecide(const SockAddr *addr, const char *model, bool tls,
					const char *peer_cn, const char *token,
					bool token_too_long, SbListenDecision *out)
{
	Oid			argtypes[2] = {INETOID, TEXTOID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	bool		isnull;
	int32		position;
	char	   *method;
	char	   *rule_role;
	MemoryContext cxt = CurrentMemoryContext;

	memset(out, 0, sizeof(*out));
	values[0] = address_datum(addr, &isnull);
	if (isnull)
		nulls[0] = 'n';
	values[1] = CStringGetTextDatum(model);

	SPI_connect();
	/* planned once per worker: every incoming connection asks */
	if (SPI_execute_plan(SbPrepareOnce(&rule_plan, SB_RULE_QUERY, 2, argtypes),
						 values, nulls, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read scuttlebutt.listen_rules");
	if (SPI_processed == 0)
	{
		SPI_finish();
		MemoryContextSwitchTo(cxt);
		refuse(out, SB_CLOSE_NO_MATCHING_RULE,
			   "No rule of scuttlebutt.listen_rules matches the address and model \"%s\".",
			   model);
		return;
	}
	position = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 1, &isnull));
	/* copied out of SPI's memory, which SPI_finish frees */
	method = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	rule_role = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
	method = MemoryContextStrdup(cxt, method ? method : "");
	rule_role = rule_role ? MemoryContextStrdup(cxt, rule_role) : NULL;
	SPI_finish();
	MemoryContextSwitchTo(cxt);

	out->position = position;
	apply_rule(out, position, method, rule_role, tls, peer_cn, token,
			   token_too_long);
}
