/*-------------------------------------------------------------------------
 *
 * websocket_http.h
 *	  The WebSocket opening handshake: the client's HTTP/1.1 Upgrade
 *	  request, and our answer (websocket_http.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_WEBSOCKET_HTTP_H
#define SCUTTLEBUTT_WEBSOCKET_HTTP_H

/* The answer to an upgrade request (allocated in the current context) */
typedef struct SbWsAnswer
{
	bool		upgrade;		/* 101: the WebSocket session begins */
	char	   *response;		/* the HTTP response to write */
	int			reason;			/* an HTTP error: the session's close
								 * reason (SbCloseReason) ... */
	char	   *detail;			/* ... and why, for the log */
	char	   *token;			/* a token the request carried, or NULL */
	bool		token_too_long; /* one longer than SB_MAX_TOKEN_BYTES */
} SbWsAnswer;

/*
 * Reads the request (head: its text up to and with the blank line,
 * NUL-terminated; modified) and answers it
 */
extern void SbWebSocketAnswer(char *head, SbWsAnswer *answer);

/* An HTTP error answer: status ("400 Bad Request"), extra header lines */
extern void SbWebSocketRefusal(SbWsAnswer *answer, const char *status,
							   const char *extra, int reason,
							   const char *detail);

#endif							/* SCUTTLEBUTT_WEBSOCKET_HTTP_H */
