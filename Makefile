# scuttlebutt: PGXS build
EXTENSION = scuttlebutt
EXTVERSION = 0.1.0

MODULE_big = scuttlebutt
OBJS = \
	src/scuttlebutt.o \
	src/guc.o \
	src/jstext.o \
	src/jscanon.o \
	src/wire.o \
	src/merge.o \
	src/ext_relation.o \
	src/bulk_insert.o \
	src/timestamp.o \
	src/spi_util.o \
	src/store.o \
	src/apply.o \
	src/lone_apply.o \
	src/model_cache.o \
	src/sequencer.o \
	src/rejoin.o \
	src/reservation.o \
	src/shmem.o \
	src/commit.o \
	src/close_reason.o \
	src/remote_clock.o \
	src/session.o \
	src/channel_tcp.o \
	src/channel_tls.o \
	src/websocket.o \
	src/websocket_http.o \
	src/tls_context.o \
	src/key_file.o \
	src/stream.o \
	src/mux_demux.o \
	src/listener.o \
	src/listen_rules.o \
	src/libpq_peer.o \
	src/worker.o \
	src/conninfo.o \
	src/signature.o \
	src/rsa_split_sign.o \
	src/node_key.o \
	src/trusted_keys.o \
	src/verify_pool.o \
	src/jwt.o \
	src/privileges.o \
	src/sql_privileges.o \
	src/sql_util.o \
	src/sql_internal.o \
	src/sql_model.o \
	src/sql_events.o \
	src/sql_value.o \
	src/sql_history.o \
	src/sql_streams.o \
	src/sql_json.o \
	src/sql_peers.o \
	src/sql_poll.o \
	src/sql_keys.o

DATA = $(wildcard sql/$(EXTENSION)--*.sql)

# The server's headers as system headers: -Wextra is for our code, and
# PostgreSQL's inline functions (lib/ilist.h, storage/bufpage.h, ...) give
# dozens of -Wunused-parameter warnings of their own.  CI builds with
# COPT=-Werror; a developer's build only warns, since a newer compiler's
# new warnings should not stop one from running the tests.
PG_CPPFLAGS = -isystem $(includedir_server) -I$(srcdir)/src -I$(libpq_srcdir)
PG_CFLAGS = -Wall -Wextra
# libpq: the worker dials PostgreSQL peers (as dblink and postgres_fdw do)
SHLIB_LINK_INTERNAL = $(libpq)
# OpenSSL: signed updates (libcrypto, as PostgreSQL's own build uses) and
# TLS for stream peers (libssl); threads that verify signatures (verify_pool.c)
# and that sign (rsa_split_sign.c)
SHLIB_LINK = -lssl -lcrypto -pthread

# pg_regress: sql/<name>.sql against expected/<name>.out
REGRESS = model events value merge history streams json_text errors peers hostile limits signed privileges websocket
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

# Unit tests of the pure-C merge rules (no server): make unit-test
unit-test:
	$(MAKE) -C $(srcdir)/test/unit
.PHONY: unit-test
