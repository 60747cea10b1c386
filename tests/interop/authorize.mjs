// Interop harness: one authorization code flow front channel through the
// example authorization endpoint (examples/authorization_endpoint) with
// oauth4webapi, printing ONE line of JSON (harness.mjs: PAR_* configuration,
// parameters, output and exit code).
//
// It pushes the request (RFC 9126) as push.mjs does (basic, post or none
// client authentication), sends the browser's GET to the metadata's
// authorization_endpoint with client_id and request_uri (RFC 9126 §4),
// validates the redirect with oauth.validateAuthResponse (state, and iss
// against the issuer: RFC 9207 §2), then sends the same GET again.
//
//   success: {"ok":true,"request_uri":"...","status":303,"location":"...",
//             "code":"...","replay_status":400,"replay_location":null,
//             "replay_body":"..."}   exit 0
//   failure: {"ok":false,...}   exit 1 (the push or validateAuthResponse failed)
import * as oauth from 'oauth4webapi'

import { authorizationParams, run } from './harness.mjs'

await run(oauth, async (config) => {
  const options = {
    [oauth.allowInsecureRequests]: true, // plain http on loopback in tests
    signal: () => AbortSignal.timeout(config.timeoutMs),
  }
  const as = await oauth
    .discoveryRequest(config.issuer, { ...options, algorithm: 'oauth2' })
    .then((response) => oauth.processDiscoveryResponse(config.issuer, response))
  const client = { client_id: config.clientId }

  const codeVerifier = oauth.generateRandomCodeVerifier()
  const codeChallenge = await oauth.calculatePKCECodeChallenge(codeVerifier)
  const state = oauth.generateRandomState()
  const params = authorizationParams(config, { responseType: 'code', codeChallenge, state })
  const pushed = await oauth
    .pushedAuthorizationRequest(as, client, config.clientAuth, params, options)
    .then((response) => oauth.processPushedAuthorizationResponse(as, client, response))

  const authorizationUrl = new URL(as.authorization_endpoint)
  authorizationUrl.searchParams.set('client_id', client.client_id)
  authorizationUrl.searchParams.set('request_uri', pushed.request_uri)
  // The browser's visit: the redirect is what the client's redirect_uri would receive.
  const visit = () => fetch(authorizationUrl, { redirect: 'manual', signal: AbortSignal.timeout(config.timeoutMs) })

  const first = await visit()
  const location = first.headers.get('location')
  if (location === null) throw new Error(`the authorization endpoint answered ${first.status} without a redirect`)
  const callback = oauth.validateAuthResponse(as, client, new URL(location), state)

  const replay = await visit()
  return {
    request_uri: pushed.request_uri,
    status: first.status,
    location,
    code: callback.get('code'),
    replay_status: replay.status,
    replay_location: replay.headers.get('location'),
    replay_body: await replay.text(),
  }
})
