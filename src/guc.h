/*-------------------------------------------------------------------------
 *
 * guc.h
 *	  Configuration parameters of the scuttlebutt extension.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_GUC_H
#define SCUTTLEBUTT_GUC_H

/* Limits shared by the GUC definitions and their users */
#define SB_DEFAULT_MAX_CONNECTIONS 4096
#define SB_MIN_MAX_CONNECTIONS 1
#define SB_MAX_MAX_CONNECTIONS 1000000

/*
 * Incoming connections the status slots in shared memory hold at least:
 * scuttlebutt.max_connections may be raised up to this (or its value at
 * server start, if larger) with a reload; beyond it, only with a restart.
 */
#define SB_MIN_INCOMING_SLOTS SB_DEFAULT_MAX_CONNECTIONS
#define SB_DEFAULT_MAX_CONNECTIONS_PER_ADDRESS 256

/* Dialed peers (rows of scuttlebutt.peers) holding a session at once */
#define SB_MAX_PEERS 256

#define SB_DEFAULT_MAX_LINE_BYTES (1024 * 1024)
#define SB_MIN_MAX_LINE_BYTES 1024
#define SB_MAX_MAX_LINE_BYTES (64 * 1024 * 1024)

/*
 * A header lists every source of a model: it may be longer than an update.
 * The header this server sends never passes the default (stream.c), so a
 * peer with the default settings always accepts it.
 */
#define SB_DEFAULT_MAX_HEADER_BYTES (8 * 1024 * 1024)
#define SB_MAX_MAX_HEADER_BYTES (256 * 1024 * 1024)

/*
 * How far ahead of this server's wall clock a remote update may be: hosts
 * are NTP-synced to milliseconds, and an update further ahead is only
 * deferred until the peer reconnects, never lost.
 */
#define SB_DEFAULT_MAX_CLOCK_SKEW_MS (60 * 1000)

#define SB_DEFAULT_HANDSHAKE_TIMEOUT_MS 10000
#define SB_DEFAULT_PEER_TIMEOUT_MS 30000
#define SB_DEFAULT_TIMESTAMP_RESERVE_MS 1000
#define SB_DEFAULT_RECONNECT_MIN_MS 100
#define SB_DEFAULT_RECONNECT_MAX_MS 30000
#define SB_DEFAULT_DEFAULT_MODEL_WAIT_MS 1000
#define SB_DEFAULT_MAX_SUBSTREAMS 64
#define SB_MAX_MAX_SUBSTREAMS 1024
#define SB_DEFAULT_VERIFY_THREADS 1
#define SB_MAX_VERIFY_THREADS 16

extern char *sb_database;
extern char *sb_listen_addresses;
extern int	sb_port;
extern int	sb_max_connections;
extern int	sb_max_connections_per_address;
extern int	sb_max_line_bytes;
extern int	sb_max_header_bytes;
extern int	sb_max_clock_skew_ms;
extern int	sb_handshake_timeout_ms;
extern int	sb_peer_timeout_ms;
extern int	sb_reconnect_min_ms;
extern int	sb_reconnect_max_ms;
extern int	sb_timestamp_reserve_ms;
extern bool sb_listen_send;
extern bool sb_listen_receive;
extern bool sb_ssl;
extern char *sb_ssl_cert_file;
extern char *sb_ssl_key_file;
extern char *sb_ssl_ca_file;
extern int	sb_verify_threads;
extern bool sb_sign_threads;
extern char *sb_default_model;
extern int	sb_default_model_wait_ms;
extern int	sb_max_substreams;

extern void SbGucInit(void);

#endif							/* SCUTTLEBUTT_GUC_H */
