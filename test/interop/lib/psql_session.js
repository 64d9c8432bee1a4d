'use strict';
// psql sessions kept open, through which AsyncDb (lib/stream.js) runs its
// queries.  Starting a psql and its server backend costs some 50 ms of
// CPU; the stream scripts poll the server every 50 ms, and the suite runs
// on two cores beside a second run.  test/lib/PsqlSession.pm does the same
// for the TAP tests' own queries.
//
// Each query behaves as a psql of its own would:
//   - the SQL runs as "psql -X -q -A -t -v ON_ERROR_STOP=1" runs it: the
//     first error stops it (psql exits, the session with it) and the
//     result carries psql's exit status and messages;
//   - then its statistics are flushed (as a backend's are when it ends)
//     and DISCARD ALL resets what the SQL set in the session; SQL that
//     leaves a transaction open ends the session instead (rolling it
//     back, as the end of its own psql would);
//   - a query that cannot reach the backend (the server restarted) before
//     the SQL runs opens a new session and runs the SQL there;
//   - a query finding every session busy opens another one, so that
//     concurrent queries still run concurrently;
//   - SQL with a psql meta-command or COPY ... FROM STDIN gets a psql of
//     its own.
// An idle session does not keep node.js running: a script ends as before,
// and its sessions end with it (psql reads the end of its input).
//
// SyncPool gives the same to synchronous callers (Db in lib/harness.js):
// its sessions live in a worker thread, and run() waits for the answer.

const { spawn } = require('child_process');
const wt = require('worker_threads');

const ARGS = ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1'];
let seq = 0;

// Whether SQL can go through a session
function usable(sql) {
	return !/^\s*\\/m.test(sql) && !/\bFROM\s+STDIN\b/i.test(sql);
}

// One psql process.  exchange() writes input and resolves once stdout
// holds outMark and stderr errMark (each on a line of its own), or psql
// has exited.
class Session {
	constructor(connstr, env) {
		this.p = spawn(process.env.PSQL || 'psql', [...ARGS, '-d', connstr, '-f', '-'], { env });
		this.closed = false;
		this.status = null;
		this.pending = null;
		this.p.stdin.on('error', () => {}); // psql gone: its exit says why
		this.p.on('error', () => this.finish(null));
		this.p.on('close', (status) => this.finish(status));
		for (const [stream, which] of [[this.p.stdout, 'out'], [this.p.stderr, 'err']]) {
			stream.on('data', (d) => {
				const w = this.pending;
				if (!w) return;
				w[which].push(d);
				const mark = which === 'out' ? w.outMark : w.errMark;
				const probe = Buffer.concat([w.tail[which], d]);
				if (probe.indexOf(mark) >= 0) w.seen[which] = true;
				w.tail[which] = probe.subarray(Math.max(0, probe.length - mark.length));
				if (w.seen.out && w.seen.err) this.settle();
			});
		}
		this.hold(false);
	}

	// An idle session keeps nothing running; a busy one keeps node.js
	// waiting for its answer.
	hold(busy) {
		for (const h of [this.p, this.p.stdin, this.p.stdout, this.p.stderr]) {
			if (busy) h.ref();
			else h.unref();
		}
	}

	finish(status) {
		this.closed = true;
		this.status = status;
		if (this.pending) this.settle();
	}

	settle() {
		const w = this.pending;
		this.pending = null;
		this.hold(false);
		w.resolve({
			out: Buffer.concat(w.out).toString('utf8'),
			err: Buffer.concat(w.err).toString('utf8'),
			closed: this.closed,
		});
	}

	exchange(input, outMark, errMark) {
		return new Promise((resolve) => {
			const mark = (m) => Buffer.from(m + '\n');
			this.pending = {
				resolve, out: [], err: [], outMark: mark(outMark), errMark: mark(errMark),
				tail: { out: Buffer.alloc(0), err: Buffer.alloc(0) }, seen: { out: false, err: false },
			};
			this.hold(true);
			if (this.closed) return this.settle();
			this.p.stdin.write(input);
		});
	}

	// Ends psql (it exits at the end of its input)
	end() {
		if (!this.closed) this.p.stdin.end();
	}

	// Resolves with psql's exit status once it has exited
	exited() {
		if (this.closed) return Promise.resolve(this.status);
		this.hold(true);
		return new Promise((resolve) => this.p.once('close', (status) => resolve(status)));
	}
}

// The sessions of one connection string
class Pool {
	constructor(connstr, env) {
		this.connstr = connstr;
		this.env = env;
		this.idle = [];
	}

	// Runs sql; resolves with {ok, status, out, err} as a psql of its own
	// would give them, or null when no session could reach the server.
	async run(sql) {
		for (let attempt = 0; attempt < 2; attempt++) {
			const s = this.idle.pop() || new Session(this.connstr, this.env);
			const tag = `__sb_${process.pid}_${++seq}_${Math.random().toString(36).slice(2, 10)}__`;
			const [m0, m1, m2] = [0, 1, 2].map((i) => tag + i);
			// the ping reaches the backend: if it fails, the SQL never ran
			// then the statistics it gathered are flushed, as at the end of
			// a backend (pg_stat_force_next_flush: superusers)
			const input = `SELECT 1 WHERE false;\n\\echo ${m0}\n${sql}\n;\n\\echo ${m1}\n\\warn ${m1}\n` +
				`SELECT pg_stat_force_next_flush();\nDISCARD ALL;\n\\echo ${m2}\n`;
			const r = await s.exchange(input, m2, m1);
			const p0 = r.out.indexOf(m0 + '\n');
			if (p0 < 0) {
				s.end();
				continue;
			}
			const out = r.out.slice(p0 + m0.length + 1);
			const p1 = out.indexOf(m1 + '\n');
			if (p1 < 0) {
				// the SQL failed: psql stopped there
				s.end();
				const status = await s.exited();
				return { ok: false, status: status === 0 ? 3 : status, out, err: r.err };
			}
			const e1 = r.err.indexOf(m1 + '\n');
			if (!r.closed && out.indexOf(m2 + '\n', p1) >= 0) this.idle.push(s);
			else s.end();
			return { ok: true, status: 0, out: out.slice(0, p1), err: e1 >= 0 ? r.err.slice(0, e1) : r.err };
		}
		return null;
	}
}

// The worker thread of a SyncPool: runs each query it is sent through a
// Pool, posts the result, then wakes the waiting thread.
if (!wt.isMainThread && wt.workerData && wt.workerData.sbPsqlSession) {
	const { connstr, env, port, flag } = wt.workerData;
	const pool = new Pool(connstr, env);
	const state = new Int32Array(flag);
	port.on('message', async (sql) => {
		let r = null;
		try {
			r = await pool.run(sql);
		} catch (e) {
			r = null;
		}
		port.postMessage(r);
		Atomics.store(state, 0, 1);
		Atomics.notify(state, 0);
	});
}

// Pool's synchronous twin: run(sql) blocks until the worker thread
// answers; null when no session could run it (the caller then runs a psql
// of its own).
class SyncPool {
	constructor(connstr, env) {
		const { port1, port2 } = new wt.MessageChannel();
		this.flag = new SharedArrayBuffer(4);
		this.state = new Int32Array(this.flag);
		this.port = port1;
		this.worker = new wt.Worker(__filename, {
			workerData: { sbPsqlSession: true, connstr, env, port: port2, flag: this.flag },
			transferList: [port2],
		});
		this.worker.unref();
		this.port.unref();
		this.broken = false;
	}

	run(sql) {
		if (this.broken) return null;
		Atomics.store(this.state, 0, 0);
		this.port.postMessage(sql);
		// a query may wait as long as a psql of its own would (no limit);
		// a worker that stopped answering is given up after a long while
		const deadline = Date.now() + 6 * 3600 * 1000;
		for (;;) {
			const m = wt.receiveMessageOnPort(this.port);
			if (m) return m.message;
			if (Date.now() > deadline) {
				this.broken = true;
				return null;
			}
			Atomics.wait(this.state, 0, 0, 1000);
		}
	}
}

module.exports = { Pool, SyncPool, usable };
