/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  The scuttlebutt replication worker.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_WORKER_H
#define SCUTTLEBUTT_WORKER_H

/* Registers the worker when the library is preloaded (from _PG_init) */
extern void SbWorkerInit(void);

#endif							/* SCUTTLEBUTT_WORKER_H */
