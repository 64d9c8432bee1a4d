/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  The scuttlebutt replication worker.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_WORKER_H
#define SCUTTLEBUTT_WORKER_H

struct SbSession;

/* Registers the worker when the library is preloaded (from _PG_init) */
extern void SbWorkerInit(void);

/*
 * Takes a session made while serving another one (a sub-stream of a
 * multiplexed connection) into a status slot, to be served as the others;
 * false when no slot is free.
 */
extern bool SbWorkerAdopt(struct SbSession *s);

#endif							/* SCUTTLEBUTT_WORKER_H */
