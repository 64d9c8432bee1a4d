'use strict';
// The browser page of the browser test and demo: bundles app.js (the
// unmodified scuttlebutt and websocket-stream packages) with browserify
// into a directory beside index.html, and serves that directory over HTTP.
//
//     const page = require('./browser/page');
//     await page.bundle(dir);
//     const server = await page.serve(dir, '127.0.0.1', port);  // port 0: any

const fs = require('fs');
const http = require('http');
const path = require('path');
const browserify = require('browserify');

function bundle(dir) {
	fs.mkdirSync(dir, { recursive: true });
	fs.copyFileSync(path.join(__dirname, 'index.html'), path.join(dir, 'index.html'));
	return new Promise((resolve, reject) => {
		browserify(path.join(__dirname, 'app.js')).bundle((err, buf) => {
			if (err) return reject(err);
			fs.writeFileSync(path.join(dir, 'bundle.js'), buf);
			resolve(buf.length);
		});
	});
}

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8' };

// A static server of dir's files (no listing, nothing outside dir)
function serve(dir, host, port) {
	const server = http.createServer((req, res) => {
		const p = new URL(req.url, 'http://x').pathname;
		const name = p === '/' ? 'index.html' : path.basename(p);
		const file = path.join(dir, name);
		if (!TYPES[path.extname(name)] || !fs.existsSync(file)) {
			res.writeHead(404);
			return res.end();
		}
		res.writeHead(200, { 'Content-Type': TYPES[path.extname(name)], 'Cache-Control': 'no-store' });
		fs.createReadStream(file).pipe(res);
	});
	return new Promise((resolve, reject) => {
		server.once('error', reject);
		server.listen(port, host, () => resolve(server));
	});
}

module.exports = { bundle, serve };
