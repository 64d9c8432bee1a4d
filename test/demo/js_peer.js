'use strict';
// The demo's JavaScript peer: an unmodified scuttlebutt Model that loads a
// dump written by the database (export()), makes a change of its own, and
// writes its whole state back as a dump (createReadStream()) on stdout.
const Model = require('scuttlebutt/model');

const input = require('fs').readFileSync(0, 'utf8');
const js = new Model('JSPEER');
const ws = js.createWriteStream();
ws.on('error', (e) => { console.error('bad dump:', e); process.exit(1); });
ws.write(input);
ws.end();

js.set('dave', { name: 'Dave', from: 'node.js' });
console.error('JS peer holds:', JSON.stringify(js.toJSON()));

const rs = js.createReadStream();
rs.on('data', (d) => process.stdout.write(d));
