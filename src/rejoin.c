/*-------------------------------------------------------------------------
 *
 * rejoin.c
 *	  A server restored from a backup rejoins its peers before it writes.
 *
 * A restored server has the node id it had when the backup was taken, and
 * its peers may hold updates of that source it handed out afterwards:
 * with timestamps the restored sequencer knows nothing of.  A local write
 * could then take a timestamp at or below the peers' clock of this
 * source, and every peer would drop it as old (or hold another update at
 * the same timestamp); and once this node's clock of its own source passed
 * its lost updates, no peer would send them back.  So after a restore,
 * local writes are refused (55000) until the server has synced with its
 * peers: their histories bring back its own lost updates and their clocks
 * move its sequencer past every timestamp they hold for it (apply.c,
 * store.c).
 *
 * A restore is recognised when the postmaster starts (before recovery
 * runs): a backup_label file (a base backup: pg_basebackup, or
 * pg_backup_start/stop with a file copy), a recovery.signal file (archive
 * recovery, point in time), or the file scuttlebutt.rejoin, which an
 * operator creates in the data directory of a copy made otherwise (a file
 * copy of a stopped server) and which this module also leaves there until
 * the rejoin is over, so that a restart meanwhile still rejoins.
 *
 * The worker ends the rejoin once every peer it dials (the rows of
 * scuttlebutt.peers) has synced in one go, or, if it dials none, once any
 * connection has; or scuttlebutt.end_rejoin() ends it at once.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "common/file_perm.h"
#include "storage/fd.h"

#include "rejoin.h"
#include "shmem.h"

#define REJOIN_FILE "scuttlebutt.rejoin"

/*
 * In the postmaster, as shared memory is made (before the startup
 * process): whether this start restores a backup; if so the flag file is
 * written so that the rejoin outlives a restart.
 */
void
SbRejoinStartup(void)
{
	const char *why = NULL;
	struct stat st;

	if (stat(REJOIN_FILE, &st) == 0)
		why = "file \"" REJOIN_FILE "\" present";
	else if (stat("backup_label", &st) == 0)
		why = "file \"backup_label\" present: a base backup";
	else if (stat("recovery.signal", &st) == 0)
		why = "file \"recovery.signal\" present: archive recovery";
	pg_atomic_init_u32(&sb_shared->rejoining, why != NULL);
	if (why == NULL)
		return;
	if (stat(REJOIN_FILE, &st) != 0)
	{
		int			fd = open(REJOIN_FILE, O_CREAT | O_WRONLY | PG_BINARY, pg_file_create_mode);

		if (fd < 0 || pg_fsync(fd) != 0)
			ereport(WARNING,
					(errcode_for_file_access(),
					 errmsg("could not write file \"%s\": %m", REJOIN_FILE)));
		if (fd >= 0)
			close(fd);
		fsync_fname(".", true);
	}
	ereport(LOG,
			(errmsg("scuttlebutt: this server was restored from a backup (%s)", why),
			 errdetail("Local writes to scuttlebutt models are refused until the replication worker has synced with its peers.")));
}

bool
SbRejoining(void)
{
	return sb_shared != NULL && pg_atomic_read_u32(&sb_shared->rejoining) != 0;
}

/* Ends the rejoin: flag and file; returns whether one was under way */
bool
SbRejoinEnd(const char *how)
{
	if (sb_shared == NULL || pg_atomic_exchange_u32(&sb_shared->rejoining, 0) == 0)
		return false;
	if (unlink(REJOIN_FILE) != 0 && errno != ENOENT)
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not remove file \"%s\": %m", REJOIN_FILE)));
	fsync_fname(".", true);
	ereport(LOG,
			(errmsg("scuttlebutt: rejoined after a restore (%s): local writes are taken again", how)));
	return true;
}

/* The local writes' check: ERROR while rejoining */
void
SbRejoinCheckLocalWrite(void)
{
	if (SbRejoining())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this scuttlebutt node is rejoining its peers after a restore"),
				 errdetail("Its peers may hold updates of this node it handed out after the backup was taken; a local write now could take a timestamp they already hold."),
				 errhint("Local writes are taken again once the replication worker has synced with every peer it dials; SELECT scuttlebutt.end_rejoin() ends the wait at once.")));
}

PG_FUNCTION_INFO_V1(scuttlebutt_end_rejoin);

/* scuttlebutt.end_rejoin(): ends a rejoin now; true if one was under way */
Datum
scuttlebutt_end_rejoin(PG_FUNCTION_ARGS)
{
	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only a superuser may end a rejoin")));
	PG_RETURN_BOOL(SbRejoinEnd("ended by scuttlebutt.end_rejoin()"));
}

PG_FUNCTION_INFO_V1(scuttlebutt_rejoining);

/* scuttlebutt.rejoining(): whether local writes wait for a rejoin */
Datum
scuttlebutt_rejoining(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(SbRejoining());
}
