/*-------------------------------------------------------------------------
 *
 * fuzz.h
 *	  What the fuzz targets share (shim.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_FUZZ_H
#define SCUTTLEBUTT_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/* Frees everything palloc'd since the last call */
extern void FuzzFreeAll(void);

/* A failed property: the message, then abort() (a crash with its input) */
extern void FuzzFail(const char *what, const uint8_t *data, size_t size)
			pg_attribute_noreturn();

#endif							/* SCUTTLEBUTT_FUZZ_H */
