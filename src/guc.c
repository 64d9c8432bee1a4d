/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  Configuration parameters of the scuttlebutt extension.
 *
 * Which database the worker serves, and how many worker slots, are fixed
 * at server start; everything about connections can change on reload.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "miscadmin.h"
#include "utils/guc.h"

#include "guc.h"
#include "jwt.h"
#include "node_key.h"
#include "websocket.h"

char	   *sb_database = NULL;
char	   *sb_listen_addresses = NULL;
int			sb_port = 0;
int			sb_max_connections = SB_DEFAULT_MAX_CONNECTIONS;
int			sb_max_connections_per_address = SB_DEFAULT_MAX_CONNECTIONS_PER_ADDRESS;
int			sb_max_line_bytes = SB_DEFAULT_MAX_LINE_BYTES;
int			sb_max_header_bytes = SB_DEFAULT_MAX_HEADER_BYTES;
int			sb_max_clock_skew_ms = SB_DEFAULT_MAX_CLOCK_SKEW_MS;
int			sb_handshake_timeout_ms = SB_DEFAULT_HANDSHAKE_TIMEOUT_MS;
int			sb_peer_timeout_ms = SB_DEFAULT_PEER_TIMEOUT_MS;
int			sb_reconnect_min_ms = SB_DEFAULT_RECONNECT_MIN_MS;
int			sb_reconnect_max_ms = SB_DEFAULT_RECONNECT_MAX_MS;
int			sb_timestamp_reserve_ms = SB_DEFAULT_TIMESTAMP_RESERVE_MS;
bool		sb_listen_send = true;
bool		sb_listen_receive = true;
bool		sb_ssl = false;
char	   *sb_ssl_cert_file = NULL;
char	   *sb_ssl_key_file = NULL;
char	   *sb_ssl_ca_file = NULL;
int			sb_verify_threads = SB_DEFAULT_VERIFY_THREADS;
bool		sb_sign_threads = true;
char	   *sb_default_model = NULL;
int			sb_default_model_wait_ms = SB_DEFAULT_DEFAULT_MODEL_WAIT_MS;
int			sb_max_substreams = SB_DEFAULT_MAX_SUBSTREAMS;

void
SbGucInit(void)
{
	/*
	 * Server-start settings exist only when preloaded: defining one later
	 * (CREATE EXTENSION in a running server) is an error.
	 */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomStringVariable("scuttlebutt.database",
							   "Database the scuttlebutt replication worker connects to.",
							   NULL,
							   &sb_database,
							   "postgres",
							   PGC_POSTMASTER,
							   0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("scuttlebutt.listen_addresses",
							   "Addresses the worker listens on for scuttlebutt stream peers.",
							   "A comma-separated list of host names or IP addresses; '*' for all.",
							   &sb_listen_addresses,
							   "localhost",
							   PGC_SIGHUP,
							   GUC_LIST_INPUT,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("scuttlebutt.port",
							"TCP port of the scuttlebutt stream listener (0: no listener).",
							NULL,
							&sb_port,
							0, 0, 65535,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("scuttlebutt.max_connections",
							"Most incoming stream connections the worker holds at once.",
							"Peers the worker dials (scuttlebutt.peers) are not counted: they always get their sessions.",
							&sb_max_connections,
							SB_DEFAULT_MAX_CONNECTIONS,
							SB_MIN_MAX_CONNECTIONS, SB_MAX_MAX_CONNECTIONS,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("scuttlebutt.max_connections_per_address",
							"Most incoming stream connections from one remote address at once.",
							"Keeps one host from taking every connection slot; raise it for many clients behind one NAT.",
							&sb_max_connections_per_address,
							SB_DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
							SB_MIN_MAX_CONNECTIONS, SB_MAX_MAX_CONNECTIONS,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("scuttlebutt.max_line_bytes",
							"Longest line a peer may send; a connection passing it is closed.",
							NULL,
							&sb_max_line_bytes,
							SB_DEFAULT_MAX_LINE_BYTES,
							SB_MIN_MAX_LINE_BYTES, SB_MAX_MAX_LINE_BYTES,
							PGC_SIGHUP,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("scuttlebutt.max_header_bytes",
							"Longest header line a peer may send; a connection passing it is closed.",
							"A header lists every source of the model, so it may be longer than scuttlebutt.max_line_bytes.",
							&sb_max_header_bytes,
							SB_DEFAULT_MAX_HEADER_BYTES,
							SB_MIN_MAX_LINE_BYTES, SB_MAX_MAX_HEADER_BYTES,
							PGC_SIGHUP,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("scuttlebutt.max_clock_skew",
							"How far ahead of this server's clock a remote update's timestamp may be.",
							"An update further ahead is not applied and moves no clock: it comes again when the peer reconnects.",
							&sb_max_clock_skew_ms,
							SB_DEFAULT_MAX_CLOCK_SKEW_MS, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("scuttlebutt.handshake_timeout",
							"Time a new connection has to send its header before it is closed.",
							NULL,
							&sb_handshake_timeout_ms,
							SB_DEFAULT_HANDSHAKE_TIMEOUT_MS, 100, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("scuttlebutt.peer_timeout",
							"Time a query to a libpq peer may take beyond its expected wait before the peer counts as stalled.",
							"The session is closed (last_error says so) and reconnected with back-off.",
							&sb_peer_timeout_ms,
							SB_DEFAULT_PEER_TIMEOUT_MS, 100, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("scuttlebutt.timestamp_reserve",
							"How far ahead of this node's timestamps the reservation in its clock row runs.",
							"After a restart new local timestamps start past the reservation; a larger one writes the row less often.",
							&sb_timestamp_reserve_ms,
							SB_DEFAULT_TIMESTAMP_RESERVE_MS, 10, 3600 * 1000,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("scuttlebutt.reconnect_min",
							"First delay before reconnecting a failed outgoing peer.",
							"The delay doubles after each failure, up to scuttlebutt.reconnect_max.",
							&sb_reconnect_min_ms,
							SB_DEFAULT_RECONNECT_MIN_MS, 10, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("scuttlebutt.reconnect_max",
							"Longest delay before reconnecting a failed outgoing peer.",
							NULL,
							&sb_reconnect_max_ms,
							SB_DEFAULT_RECONNECT_MAX_MS, 10, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("scuttlebutt.listen_send",
							 "Whether incoming stream connections are sent updates.",
							 "Off makes the listener a read-only replica's side: it accepts updates and sends only its clock.",
							 &sb_listen_send,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("scuttlebutt.listen_receive",
							 "Whether updates from incoming stream connections are applied.",
							 "Off makes the listener a master's side: it sends updates and ignores those it receives.",
							 &sb_listen_receive,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("scuttlebutt.verify_threads",
							"Threads per process that verify a batch of signed updates beside it.",
							"Import and replication verify signatures on these while the process stores updates; 0: the process verifies alone.",
							&sb_verify_threads,
							SB_DEFAULT_VERIFY_THREADS, 0, SB_MAX_VERIFY_THREADS,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("scuttlebutt.sign_threads",
							 "Whether an RSA signature is computed on two threads.",
							 "The two halves of an RSA private-key operation run at once, the process's and a helper thread's; off: the process signs alone, with OpenSSL. The signatures are the same bytes either way.",
							 &sb_sign_threads,
							 true,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("scuttlebutt.signing_key_file",
							   "PEM private key (RSA or Ed25519) that signs this node's updates.",
							   "With a key, the node's id is base64(SHA-1) of its public key's PEM text, as the reference's security.js computes it. Relative paths are relative to the data directory.",
							   &sb_signing_key_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   SbCheckSigningKeyFile, SbAssignSigningKeyFile, NULL);

	DefineCustomStringVariable("scuttlebutt.jwt_secret",
							   "Shared secret of HS256 tokens that name a stream connection's role.",
							   "At least 32 bytes.  Empty: HS256 tokens are refused.",
							   &sb_jwt_secret,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   SbCheckJwtSecret, NULL, NULL);

	DefineCustomStringVariable("scuttlebutt.jwt_public_key_file",
							   "PEM public key (RSA for RS256, Ed25519 for EdDSA) of tokens that name a stream connection's role.",
							   "Relative paths are relative to the data directory.  Empty: RS256 and EdDSA tokens are refused.",
							   &sb_jwt_public_key_file,
							   "",
							   PGC_SIGHUP,
							   0,
							   SbCheckJwtPublicKeyFile, SbAssignJwtPublicKeyFile, NULL);

	DefineCustomStringVariable("scuttlebutt.jwt_audience",
							   "The audience (\"aud\" claim) a token must name; empty: not checked.",
							   NULL,
							   &sb_jwt_audience,
							   "",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);

	DefineCustomBoolVariable("scuttlebutt.ssl",
							 "Whether the stream listener speaks TLS.",
							 "On: every incoming stream connection must begin with a TLS handshake; plain text is never served.",
							 &sb_ssl,
							 false,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("scuttlebutt.ssl_cert_file",
							   "TLS certificate (PEM, with its chain) of the stream listener.",
							   "Empty: the server's ssl_cert_file. Relative paths are relative to the data directory. Read again at each reload.",
							   &sb_ssl_cert_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("scuttlebutt.ssl_key_file",
							   "TLS private key (PEM) of the stream listener.",
							   "Empty: the server's ssl_key_file. It must not be readable by group or others, as ssl_key_file.",
							   &sb_ssl_key_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("scuttlebutt.ssl_ca_file",
							   "CA certificates (PEM) that client certificates of stream peers are verified against.",
							   "Empty: client certificates are not asked for.",
							   &sb_ssl_ca_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("scuttlebutt.websocket_origins",
							   "Origins (scheme://host[:port]) whose pages may open WebSocket connections to the stream listener.",
							   "A comma-separated list; \"*\" for any.  A request without an Origin header (a client that is not a browser) is not checked.  Empty: browsers are refused.",
							   &sb_websocket_origins,
							   "",
							   PGC_SIGHUP,
							   0,
							   SbCheckWebSocketOrigins, NULL, NULL);

	DefineCustomStringVariable("scuttlebutt.default_model",
							   "Model of an incoming stream whose header names none.",
							   "Empty: such a stream is refused.",
							   &sb_default_model,
							   "",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("scuttlebutt.default_model_wait",
							"Time an incoming stream that has sent nothing waits before it is served scuttlebutt.default_model.",
							"A reference createWriteStream() without sendClock sends nothing until it has the other side's header.  0: such a stream waits for its header until scuttlebutt.handshake_timeout.",
							&sb_default_model_wait_ms,
							SB_DEFAULT_DEFAULT_MODEL_WAIT_MS, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("scuttlebutt.max_substreams",
							"Most sub-streams (models) one multiplexed (mux-demux) connection may open at once.",
							"A sub-stream past it is refused with an error of its own; the others go on.",
							&sb_max_substreams,
							SB_DEFAULT_MAX_SUBSTREAMS, 1, SB_MAX_MAX_SUBSTREAMS,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("scuttlebutt");
}
