/*-------------------------------------------------------------------------
 *
 * close_reason.h
 *	  Why a peer session ended: one name, errcode and log level each.
 *
 * The name is what connection_errors and peer_status.last_error show; the
 * errcode is what the server log shows.  Counters are kept per reason, so
 * nothing compares strings.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_CLOSE_REASON_H
#define SCUTTLEBUTT_CLOSE_REASON_H

typedef enum SbCloseReason
{
	/* the peer went away */
	SB_CLOSE_PEER_CLOSED,
	SB_CLOSE_CONNECTION_LOST,
	/* what the peer sent breaks the protocol */
	SB_CLOSE_UNFINISHED_LINE,
	SB_CLOSE_LINE_TOO_LONG,
	SB_CLOSE_INVALID_JSON,
	SB_CLOSE_TOO_DEEP,
	SB_CLOSE_INVALID_HEADER,
	SB_CLOSE_NO_MODEL_NAMED,
	SB_CLOSE_UPDATE_BEFORE_HEADER,
	/* the model cannot be replicated with this peer */
	SB_CLOSE_UNKNOWN_MODEL,
	SB_CLOSE_NO_REMOTE_EXTENSION,
	SB_CLOSE_NO_REMOTE_MODEL,
	SB_CLOSE_KIND_MISMATCH,
	/* connecting */
	SB_CLOSE_RESOLVE_FAILED,
	SB_CLOSE_CONNECT_FAILED,
	SB_CLOSE_CONNECT_TIMEOUT,
	SB_CLOSE_HANDSHAKE_TIMEOUT,
	SB_CLOSE_INVALID_CONNINFO,
	SB_CLOSE_NOTHING_TO_DO,
	SB_CLOSE_TOO_MANY_CONNECTIONS,
	SB_CLOSE_TOO_MANY_FROM_ADDRESS,
	SB_CLOSE_PASSWORD_REQUIRED,
	/* table work and remote queries */
	SB_CLOSE_DATABASE_ERROR,
	SB_CLOSE_REMOTE_ERROR,
	SB_CLOSE_QUERY_TIMEOUT,
	/* an ERROR raised while serving the connection, outside table work */
	SB_CLOSE_INTERNAL_ERROR,
	/* an outgoing session redials: updates it deferred are within bounds */
	SB_CLOSE_DEFERRED_DUE,
	/* scuttlebutt.signing_key_file changed: the node's id may have too */
	SB_CLOSE_SIGNING_KEY_CHANGED,
	/* TLS: the handshake failed (OpenSSL's reason), or cannot start */
	SB_CLOSE_TLS_HANDSHAKE_FAILED,
	SB_CLOSE_TLS_UNAVAILABLE,
	/* an incoming connection refused by scuttlebutt.listen_rules */
	SB_CLOSE_REJECTED_BY_RULE,
	SB_CLOSE_NO_MATCHING_RULE,
	SB_CLOSE_AUTH_FAILED,
	/* the connection's role lacks a privilege on the model */
	SB_CLOSE_PERMISSION_DENIED,
	/* WebSocket: a bad upgrade request, a bad frame, an origin not listed */
	SB_CLOSE_WEBSOCKET_HANDSHAKE,
	SB_CLOSE_WEBSOCKET_PROTOCOL,
	SB_CLOSE_ORIGIN_REFUSED,
	/* mux-demux: a frame that breaks its protocol; a sub-stream too many */
	SB_CLOSE_MUX_PROTOCOL,
	SB_CLOSE_TOO_MANY_SUBSTREAMS,
	/* a libpq remote answered with another node id: made anew */
	SB_CLOSE_REMOTE_ID_CHANGED
} SbCloseReason;

#define SB_CLOSE_REASONS (SB_CLOSE_REMOTE_ID_CHANGED + 1)

/*
 * What a client whose header names no model (with no
 * scuttlebutt.default_model) is told: in a JSON line, and in a WebSocket's
 * close frame (at most 123 bytes)
 */
#define SB_NO_MODEL_NAMED_TEXT \
	"no model named: name one in the header's meta, or set scuttlebutt.default_model"

/* The name shown in connection_errors and last_error */
extern const char *SbCloseReasonName(SbCloseReason reason);

/* The errcode its log entry carries (a database error may carry its own) */
extern int	SbCloseReasonErrcode(SbCloseReason reason);

/* LOG for an orderly close (the peer's, or a redial), WARNING for the rest */
extern int	SbCloseReasonLevel(SbCloseReason reason);

#endif							/* SCUTTLEBUTT_CLOSE_REASON_H */
