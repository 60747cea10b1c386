// Benchmark peer: node-oidc-provider with Pushed Authorization Requests (RFC 9126), one confidential
// client, so bench/ can drive it with wrk exactly like par-server.
//
//   node server.mjs --port PORT --client-id ID --client-secret SECRET --redirect-uri URI
//
// PEER_STORE=memory (default): the provider's own in-memory adapter. PEER_STORE=redis: pushed requests
// (and any other model) in Redis at PEER_REDIS_URL (default redis://127.0.0.1:6379/14), through
// redis_adapter.mjs, acknowledged before the 201.
//
// PAR endpoint: POST /request (client_secret_basic). Prints "peer listening on PORT" once ready.
import { parseArgs } from 'node:util';

// Koa reads NODE_ENV (oidc-provider 9 itself ignores it). Static imports are hoisted, so import late.
process.env.NODE_ENV = 'production';
const { default: Provider } = await import('oidc-provider');

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    'client-id': { type: 'string' },
    'client-secret': { type: 'string' },
    'redirect-uri': { type: 'string' },
  },
});
for (const name of ['port', 'client-id', 'client-secret', 'redirect-uri']) {
  if (!args[name]) {
    console.error('usage: node server.mjs --port PORT --client-id ID --client-secret SECRET --redirect-uri URI');
    process.exit(2);
  }
}
const port = Number(args.port);

const store = process.env.PEER_STORE || 'memory';
let adapter;  // undefined: the default in-memory one (a bounded LRU, so memory stays flat under load)
if (store === 'redis') {
  const { redisAdapter } = await import('./redis_adapter.mjs');
  adapter = await redisAdapter(process.env.PEER_REDIS_URL || 'redis://127.0.0.1:6379/14');
} else if (store !== 'memory') {
  console.error('PEER_STORE must be memory or redis');
  process.exit(2);
}

const provider = new Provider(`http://127.0.0.1:${port}`, {
  adapter,
  clients: [{
    client_id: args['client-id'],
    client_secret: args['client-secret'],
    redirect_uris: [args['redirect-uri']],
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['authorization_code'],
    response_types: ['code'],
  }],
  scopes: ['openid', 'profile'],
  features: {
    pushedAuthorizationRequests: { enabled: true, requirePushedAuthorizationRequests: false },
    // Only serves the interactive /auth login pages, never used by PAR; off avoids its dev warning.
    devInteractions: { enabled: false },
  },
  // pkce left at its default: S256 only, checked whenever sent; optional for confidential clients,
  // like par-server's default.
});
provider.proxy = false; // Loopback only: do not trust X-Forwarded-* headers.
// No request logger is attached; oidc-provider logs errors only through `debug` (DEBUG=oidc-provider:*).

provider.listen(port, '127.0.0.1', () => {
  console.log(`peer listening on ${port} (store: ${store})`);
});
