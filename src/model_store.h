/*-------------------------------------------------------------------------
 *
 * model_store.h
 *	  Kept for its includers: table access is store.h, batched applies of
 *	  updates from elsewhere apply.h, the SPI helpers spi_util.h.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SCUTTLEBUTT_MODEL_STORE_H
#define SCUTTLEBUTT_MODEL_STORE_H

#include "apply.h"
#include "spi_util.h"
#include "store.h"

#endif							/* SCUTTLEBUTT_MODEL_STORE_H */
