/*
 * test/bench/c/fanout_clients.c: many lightweight stream clients of one
 * model in one process (epoll), the same clients as
 * test/bench/js/fanout_clients.js at a fraction of its CPU: on a 2-core
 * machine the load clients share the cores with the server they measure,
 * and Node's cost per socket event would then be counted as the server's
 * latency.  Same protocol, arguments, environment and commands as the
 * JavaScript clients (see there), and the same output less its "checked"
 * and "stalled_ids" (fanout.sh uses neither); fanout.sh picks one with
 * FANOUT_CLIENT=c|js.
 *
 *   -> {"id":"<id>","clock":{},"meta":"<model>"}      header, empty clock
 *   <- {"id":...,"clock":{...}}                       the server's header
 *   -> "SYNC"                                         our (empty) history's end
 *   <- [[key,value],ts,source] ...                    history, then live
 *   <- "SYNC"                                         end of history
 *
 * Checks, as the JavaScript clients make them (minus a full JSON parse):
 * the server's header is an object with "id" and "clock"; every history
 * and live line is an array that ends with a string (the source); each
 * live line's timestamp, the number before its last comma, is a finite
 * number; any other line stops the run with an error.
 *
 *   cc -O2 -o fanout_clients fanout_clients.c
 *   ./fanout_clients PORT MODEL N
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUCKET_MS 0.1
#define NBUCKETS 600000			/* 60 s */
#define READ_CHUNK (256 * 1024)

typedef enum
{
	WAITING, SYNCED, REFUSED, CLOSED_LIVE
} ClientState;

typedef struct
{
	int			fd;
	int			i;
	ClientState state;
	bool		connected;
	bool		header;
	long		nupd;
	long		live;
	double		t0;
	double		sync_ms;
	const char *reason;
	char	   *partial;		/* a line cut by the last read */
	size_t		npartial;
} Client;

static Client *clients;
static int	n;
static long sync_keys;
static const char *id_prefix;
static const char *model;
static uint32_t *hist;
static long deliveries;
static double hist_max;
static double window_start;
static double cpu_start;
static int	done;
static bool reported;
static char idbuf[64];

static double
now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_REALTIME, &t);
	return t.tv_sec * 1000.0 + t.tv_nsec / 1e6;
}

static double
cpu_ms(void)
{
	struct rusage r;

	getrusage(RUSAGE_SELF, &r);
	return r.ru_utime.tv_sec * 1000.0 + r.ru_utime.tv_usec / 1000.0 +
		r.ru_stime.tv_sec * 1000.0 + r.ru_stime.tv_usec / 1000.0;
}

static void
fail(const char *fmt,...)
{
	va_list		ap;

	fprintf(stderr, "fanout_clients: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void
send_all(Client *c, const char *text)
{
	size_t		len = strlen(text);

	if (write(c->fd, text, len) != (ssize_t) len)
		fail("client %d: could not send %zu bytes: %s", c->i, len, strerror(errno));
}

static double
pct(double p)
{
	long		total = 0,
				acc = 0,
				rank;

	for (int b = 0; b < NBUCKETS; b++)
		total += hist[b];
	if (total == 0)
		return NAN;
	rank = (long) ceil(total * p / 100);
	if (rank < 1)
		rank = 1;
	for (int b = 0; b < NBUCKETS; b++)
	{
		acc += hist[b];
		if (acc >= rank)
			return (b + 0.5) * BUCKET_MS;
	}
	return NAN;
}

static void
print_num(const char *name, double v, bool comma)
{
	if (isnan(v))
		printf("\"%s\":null%s", name, comma ? "," : "");
	else
		printf("\"%s\":%.3f%s", name, v, comma ? "," : "");
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return x < y ? -1 : x > y;
}

/* Every client synced, refused or stalled (or the deadline passed) */
static void
report_synced(void)
{
	int			synced = 0,
				refused = 0,
				stalled = 0,
				closed_after_sync = 0,
				nt = 0;
	long		kmin = -1,
				kmax = 0;
	double	   *times = malloc(sizeof(double) * (n + 1));
	const char *reasons[64];
	int			counts[64];
	int			nreasons = 0;

	if (reported)
		return;
	reported = true;
	for (int i = 0; i < n; i++)
	{
		Client	   *c = &clients[i];
		const char *r = NULL;

		if (c->state == CLOSED_LIVE)
			closed_after_sync++;
		if (c->state == SYNCED)
		{
			synced++;
			times[nt++] = c->sync_ms;
			kmin = kmin < 0 || c->nupd < kmin ? c->nupd : kmin;
			kmax = c->nupd > kmax ? c->nupd : kmax;
		}
		else if (c->state == REFUSED)
		{
			refused++;
			r = c->reason;
		}
		else if (c->state == WAITING)
		{
			stalled++;
			r = c->header ? "header received, no SYNC"
				: c->connected ? "connected, header sent, nothing received" : "not connected";
		}
		if (r)
		{
			int			k;

			for (k = 0; k < nreasons && strcmp(reasons[k], r) != 0; k++)
				;
			if (k == nreasons && nreasons < 64)
			{
				reasons[nreasons] = r;
				counts[nreasons++] = 0;
			}
			if (k < 64)
				counts[k]++;
		}
	}
	qsort(times, nt, sizeof(double), cmp_double);
	printf("{\"event\":\"synced\",\"n\":%d,\"synced\":%d,\"refused\":%d,\"stalled\":%d,"
		   "\"closed_after_sync\":%d,\"reasons\":{",
		   n, synced, refused, stalled, closed_after_sync);
	for (int k = 0; k < nreasons; k++)
		printf("%s\"%s\":%d", k ? "," : "", reasons[k], counts[k]);
	printf("},");
	print_num("sync_ms_max", nt ? times[nt - 1] : NAN, true);
	print_num("sync_ms_p50", nt ? times[(nt + 1) / 2 - 1] : NAN, true);
	print_num("keys_min", synced ? (double) kmin : NAN, true);
	printf("\"keys_max\":%ld}\n", kmax);
	fflush(stdout);
	free(times);
}

static void
finish(Client *c, ClientState state, const char *reason)
{
	if (c->state != WAITING)
		return;
	c->state = state;
	c->reason = reason;
	c->sync_ms = now_ms() - c->t0;
	if (++done == n)
		report_synced();
}

/* An update line: an array whose last member is a string (the source) */
static void
check_update(const char *line, size_t len)
{
	if (len < 8 || line[0] != '[' || line[len - 1] != ']' || line[len - 2] != '"')
		fail("not an update: %.*s", (int) (len > 200 ? 200 : len), line);
}

/* The timestamp of an update line: the number before its last comma */
static double
update_ts(const char *line, size_t len)
{
	const char *end = memrchr(line, ',', len);
	const char *start = end ? memrchr(line, ',', end - line) : NULL;
	char	   *stop;
	double		ts;

	if (!start)
		fail("not an update: %.*s", (int) (len > 200 ? 200 : len), line);
	ts = strtod(start + 1, &stop);
	if (stop != end || !isfinite(ts))
		fail("no timestamp in: %.*s", (int) (len > 200 ? 200 : len), line);
	return ts;
}

static void
on_live(Client *c, const char *line, size_t len)
{
	double		lat;
	long		b;

	check_update(line, len);
	lat = now_ms() - update_ts(line, len);
	b = (long) floor(lat / BUCKET_MS);
	if (b < 0)
		b = 0;
	if (b >= NBUCKETS)
		b = NBUCKETS - 1;
	hist[b]++;
	if (lat > hist_max)
		hist_max = lat;
	deliveries++;
	c->live++;
}

static void
on_line(Client *c, const char *line, size_t len)
{
	if (c->state == SYNCED)
	{
		on_live(c, line, len);
		return;
	}
	if (line[0] == '[')
	{
		if (!c->header)
			fail("an update before the header");
		check_update(line, len);
		c->nupd++;
		return;
	}
	if (len == 6 && memcmp(line, "\"SYNC\"", 6) == 0)
	{
		if (!c->header)
			fail("\"SYNC\" before the header");
		if (sync_keys && c->nupd != sync_keys)
		{
			char		why[96];

			snprintf(why, sizeof(why), "synced with %ld updates, expected %ld", c->nupd, sync_keys);
			finish(c, REFUSED, strdup(why));
			close(c->fd);
			c->fd = -1;
			return;
		}
		finish(c, SYNCED, NULL);
		c->state = SYNCED;
		return;
	}
	if (line[0] == '{' && !c->header && memmem(line, len, "\"id\":\"", 6) &&
		memmem(line, len, "\"clock\":{", 9))
	{
		c->header = true;
		/* as the reference: on the server's header our history (none), then "SYNC" */
		send_all(c, "\"SYNC\"\n");
		return;
	}
	fail("unexpected line from the server: %.*s", (int) (len > 200 ? 200 : len), line);
}

static void
closed(Client *c, const char *why)
{
	close(c->fd);
	c->fd = -1;
	if (c->state == SYNCED)
		c->state = CLOSED_LIVE;
	else
		finish(c, REFUSED, why ? why : c->header ? "closed after the header" : "closed");
}

/* What a readable socket holds, line by line */
static void
on_readable(Client *c, char *buf)
{
	for (;;)
	{
		size_t		have = c->npartial;
		ssize_t		got;
		char	   *from,
				   *nl,
				   *end;

		if (have)
			memcpy(buf, c->partial, have);
		got = read(c->fd, buf + have, READ_CHUNK - have);
		if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR))
		{
			closed(c, got == 0 ? NULL : (errno == ECONNRESET ? "ECONNRESET" : strerror(errno)));
			return;
		}
		if (got < 0)
			return;
		end = buf + have + got;
		from = buf;
		while (c->fd >= 0 && (nl = memchr(from, '\n', end - from)) != NULL)
		{
			on_line(c, from, nl - from);
			from = nl + 1;
		}
		if (c->fd < 0)
			return;
		c->npartial = end - from;
		if (c->npartial >= READ_CHUNK / 2)
			fail("client %d: a line longer than %d bytes", c->i, READ_CHUNK / 2);
		if (c->npartial)
		{
			c->partial = realloc(c->partial, c->npartial);
			memcpy(c->partial, from, c->npartial);
		}
		if (got < READ_CHUNK - (ssize_t) have)
			return;
	}
}

static void
open_client(int epfd, Client *c, struct sockaddr_in *addr)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP, .data.ptr = c};
	int			one = 1;

	c->t0 = now_ms();
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (c->fd < 0)
		fail("socket: %s", strerror(errno));
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *) addr, sizeof(*addr)) < 0 && errno != EINPROGRESS)
	{
		closed(c, strerror(errno));
		return;
	}
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
		fail("epoll_ctl: %s", strerror(errno));
}

/* The socket connected: the header, and from now on only reads are waited for */
static void
on_connected(int epfd, Client *c)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
	int			err = 0;
	socklen_t	len = sizeof(err);
	char		header[512];

	getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
	if (err)
	{
		closed(c, err == ECONNREFUSED ? "ECONNREFUSED" : strerror(err));
		return;
	}
	c->connected = true;
	epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
	snprintf(header, sizeof(header), "{\"id\":\"%s%d\",\"clock\":{},\"meta\":\"%s\"}\n",
			 id_prefix, c->i, model);
	send_all(c, header);
}

static void
report(const char *file)
{
	long		pmin = -1,
				pmax = 0;
	int			open_count = 0,
				closed_live = 0;
	long		rss_pages = 0;
	FILE	   *f;

	if (file && *file)
	{
		bool		first = true;

		f = fopen(file, "w");
		if (!f)
			fail("cannot write %s: %s", file, strerror(errno));
		fputc('{', f);
		for (int b = 0; b < NBUCKETS; b++)
			if (hist[b])
			{
				fprintf(f, "%s\"%d\":%u", first ? "" : ",", b, hist[b]);
				first = false;
			}
		fputs("}", f);
		fclose(f);
	}
	for (int i = 0; i < n; i++)
	{
		if (clients[i].state == SYNCED)
		{
			open_count++;
			pmin = pmin < 0 || clients[i].live < pmin ? clients[i].live : pmin;
			pmax = clients[i].live > pmax ? clients[i].live : pmax;
		}
		else if (clients[i].state == CLOSED_LIVE)
			closed_live++;
	}
	f = fopen("/proc/self/statm", "r");
	if (f)
	{
		if (fscanf(f, "%*d %ld", &rss_pages) != 1)
			rss_pages = 0;
		fclose(f);
	}
	printf("{\"event\":\"report\",\"deliveries\":%ld,", deliveries);
	print_num("p50_ms", pct(50), true);
	print_num("p99_ms", pct(99), true);
	print_num("max_ms", hist_max, true);
	print_num("elapsed_s", (now_ms() - window_start) / 1000, true);
	print_num("per_client_min", open_count ? (double) pmin : NAN, true);
	printf("\"per_client_max\":%ld,\"open\":%d,\"closed_live\":%d,", pmax, open_count, closed_live);
	print_num("cpu_ms", cpu_ms() - cpu_start, true);
	printf("\"rss_kb\":%ld}\n", rss_pages * (sysconf(_SC_PAGESIZE) / 1024));
	fflush(stdout);
}

/* One command line from stdin; false on "quit" or its end */
static bool
on_command(char *cmd)
{
	char	   *arg;

	cmd[strcspn(cmd, "\r\n")] = '\0';
	arg = strchr(cmd, ' ');
	if (arg)
		*arg++ = '\0';
	if (strcmp(cmd, "reset") == 0)
	{
		memset(hist, 0, sizeof(uint32_t) * NBUCKETS);
		deliveries = 0;
		hist_max = 0;
		window_start = now_ms();
		cpu_start = cpu_ms();
		for (int i = 0; i < n; i++)
			clients[i].live = 0;
		printf("{\"event\":\"reset\"}\n");
		fflush(stdout);
	}
	else if (strcmp(cmd, "report") == 0)
		report(arg);
	else if (strcmp(cmd, "quit") == 0)
		return false;
	return true;
}

int
main(int argc, char **argv)
{
	struct sockaddr_in addr = {.sin_family = AF_INET};
	const char *host = getenv("FANOUT_HOST") ? getenv("FANOUT_HOST") : "127.0.0.1";
	double		deadline;
	char	   *buf = malloc(READ_CHUNK);
	char		cmd[4096];
	size_t		ncmd = 0;
	int			epfd = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	struct epoll_event events[512];

	if (argc != 4)
	{
		fprintf(stderr, "usage: fanout_clients PORT MODEL N\n");
		return 2;
	}
	addr.sin_port = htons(atoi(argv[1]));
	if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
		fail("FANOUT_HOST must be an IPv4 address: %s", host);
	model = argv[2];
	n = atoi(argv[3]);
	sync_keys = getenv("FANOUT_SYNC_KEYS") ? atol(getenv("FANOUT_SYNC_KEYS")) : 0;
	deadline = now_ms() + (getenv("FANOUT_DEADLINE_MS") ? atof(getenv("FANOUT_DEADLINE_MS")) : 120000);
	snprintf(idbuf, sizeof(idbuf), "F%d-", (int) getpid());
	id_prefix = getenv("FANOUT_ID") ? getenv("FANOUT_ID") : idbuf;
	clients = calloc(n, sizeof(Client));
	hist = calloc(NBUCKETS, sizeof(uint32_t));
	window_start = now_ms();
	cpu_start = cpu_ms();
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev) < 0)
		fail("stdin must be a pipe or a terminal (commands come there): %s", strerror(errno));
	for (int i = 0; i < n; i++)
	{
		clients[i].i = i;
		open_client(epfd, &clients[i], &addr);
	}
	for (;;)
	{
		int			timeout = reported ? -1 : (int) fmax(0, deadline - now_ms());
		int			k = epoll_wait(epfd, events, 512, timeout);

		if (k < 0 && errno != EINTR)
			fail("epoll_wait: %s", strerror(errno));
		if (!reported && now_ms() >= deadline)
			report_synced();
		for (int e = 0; e < k; e++)
		{
			Client	   *c = events[e].data.ptr;

			if (c == NULL)
			{
				ssize_t		got = read(0, cmd + ncmd, sizeof(cmd) - 1 - ncmd);
				char	   *nl;

				if (got <= 0)
					return 0;
				ncmd += got;
				while ((nl = memchr(cmd, '\n', ncmd)) != NULL)
				{
					size_t		used = nl - cmd + 1;

					*nl = '\0';
					if (!on_command(cmd))
						return 0;
					memmove(cmd, cmd + used, ncmd - used);
					ncmd -= used;
				}
				continue;
			}
			if (c->fd < 0)
				continue;
			if (!c->connected && (events[e].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			{
				on_connected(epfd, c);
				if (c->fd < 0)
					continue;
			}
			if (events[e].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
				on_readable(c, buf);
		}
	}
}
