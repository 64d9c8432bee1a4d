/*-------------------------------------------------------------------------
 *
 * reservation.c
 *	  The sequencer's reservation: the clocks row of this node's source.
 *
 * The sequencer (sequencer.c) hands out local timestamps in shared memory
 * and keeps the clocks row of this node's own source ahead of them, so a
 * restart never hands one out twice.  This file is that row's table access
 * and nothing else, so the sequencer depends on no other table code.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"

#include "reservation.h"
#include "spi_util.h"

static SPIPlanPtr read_reservation_plan;
static SPIPlanPtr write_reservation_plan;
static SPIPlanPtr try_reservation_plan;

/*
 * For a new sequencer slot, as committed now: the reservation in the
 * clocks row of this node's source, and the latest update of this node's source held (-Infinity: none).
 * Until the slot commits a timestamp, readers are shown the latest held
 * (the reservation if none is).
 */
void
SbReadReservation(int32 model_id, const char *node_id, double *reserved,
				 double *latest)
{
	Oid			argtypes[2] = {INT4OID, TEXTOID};
	Datum		values[2];

	*reserved = *latest = -INFINITY;
	SPI_connect();
	SbPrepareOnce(&read_reservation_plan,
				 "SELECT (SELECT ts FROM scuttlebutt.clocks WHERE model_id = $1 AND source = $2),"
				 " (SELECT max(ts) FROM scuttlebutt.updates WHERE model_id = $1 AND source = $2)",
				 2, argtypes);
	values[0] = Int32GetDatum(model_id);
	values[1] = CStringGetTextDatum(node_id);
	/* the latest snapshot: a transaction snapshot may predate the row */
	PushActiveSnapshot(GetLatestSnapshot());
	if (SPI_execute_plan(read_reservation_plan, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read scuttlebutt.clocks");
	PopActiveSnapshot();
	if (SPI_processed == 1)
	{
		bool		isnull;
		Datum		d;

		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull)
			*reserved = DatumGetFloat8(d);
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
		if (!isnull)
			*latest = DatumGetFloat8(d);
	}
	SPI_finish();
	/* a row written without the sequencer is exact: past the latest held */
	*reserved = Max(*reserved, *latest);
}

/*
 * Moves the reservation to at least reserved; if early, only when nobody
 * holds the row (SKIP LOCKED).  Returns whether it was written.
 */
bool
SbWriteReservation(int32 model_id, const char *node_id, double reserved,
				  bool early)
{
	Oid			argtypes[3] = {INT4OID, TEXTOID, FLOAT8OID};
	Datum		values[3];
	bool		written;

	SPI_connect();
	values[0] = Int32GetDatum(model_id);
	values[1] = CStringGetTextDatum(node_id);
	values[2] = Float8GetDatum(reserved);
	if (early)
	{
		SbPrepareOnce(&try_reservation_plan,
					 "UPDATE scuttlebutt.clocks AS c SET ts = greatest(c.ts, $3)"
					 " FROM (SELECT ctid FROM scuttlebutt.clocks"
					 "       WHERE model_id = $1 AND source = $2"
					 "       FOR UPDATE SKIP LOCKED) AS free"
					 " WHERE c.ctid = free.ctid",
					 3, argtypes);
		if (SPI_execute_plan(try_reservation_plan, values, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not write scuttlebutt.clocks");
	}
	else
	{
		SbPrepareOnce(&write_reservation_plan,
					 "INSERT INTO scuttlebutt.clocks AS c (model_id, source, ts)"
					 " VALUES ($1, $2, $3)"
					 " ON CONFLICT (model_id, source) DO UPDATE"
					 " SET ts = greatest(c.ts, excluded.ts)",
					 3, argtypes);
		if (SPI_execute_plan(write_reservation_plan, values, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not write scuttlebutt.clocks");
	}
	written = SPI_processed == 1;
	SPI_finish();
	return written;
}
