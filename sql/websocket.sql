-- Settings of WebSocket clients and of streams that name no model:
-- scuttlebutt.websocket_origins, scuttlebutt.default_model and
-- scuttlebutt.default_model_wait (the listener's behaviour is in the TAP
-- tests 180-182)

-- defaults: no browser origin, no default model, a one-second wait
SHOW scuttlebutt.websocket_origins;
SHOW scuttlebutt.default_model;
SHOW scuttlebutt.default_model_wait;

-- they change at reload only
SET scuttlebutt.websocket_origins = '*';
SET scuttlebutt.default_model = 'users';

-- origins as browsers send them: scheme://host[:port], "null", or "*"
ALTER SYSTEM SET scuttlebutt.websocket_origins = 'https://app.example, http://localhost:8080, null';
ALTER SYSTEM SET scuttlebutt.websocket_origins = '*';
ALTER SYSTEM SET scuttlebutt.websocket_origins = 'chrome-extension://abcdef';
ALTER SYSTEM SET scuttlebutt.websocket_origins = '';
-- refused: no scheme, a path, a trailing slash, a query, nothing after ://
ALTER SYSTEM SET scuttlebutt.websocket_origins = 'app.example';
ALTER SYSTEM SET scuttlebutt.websocket_origins = 'https://app.example/chat';
ALTER SYSTEM SET scuttlebutt.websocket_origins = 'https://app.example, https://b.example/';
ALTER SYSTEM SET scuttlebutt.websocket_origins = 'https://app.example?x=1';
ALTER SYSTEM SET scuttlebutt.websocket_origins = 'https://';
ALTER SYSTEM SET scuttlebutt.websocket_origins = '://app.example';
ALTER SYSTEM RESET scuttlebutt.websocket_origins;

-- the wait: a duration, 0 to turn it off
ALTER SYSTEM SET scuttlebutt.default_model_wait = '250ms';
ALTER SYSTEM SET scuttlebutt.default_model_wait = 0;
ALTER SYSTEM RESET scuttlebutt.default_model_wait;
ALTER SYSTEM SET scuttlebutt.default_model = 'users';
ALTER SYSTEM RESET scuttlebutt.default_model;
