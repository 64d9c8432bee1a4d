/*-------------------------------------------------------------------------
 *
 * listen_rules.h
 *	  Who may connect on the stream port: scuttlebutt.listen_rules.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_LISTEN_RULES_H
#define SCUTTLEBUTT_LISTEN_RULES_H

#include "libpq/pqcomm.h"

#include "close_reason.h"

/* What the rules decided for one incoming connection */
typedef struct SbListenDecision
{
	bool		allowed;
	Oid			role;			/* allowed: the role it acts as */
	char		method[8];		/* allowed: "trust", "cert" or "token" */
	int32		position;		/* the rule that decided (0: none) */
	SbCloseReason reason;		/* refused: why */
	char	   *detail;			/* refused: for the server log only */
} SbListenDecision;

/*
 * Decides an incoming stream connection at its header: the rule of lowest
 * position matching the client's address and the model its header names,
 * then that rule's method (trust, cert with the channel's verified client
 * certificate, token with the header's meta.token (token_too_long: one
 * longer than SB_MAX_TOKEN_BYTES was sent), or reject).  No rule
 * matching refuses.  Reads the table each time, so a change applies to
 * the next connection.  Must run inside a transaction; allocates in the
 * current memory context.
 */
extern void SbListenRulesDecide(const SockAddr *addr, const char *model,
								bool tls, const char *peer_cn,
								const char *token, bool token_too_long,
								SbListenDecision *out);

#endif							/* SCUTTLEBUTT_LISTEN_RULES_H */
