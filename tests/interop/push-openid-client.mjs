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
//
// PAR_DPOP=1: a handle from client.getDPoPHandle(config, randomDPoPKeyPair('ES256'))
// is passed as buildAuthorizationUrlWithPAR's `DPoP` option; openid-client
// itself retries once on use_dpop_nonce, so "dpop_retried" is whether it sent
// the push twice (seen through the customFetch).
//
// PAR_REQUEST_OBJECT=1: client.buildAuthorizationUrlWithJAR signs the
// parameters (with response_type and client_id added) into a request object
// with the PAR_PRIVATE_JWK key, and the URL's parameters (client_id, request)
// plus PAR_OUTER_PARAMS are what buildAuthorizationUrlWithPAR pushes.
import * as client from 'openid-client'

import { authorizationParams, capturingFetch, parExchanges, recordDpop, requestObjectForm, run } from './harness.mjs'

await run(client, async (config) => {
  // Discovery, then a Configuration bound to the client. allowInsecureRequests
  // (par-server is plain http on loopback in tests) also covers discovery itself.
  const { issuer, clientId, clientSecret, clientAuth, timeoutMs } = config
  const configuration = await client.discovery(issuer, clientId, clientSecret, clientAuth, {
    execute: [client.allowInsecureRequests],
    timeout: timeoutMs / 1000,
    [client.customFetch]: capturingFetch, // the global fetch, recording the pushes for the output line
  })

  const codeVerifier = client.randomPKCECodeVerifier()
  const codeChallenge = await client.calculatePKCECodeChallenge(codeVerifier)
  const state = client.randomState()
  const authorizationRequest = authorizationParams(config, { codeChallenge, state })

  // RFC 9101: the parameters as claims of a request object signed with the client's key
  const params = config.requestObject
    ? requestObjectForm(
        config,
        (
          await client.buildAuthorizationUrlWithJAR(configuration, authorizationRequest, config.requestObjectKey)
        ).searchParams.get('request'),
      )
    : authorizationRequest

  // RFC 9449 §10.1: a DPoP proof with the push
  let DPoP
  if (config.dpop) {
    DPoP = client.getDPoPHandle(configuration, await client.randomDPoPKeyPair('ES256'))
    recordDpop({ jkt: await DPoP.calculateThumbprint() })
  }

  let url
  try {
    url = await client.buildAuthorizationUrlWithPAR(configuration, params, { DPoP })
  } finally {
    if (DPoP !== undefined) recordDpop({ retried: parExchanges().length > 1 })
  }

  return {
    authorization_url: url.href,
    request_uri: url.searchParams.get('request_uri'),
    client_id: url.searchParams.get('client_id'),
  }
})
