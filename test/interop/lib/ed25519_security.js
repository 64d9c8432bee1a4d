'use strict';
// A security object of the same shape as the reference's
// scuttlebutt/security.js (sign, verify, createId, publicKey), signing with
// Ed25519 instead of RSA-SHA1:
//     new Model(ed25519Security(keys, PRIVATE, PUBLIC))
// The signed text is the reference's, JSON.stringify([change, ts, source]),
// the signature travels as base64 in element 3, and the id is the
// reference's createId(): base64 of the SHA-1 of the public key's PEM text.
// keys maps ids to public PEM texts, as in the reference.

const crypto = require('crypto');

module.exports = function (keys, PRIVATE, PUBLIC) {
	return {
		sign: function (update) {
			return crypto.sign(null, Buffer.from(JSON.stringify(update), 'utf8'), PRIVATE).toString('base64');
		},
		verify: function (update, cb) {
			const _update = update.slice();
			const sig = _update.pop();
			const key = keys[update[2]];
			if (!key || typeof sig !== 'string') return cb(null, false);
			let ok;
			try {
				ok = crypto.verify(null, Buffer.from(JSON.stringify(_update), 'utf8'), key, Buffer.from(sig, 'base64'));
			} catch (e) {
				// a key of another type, a malformed signature
				ok = false;
			}
			cb(null, ok);
		},
		createId: function () {
			return crypto.createHash('sha1').update(PUBLIC).digest('base64');
		},
		publicKey: PUBLIC,
	};
};
