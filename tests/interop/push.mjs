// Interop harness: sends one Pushed Authorization Request (RFC 9126) to
// par-server with the oauth4webapi client and prints ONE line of JSON
// (harness.mjs: configuration from PAR_* environment variables, parameters,
// output and exit code).
//
//   success: {"ok":true,"request_uri":"...","expires_in":60,"status":201}   exit 0
//   failure: {"ok":false,"error":"<name>","message":"...","code":...,"cause":...}   exit 1
//
// The metadata is fetched from the RFC 8414 path-inserted
// /.well-known/oauth-authorization-server/<issuer path> location, and
// PAR_TIMEOUT_MS is the timeout of each request.
//
// Note: oauth4webapi always puts client_id in the PAR body (also with
// client_secret_basic) and sets client_id itself, so client_id cannot be
// overridden through PAR_EXTRA_PARAMS.
import * as oauth from 'oauth4webapi'

import { authorizationParams, run } from './harness.mjs'

await run(oauth, async (config) => {
  const options = {
    [oauth.allowInsecureRequests]: true, // par-server is plain http on loopback in tests
    signal: () => AbortSignal.timeout(config.timeoutMs),
  }

  // RFC 8414 discovery: GET <origin>/.well-known/oauth-authorization-server<issuer path>
  const as = await oauth
    .discoveryRequest(config.issuer, { ...options, algorithm: 'oauth2' })
    .then((response) => oauth.processDiscoveryResponse(config.issuer, response))

  const client = { client_id: config.clientId }

  const codeVerifier = oauth.generateRandomCodeVerifier()
  const codeChallenge = await oauth.calculatePKCECodeChallenge(codeVerifier)
  const state = oauth.generateRandomState()
  const params = authorizationParams(config, { responseType: 'code', codeChallenge, state })

  const response = await oauth.pushedAuthorizationRequest(as, client, config.clientAuth, params, options)
  const status = response.status
  const result = await oauth.processPushedAuthorizationResponse(as, client, response)

  return { request_uri: result.request_uri, expires_in: result.expires_in, status }
})
