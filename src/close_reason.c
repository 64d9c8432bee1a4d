/*-------------------------------------------------------------------------
 *
 * close_reason.c
 *	  The table of reasons a peer session ends.
 *
 * A protocol violation is 08P01; failures to connect, lost connections,
 * timeouts, missing objects and limits carry the codes PostgreSQL uses
 * for the same situations on its own connections; a connection refused by
 * scuttlebutt.listen_rules carries 28000, as pg_hba's refusals do.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "close_reason.h"

typedef struct SbCloseReasonInfo
{
	const char *name;
	int			sqlerrcode;
} SbCloseReasonInfo;

static const SbCloseReasonInfo reasons[SB_CLOSE_REASONS] = {
	[SB_CLOSE_PEER_CLOSED] = {"closed by peer", ERRCODE_CONNECTION_EXCEPTION},
	[SB_CLOSE_CONNECTION_LOST] = {"connection lost", ERRCODE_CONNECTION_FAILURE},
	[SB_CLOSE_UNFINISHED_LINE] = {"closed in the middle of a line", ERRCODE_PROTOCOL_VIOLATION},
	[SB_CLOSE_LINE_TOO_LONG] = {"line too long", ERRCODE_PROGRAM_LIMIT_EXCEEDED},
	[SB_CLOSE_INVALID_JSON] = {"invalid JSON", ERRCODE_PROTOCOL_VIOLATION},
	[SB_CLOSE_TOO_DEEP] = {"JSON nested too deeply", ERRCODE_STATEMENT_TOO_COMPLEX},
	[SB_CLOSE_INVALID_HEADER] = {"invalid header", ERRCODE_PROTOCOL_VIOLATION},
	[SB_CLOSE_NO_MODEL_NAMED] = {"no model named", ERRCODE_PROTOCOL_VIOLATION},
	[SB_CLOSE_UPDATE_BEFORE_HEADER] = {"update before header", ERRCODE_PROTOCOL_VIOLATION},
	[SB_CLOSE_UNKNOWN_MODEL] = {"unknown model", ERRCODE_UNDEFINED_OBJECT},
	[SB_CLOSE_NO_REMOTE_EXTENSION] = {"no scuttlebutt extension on the remote", ERRCODE_UNDEFINED_OBJECT},
	[SB_CLOSE_NO_REMOTE_MODEL] = {"no such model on the remote", ERRCODE_UNDEFINED_OBJECT},
	[SB_CLOSE_KIND_MISMATCH] = {"model kinds differ", ERRCODE_WRONG_OBJECT_TYPE},
	[SB_CLOSE_RESOLVE_FAILED] = {"could not resolve host", ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION},
	[SB_CLOSE_CONNECT_FAILED] = {"could not connect", ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION},
	[SB_CLOSE_CONNECT_TIMEOUT] = {"connect timeout", ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION},
	[SB_CLOSE_HANDSHAKE_TIMEOUT] = {"handshake timeout", ERRCODE_PROTOCOL_VIOLATION},
	[SB_CLOSE_INVALID_CONNINFO] = {"invalid connection string", ERRCODE_INVALID_PARAMETER_VALUE},
	[SB_CLOSE_NOTHING_TO_DO] = {"nothing to do", ERRCODE_INVALID_PARAMETER_VALUE},
	[SB_CLOSE_TOO_MANY_CONNECTIONS] = {"too many connections", ERRCODE_TOO_MANY_CONNECTIONS},
	[SB_CLOSE_TOO_MANY_FROM_ADDRESS] = {"too many connections from this address", ERRCODE_TOO_MANY_CONNECTIONS},
	[SB_CLOSE_PASSWORD_REQUIRED] = {"password required", ERRCODE_S_R_E_PROHIBITED_SQL_STATEMENT_ATTEMPTED},
	[SB_CLOSE_DATABASE_ERROR] = {"database error", ERRCODE_INTERNAL_ERROR},
	[SB_CLOSE_REMOTE_ERROR] = {"remote error", ERRCODE_CONNECTION_EXCEPTION},
	[SB_CLOSE_QUERY_TIMEOUT] = {"query timeout", ERRCODE_QUERY_CANCELED},
	[SB_CLOSE_INTERNAL_ERROR] = {"internal error", ERRCODE_INTERNAL_ERROR},
	[SB_CLOSE_DEFERRED_DUE] = {"redial for deferred updates", ERRCODE_CONNECTION_EXCEPTION},
	[SB_CLOSE_SIGNING_KEY_CHANGED] = {"signing key changed", ERRCODE_CONNECTION_EXCEPTION},
	[SB_CLOSE_TLS_HANDSHAKE_FAILED] = {"tls handshake failed", ERRCODE_PROTOCOL_VIOLATION},
	[SB_CLOSE_TLS_UNAVAILABLE] = {"tls unavailable", ERRCODE_CONFIG_FILE_ERROR},
	[SB_CLOSE_REJECTED_BY_RULE] = {"rejected by rule", ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION},
	[SB_CLOSE_NO_MATCHING_RULE] = {"no matching rule", ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION},
	[SB_CLOSE_AUTH_FAILED] = {"authentication failed", ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION},
	[SB_CLOSE_PERMISSION_DENIED] = {"permission denied", ERRCODE_INSUFFICIENT_PRIVILEGE},
	[SB_CLOSE_WEBSOCKET_HANDSHAKE] = {"websocket handshake failed", ERRCODE_PROTOCOL_VIOLATION},
	[SB_CLOSE_WEBSOCKET_PROTOCOL] = {"websocket protocol error", ERRCODE_PROTOCOL_VIOLATION},
	[SB_CLOSE_ORIGIN_REFUSED] = {"origin not allowed", ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION},
	[SB_CLOSE_MUX_PROTOCOL] = {"mux-demux protocol error", ERRCODE_PROTOCOL_VIOLATION},
	[SB_CLOSE_TOO_MANY_SUBSTREAMS] = {"too many sub-streams", ERRCODE_TOO_MANY_CONNECTIONS},
	[SB_CLOSE_REMOTE_ID_CHANGED] = {"remote node id changed", ERRCODE_CONNECTION_EXCEPTION},
};

const char *
SbCloseReasonName(SbCloseReason reason)
{
	Assert(reason >= 0 && reason < SB_CLOSE_REASONS);
	return reasons[reason].name;
}

int
SbCloseReasonErrcode(SbCloseReason reason)
{
	Assert(reason >= 0 && reason < SB_CLOSE_REASONS);
	return reasons[reason].sqlerrcode;
}

int
SbCloseReasonLevel(SbCloseReason reason)
{
	return reason == SB_CLOSE_PEER_CLOSED || reason == SB_CLOSE_DEFERRED_DUE ||
		reason == SB_CLOSE_SIGNING_KEY_CHANGED || reason == SB_CLOSE_REMOTE_ID_CHANGED
		? LOG : WARNING;
}
