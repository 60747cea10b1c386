// Benchmark peer: node-oidc-provider with Pushed Authorization Requests (RFC 9126), one confidential
// client, default in-memory adapter, so bench/ can drive it with wrk exactly like par-server.
//
//   node server.mjs --port PORT --client-id ID --client-secret SECRET --redirect-uri URI
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

const provider = new Provider(`http://127.0.0.1:${port}`, {
  // No adapter: the default in-memory one (a bounded LRU, so memory stays flat under load).
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
  console.log(`peer listening on ${port}`);
});
