// Interop harness: sends one Pushed Authorization Request (RFC 9126) to
// par-server with the oauth4webapi client and prints ONE line of JSON
// (harness.mjs: configuration from PAR_* environment variables, parameters,
// output and exit code).
//
//   success: {"ok":true,"request_uri":"...","expires_in":60,"status":201}   exit 0
//   failure: {"ok":false,"error":"<name>","message":"...","code":...,"cause":...}   exit 1
//   (plus dpop_jkt, dpop_retried and par_requests with PAR_DPOP /
//   PAR_REQUEST_OBJECT, see harness.mjs)
//
// The metadata is fetched from the RFC 8414 path-inserted
// /.well-known/oauth-authorization-server/<issuer path> location, and
// PAR_TIMEOUT_MS is the timeout of each request.
//
// PAR_DPOP=1: a DPoP handle (oauth.DPoP) over an oauth.generateKeyPair('ES256')
// key pair is passed as the `DPoP` option of pushedAuthorizationRequest. On a
// use_dpop_nonce answer (oauth.isDPoPNonceError) the push is sent once more,
// as oauth4webapi's DPoP example does: the handle has cached the server's
// DPoP-Nonce from the first answer and puts it into the new proof.
//
// PAR_REQUEST_OBJECT=1: the parameters are signed into a request object with
// oauth.issueRequestObject(as, client, parameters, {key, kid}) and the push
// carries `request` (and PAR_OUTER_PARAMS); oauth4webapi adds client_id.
//
// Note: oauth4webapi always puts client_id in the PAR body (also with
// client_secret_basic) and sets client_id itself, so client_id cannot be
// overridden through PAR_EXTRA_PARAMS.
import * as oauth from 'oauth4webapi'

import { authorizationParams, capturingFetch, recordDpop, requestObjectForm, run } from './harness.mjs'

await run(oauth, async (config) => {
  const options = {
    [oauth.allowInsecureRequests]: true, // par-server is plain http on loopback in tests
    [oauth.customFetch]: capturingFetch, // the global fetch, recording the pushes for the output line
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
  const authorizationRequest = authorizationParams(config, { responseType: 'code', codeChallenge, state })

  // RFC 9101: the parameters as claims of a request object signed with the client's key
  const params = config.requestObject
    ? requestObjectForm(
        config,
        await oauth.issueRequestObject(as, client, authorizationRequest, config.requestObjectKey),
      )
    : authorizationRequest

  // RFC 9449 §10.1: a DPoP proof with the push
  let DPoP
  if (config.dpop) {
    DPoP = oauth.DPoP(client, await oauth.generateKeyPair('ES256'))
    recordDpop({ jkt: await DPoP.calculateThumbprint() })
  }

  const pushedAuthorizationRequest = () =>
    oauth.pushedAuthorizationRequest(as, client, config.clientAuth, params, { ...options, DPoP })
  let response = await pushedAuthorizationRequest()
  const processPushedAuthorizationResponse = () => oauth.processPushedAuthorizationResponse(as, client, response)
  const result = await processPushedAuthorizationResponse().catch(async (err) => {
    if (DPoP !== undefined && oauth.isDPoPNonceError(err)) {
      // the handle cached the DPoP-Nonce of the use_dpop_nonce answer: retry once
      recordDpop({ retried: true })
      response = await pushedAuthorizationRequest()
      return processPushedAuthorizationResponse()
    }
    throw err
  })

  return { request_uri: result.request_uri, expires_in: result.expires_in, status: response.status }
})
