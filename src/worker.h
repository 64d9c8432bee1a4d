/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  The scuttlebutt replication worker.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_WORKER_H
#define SCUTTLEBUTT_WORKER_H

/* Registers the worker (from _PG_init, when preloaded) */
extern void SbWorkerRegister(void);

#endif							/* SCUTTLEBUTT_WORKER_H */
