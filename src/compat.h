/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  The differences between the PostgreSQL major versions we build
 *	  against (15 and 17), in one place.
 *
 * The code is written against the newest API; this header maps it onto the
 * older servers, so that dropping a version means deleting its branch
 * here, and no #if on PG_VERSION_NUM appears anywhere else.
 *
 *	- Backend slot: 17 numbers backends by their PGPROC (MyProcNumber,
 *	  0-based, INVALID_PROC_NUMBER when none, storage/procnumber.h); 15
 *	  has MyBackendId, 1-based, InvalidBackendId (storage/backendid.h).
 *	  Both give every regular backend and background worker a slot below
 *	  MaxBackends that no other live process holds.
 *	- Transaction-manager shared state: TransamVariables in 17,
 *	  ShmemVariableCache before.
 *	- CreateWaitEventSet takes a ResourceOwner in 17, a MemoryContext
 *	  before.
 *	- ACL checks of one object: object_aclcheck(classid, ...) from 16 on;
 *	  15 has one function per catalog (pg_namespace_aclcheck, ...).
 *	- jsonapi: from 16 on the semantic actions return a JsonParseErrorType
 *	  (JSON_SUCCESS to go on); from 17 on makeJsonLexContextCstringLen
 *	  takes the context to fill first (NULL: allocate one).
 *	- ExecInsertIndexTuples takes onlySummarizing from 16 on.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SB_COMPAT_H
#define SB_COMPAT_H

#include "common/jsonapi.h"
#include "miscadmin.h"

#if PG_VERSION_NUM < 150000
#error "scuttlebutt needs PostgreSQL 15 or later"
#endif

/* ACL checks: object_aclcheck on 15, for schemas (utils/acl.h at the use) */
#if PG_VERSION_NUM < 160000
#define object_aclcheck(classid, objectid, roleid, mode) \
	(AssertMacro((classid) == NamespaceRelationId), \
	 pg_namespace_aclcheck((objectid), (roleid), (mode)))
#endif

/* This backend's slot in arrays of MaxBackends entries */
#if PG_VERSION_NUM >= 170000
#include "storage/procnumber.h"
#define SbHasBackendSlot() \
	(MyProcNumber != INVALID_PROC_NUMBER && MyProcNumber < MaxBackends)
#define SbMyBackendSlot()	((int) MyProcNumber)
#else
#include "storage/backendid.h"
#define SbHasBackendSlot()	(MyBackendId != InvalidBackendId)
#define SbMyBackendSlot()	((int) MyBackendId - 1)
#endif

/* access/transam.h's shared counters (latestCompletedXid, nextXid, ...) */
#if PG_VERSION_NUM < 170000
#define TransamVariables ShmemVariableCache
#endif

/*
 * A WaitEventSet freed only by FreeWaitEventSet: 17 ties a set to a
 * resource owner (none here: TopMemoryContext), 15 allocates it in cxt.
 */
#if PG_VERSION_NUM >= 170000
#define SbCreateWaitEventSet(cxt, nevents)	CreateWaitEventSet(NULL, (nevents))
#else
#define SbCreateWaitEventSet(cxt, nevents)	CreateWaitEventSet((cxt), (nevents))
#endif

/*
 * JSON semantic actions: declare them "static SbJsonAction name(...)" and
 * leave them with "SB_JSON_ACTION_RETURN;".
 */
#if PG_VERSION_NUM >= 160000
typedef JsonParseErrorType SbJsonAction;
#define SB_JSON_ACTION_RETURN	return JSON_SUCCESS
#else
typedef void SbJsonAction;
#define SB_JSON_ACTION_RETURN	return
#endif

/* A lexer over len bytes of text, allocated in the current context */
#if PG_VERSION_NUM >= 170000
#define SbMakeJsonLexContext(text, len, encoding, need_escapes) \
	makeJsonLexContextCstringLen(NULL, (text), (len), (encoding), (need_escapes))
#else
#define SbMakeJsonLexContext(text, len, encoding, need_escapes) \
	makeJsonLexContextCstringLen((char *) (text), (len), (encoding), (need_escapes))
#endif

/*
 * A new row's index entries, every index, unique ones checked (the caller
 * includes executor/executor.h); returns the recheck list.  Speculative:
 * a conflict in the arbiter indexes is reported (*conflict), not raised,
 * as ON CONFLICT's insertion does.
 */
#if PG_VERSION_NUM >= 160000
#define SbExecInsertIndexTuples(rri, slot, estate) \
	ExecInsertIndexTuples((rri), (slot), (estate), false, false, NULL, NIL, false)
#define SbExecInsertIndexTuplesSpeculative(rri, slot, estate, conflict, arbiters) \
	ExecInsertIndexTuples((rri), (slot), (estate), false, true, (conflict), (arbiters), false)
#else
#define SbExecInsertIndexTuples(rri, slot, estate) \
	ExecInsertIndexTuples((rri), (slot), (estate), false, false, NULL, NIL)
#define SbExecInsertIndexTuplesSpeculative(rri, slot, estate, conflict, arbiters) \
	ExecInsertIndexTuples((rri), (slot), (estate), false, true, (conflict), (arbiters))
#endif

#endif							/* SB_COMPAT_H */
