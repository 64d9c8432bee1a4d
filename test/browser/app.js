'use strict';
// The browser side of the browser test (test/t/183_browser.pl) and demo
// (test/demo_browser.sh), bundled with browserify from the unmodified npm
// packages: a scuttlebutt Model replicated with the database over
// websocket-stream, connected again whenever the connection ends, as an
// app would.  The page's script (index.html) and the test's puppeteer
// calls reach it as window.sb:
//
//     const r = sb.replicate(new sb.Model(), 'ws://db:9999/', 'users',
//         { protocols: ['scuttlebutt', 'token.' + jwt] });
//     r.model.set('k', 'v');  r.state.syncs;  r.state.closes;  r.stop();
const Model = require('scuttlebutt/model');
const websocket = require('websocket-stream');

// Keeps model replicated with the model `name` behind url; reconnects
// (after retryMs, default 250) when the connection ends.  state counts
// connections, their "sync" events and how each ended (the WebSocket's
// close code and reason).
function replicate(model, url, name, opts) {
	opts = opts || {};
	const retryMs = opts.retryMs === undefined ? 250 : opts.retryMs;
	const state = { connects: 0, opens: 0, syncs: 0, live: false, closes: [], errors: [] };
	let ws = null;
	let stopped = false;
	let timer = null;

	function connect() {
		timer = null;
		if (stopped) return;
		state.connects++;
		const socketWs = websocket(url, opts.protocols || ['scuttlebutt']);
		ws = socketWs;
		const stream = model.createStream({ meta: name });
		let ended = false;
		const end = () => {
			if (ended) return;
			ended = true;
			state.live = false;
			stream.destroy();
			if (!stopped && retryMs >= 0) timer = setTimeout(connect, retryMs);
		};
		socketWs.socket.addEventListener('open', () => { state.opens++; });
		socketWs.socket.addEventListener('close', (e) => {
			state.closes.push({ code: e.code, reason: e.reason, clean: e.wasClean });
			end();
		});
		stream.on('sync', () => { state.syncs++; state.live = true; });
		// a line the reference cannot take: drop the connection, as the
		// scuttlebutt README says
		stream.on('error', (e) => { state.errors.push(String(e && e.message)); socketWs.destroy(); });
		socketWs.on('error', (e) => { state.errors.push(String(e && e.message)); });
		socketWs.on('close', end);
		socketWs.pipe(stream).pipe(socketWs);
	}

	connect();
	return {
		model, state,
		// ends the current connection; the next one starts after retryMs
		drop() { if (ws) ws.socket.close(); },
		stop() { stopped = true; if (timer) clearTimeout(timer); if (ws) ws.socket.close(); },
	};
}

window.sb = { Model, websocket, replicate };
