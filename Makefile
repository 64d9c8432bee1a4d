# scuttlebutt: PGXS build
EXTENSION = scuttlebutt
EXTVERSION = 0.1.0

MODULE_big = scuttlebutt
OBJS = \
	src/scuttlebutt.o \
	src/jstext.o \
	src/wire_message.o \
	src/timestamp.o \
	src/sequencer.o \
	src/model_store.o \
	src/model_cache.o \
	src/model_functions.o \
	src/stream_functions.o \
	src/guc.o \
	src/shmem.o \
	src/connection.o \
	src/worker.o \
	src/conninfo.o \
	src/libpq_peer.o \
	src/poll_functions.o \
	src/peer_functions.o

DATA = $(wildcard sql/$(EXTENSION)--*.sql)

# The server's headers as system headers: -Wextra is for our code, and
# PostgreSQL's inline functions (lib/ilist.h, storage/bufpage.h, ...) give
# dozens of -Wunused-parameter warnings of their own.  -Wunused-parameter
# stays off until src/ is cleaned up (about 15 warnings today).  CI builds
# with COPT=-Werror; a developer's build only warns, since a newer
# compiler's new warnings should not stop one from running the tests.
PG_CPPFLAGS = -isystem $(includedir_server) -I$(srcdir)/src -I$(libpq_srcdir)
PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter
# libpq: the worker dials PostgreSQL peers (as dblink and postgres_fdw do)
SHLIB_LINK_INTERNAL = $(libpq)

# pg_regress: sql/<name>.sql against expected/<name>.out
REGRESS = model events value history streams json_text errors peers
REGRESS_OPTS = --inputdir=$(srcdir) --load-extension=$(EXTENSION)

# pg_isolation_regress: test/isolation/specs/<name>.spec against
# test/isolation/expected/<name>.out (needs the library preloaded)
ISOLATION = publication_order
ISOLATION_OPTS = --inputdir=$(srcdir)/test/isolation --load-extension=$(EXTENSION)

# rebuild objects when a header they include changes (.deps/)
override autodepend = yes

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# TAP tests (test/t/*.pl, PostgreSQL::Test::Cluster) against the installed
# extension: make prove-installcheck.  test/run.sh runs everything.
prove-installcheck: PROVE_TESTS ?= test/t/*.pl
prove-installcheck:
	$(prove_installcheck)
.PHONY: prove-installcheck
