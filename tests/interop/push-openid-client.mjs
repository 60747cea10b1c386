// Interop harness: builds an authorization URL with a Pushed Authorization
// Request (RFC 9126) against par-server using openid-client's high-level API
// (discovery + buildAuthorizationUrlWithPAR) and prints ONE line of JSON
// (harness.mjs: configuration from PAR_* environment variables, as for
// push.mjs, parameters, output and exit code).
//
//   success: {"ok":true,"authorization_url":"...","request_uri":"...","client_id":"..."}   exit 0
//   failure: {"ok":false,"error":"<name>","message":"...","code":...,"cause":...}   exit 1
//
// The metadata is fetched with openid-client's default discovery, i.e.
// <issuer>/.well-known/openid-configuration. openid-client takes its timeout
// in seconds, so PAR_TIMEOUT_MS is passed on as PAR_TIMEOUT_MS / 1000.
//
// The service's metadata must advertise an authorization_endpoint:
// buildAuthorizationUrlWithPAR resolves it before pushing. response_type=code
// is added by openid-client when not given. The resulting URL carries only
// client_id and request_uri (RFC 9126 §4).
import * as client from 'openid-client'

import { authorizationParams, run } from './harness.mjs'

await run(client, async (config) => {
  // Discovery, then a Configuration bound to the client. allowInsecureRequests
  // (par-server is plain http on loopback in tests) also covers discovery itself.
  const { issuer, clientId, clientSecret, clientAuth, timeoutMs } = config
  const configuration = await client.discovery(issuer, clientId, clientSecret, clientAuth, {
    execute: [client.allowInsecureRequests],
    timeout: timeoutMs / 1000,
  })

  const codeVerifier = client.randomPKCECodeVerifier()
  const codeChallenge = await client.calculatePKCECodeChallenge(codeVerifier)
  const state = client.randomState()
  const params = authorizationParams(config, { codeChallenge, state })

  const url = await client.buildAuthorizationUrlWithPAR(configuration, params)

  return {
    authorization_url: url.href,
    request_uri: url.searchParams.get('request_uri'),
    client_id: url.searchParams.get('client_id'),
  }
})
