// Shared part of the interop harnesses (push.mjs for oauth4webapi,
// push-openid-client.mjs for openid-client): configuration from environment
// variables, the authorization request parameters, and the ONE line of JSON
// each script prints, with its exit code.
//
//   success: {"ok":true,...}   exit 0   (the fields are up to the script)
//   failure: {"ok":false,"error":"<name>","message":"...","code":...,"cause":...}   exit 1
//
// Configuration (environment variables):
//   PAR_ISSUER         issuer URL, e.g. http://127.0.0.1:8080/services/123456789
//                      (each script says where it fetches the metadata from)
//   PAR_CLIENT_ID      client_id
//   PAR_CLIENT_SECRET  client secret (omit for public clients); also the HMAC key
//                      of client_secret_jwt
//   PAR_AUTH           basic | post | none | private_key_jwt | client_secret_jwt
//                      (default: basic with a secret, none without)
//   PAR_PRIVATE_JWK    private_key_jwt: the client's private key as a JWK (JSON);
//                      its "kid", when present, goes into the assertion header
//   PAR_SIGNING_ALG    private_key_jwt: the JWS alg to sign with (ES256, ES384,
//                      ES512, PS256, PS384, PS512, RS256, RS384, RS512); default
//                      the JWK's "alg", else ES256/ES384/ES512 from an EC key's
//                      "crv" (an RSA key needs one of the two: PS* or RS*)
//   PAR_REDIRECT_URI   redirect_uri
//   PAR_SCOPE          scope (optional)
//   PAR_EXTRA_PARAMS   urlencoded string merged into the request parameters;
//                      a name given here replaces the generated value(s)
//                      (e.g. "redirect_uri=https%3A%2F%2Fevil.example%2Fcb")
//   PAR_OMIT_PARAMS    comma-separated parameter names to leave out
//                      (e.g. "code_challenge,code_challenge_method")
//   PAR_TIMEOUT_MS     request timeout in milliseconds (default 10000)
//   PAR_DPOP           1: send a DPoP proof (RFC 9449 §10.1) made with a fresh
//                      ES256 key pair, retrying once when the server answers
//                      use_dpop_nonce (each script with its library's means)
//   PAR_REQUEST_OBJECT 1: push the authorization request parameters as a
//                      signed request object (RFC 9101; the "request"
//                      parameter), signed with PAR_PRIVATE_JWK (PAR_SIGNING_ALG
//                      as for private_key_jwt), whatever PAR_AUTH is
//   PAR_OUTER_PARAMS   with PAR_REQUEST_OBJECT: urlencoded parameters sent in
//                      the form next to "request" (e.g. "state=outside"), which
//                      the server must ignore (RFC 9101 §6.3)
//
// With private_key_jwt or client_secret_jwt, both lines also carry
// "client_assertion": the JWT the library put in the request body (captured
// as the library's own client authentication sets it), or null when none was
// made, e.g. when the failure came before the request (a bad PAR_PRIVATE_JWK).
//
// The functions that depend on the client library take it as `lib`, the
// module namespace of oauth4webapi or openid-client: both export
// ClientSecretBasic / ClientSecretPost / None / PrivateKeyJwt /
// ClientSecretJwt (openid-client's PrivateKeyJwt is oauth4webapi's, its
// ClientSecretJwt calls oauth4webapi's with the given secret) and (openid-client
// re-exporting oauth4webapi's) ResponseBodyError / WWWAuthenticateChallengeError.
//
// With PAR_DPOP=1 both lines also carry "dpop_jkt" (the RFC 7638 SHA-256
// thumbprint of the proof key, from the library's DPoP handle, null before one
// exists) and "dpop_retried" (true when the push was sent again with the
// server's nonce). With PAR_DPOP=1 or PAR_REQUEST_OBJECT=1 they carry
// "par_requests": one entry per POST the library sent (the PAR endpoint; a
// nonce retry makes two), in order: {"url", "dpop": the DPoP header or null,
// "request": the request object in the body or null, "status", "dpop_nonce":
// the DPoP-Nonce header of the answer or null}. The scripts pass
// capturingFetch (below) to their library as its customFetch to get them.

export class HarnessConfigError extends Error {
  name = 'HarnessConfigError'
}

function env(name, { required = false } = {}) {
  const value = process.env[name]
  if (value === undefined || value === '') {
    if (required) throw new HarnessConfigError(`${name} is required`)
    return undefined
  }
  return value
}

// WebCrypto import parameters for each JWS alg of a private_key_jwt key
// (oauth4webapi derives the header's alg from the CryptoKey's algorithm).
const SIGNING_KEY_ALGORITHMS = {
  ES256: { name: 'ECDSA', namedCurve: 'P-256' },
  ES384: { name: 'ECDSA', namedCurve: 'P-384' },
  ES512: { name: 'ECDSA', namedCurve: 'P-521' },
  PS256: { name: 'RSA-PSS', hash: 'SHA-256' },
  PS384: { name: 'RSA-PSS', hash: 'SHA-384' },
  PS512: { name: 'RSA-PSS', hash: 'SHA-512' },
  RS256: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
  RS384: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-384' },
  RS512: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-512' },
}
const EC_ALGORITHM_BY_CURVE = { 'P-256': 'ES256', 'P-384': 'ES384', 'P-521': 'ES512' }

// PAR_PRIVATE_JWK imported as a non-extractable signing CryptoKey, with its
// kid: the `PrivateKey` ({key, kid}) that PrivateKeyJwt takes.
async function privateKeyFromEnv() {
  let jwk
  try {
    jwk = JSON.parse(env('PAR_PRIVATE_JWK', { required: true }))
  } catch (err) {
    if (err instanceof HarnessConfigError) throw err
    throw new HarnessConfigError(`PAR_PRIVATE_JWK is not JSON: ${err.message}`)
  }
  if (jwk === null || typeof jwk !== 'object' || typeof jwk.d !== 'string') {
    throw new HarnessConfigError('PAR_PRIVATE_JWK must be a private JWK (a JSON object with "d")')
  }
  const alg = env('PAR_SIGNING_ALG') ?? jwk.alg ?? (jwk.kty === 'EC' ? EC_ALGORITHM_BY_CURVE[jwk.crv] : undefined)
  const algorithm = SIGNING_KEY_ALGORITHMS[alg]
  if (algorithm === undefined) {
    const known = Object.keys(SIGNING_KEY_ALGORITHMS).join(', ')
    throw new HarnessConfigError(`PAR_SIGNING_ALG (or the JWK's alg) must be one of ${known}, got ${JSON.stringify(alg)}`)
  }
  // WebCrypto checks a JWK "alg" against the import algorithm: sign with the
  // key as PAR_SIGNING_ALG says, whatever alg the JWK was generated with.
  const { alg: _alg, key_ops: _keyOps, ...material } = jwk
  const key = await crypto.subtle.importKey('jwk', material, algorithm, false, ['sign'])
  return { key, kid: typeof jwk.kid === 'string' ? jwk.kid : undefined }
}

async function clientAuthFor(lib, mode, secret, privateKey) {
  switch (mode) {
    case 'basic':
      if (secret === undefined) throw new HarnessConfigError('PAR_AUTH=basic needs PAR_CLIENT_SECRET')
      return lib.ClientSecretBasic(secret)
    case 'post':
      if (secret === undefined) throw new HarnessConfigError('PAR_AUTH=post needs PAR_CLIENT_SECRET')
      return lib.ClientSecretPost(secret)
    case 'none':
      return lib.None()
    case 'private_key_jwt':
      return lib.PrivateKeyJwt(privateKey)
    case 'client_secret_jwt':
      if (secret === undefined) throw new HarnessConfigError('PAR_AUTH=client_secret_jwt needs PAR_CLIENT_SECRET')
      return lib.ClientSecretJwt(secret)
    default:
      throw new HarnessConfigError(
        `PAR_AUTH must be basic, post, none, private_key_jwt or client_secret_jwt, got ${JSON.stringify(mode)}`,
      )
  }
}

const JWT_AUTH_MODES = new Set(['private_key_jwt', 'client_secret_jwt'])

// What the output line reports besides main's result (see run()):
// - the client_assertion: `enabled` once PAR_AUTH is known to be a JWT mode,
//   `assertion` the one the library's client authentication last put in a
//   request body;
// - with PAR_DPOP (`dpop`): the proof key's thumbprint and whether the push
//   was retried with a nonce, set by the script (recordDpop);
// - with PAR_DPOP or PAR_REQUEST_OBJECT: `exchanges`, the POSTs seen by
//   capturingFetch (null: not reported).
const capture = { enabled: false, assertion: null, dpop: false, dpopJkt: null, dpopRetried: false, exchanges: null }

// The script reports its DPoP handle's thumbprint and whether it retried.
export function recordDpop({ jkt, retried }) {
  if (jkt !== undefined) capture.dpopJkt = jkt
  if (retried !== undefined) capture.dpopRetried = retried
}

// The POSTs the library made so far (see capturingFetch), [] when none.
export function parExchanges() {
  return capture.exchanges ?? []
}

// A fetch for the libraries' customFetch option: the global fetch, recording
// each POST (the pushes) with the DPoP proof and request object it carried and
// the status and DPoP-Nonce of the answer. Both libraries call it as
// (url: string, {method, headers: a plain object, body: URLSearchParams, ...}).
export async function capturingFetch(url, init) {
  const response = await fetch(url, init)
  if (capture.exchanges !== null && init?.method === 'POST') {
    const headers = new Headers(init.headers)
    const body = new URLSearchParams(init.body ?? '')
    capture.exchanges.push({
      url: String(url),
      dpop: headers.get('dpop'),
      request: body.get('request'),
      status: response.status,
      dpop_nonce: response.headers.get('dpop-nonce'),
    })
  }
  return response
}

function flag(name) {
  const value = env(name)
  if (value === undefined || value === '0') return false
  if (value === '1') return true
  throw new HarnessConfigError(`${name} must be 1 or 0, got ${JSON.stringify(value)}`)
}

// `auth` wrapped to record the client_assertion it sets: a ClientAuth is
// called as (as, client, body, headers) and fills in `body`, which is then sent.
function capturingAssertion(auth) {
  return async (as, client, body, headers) => {
    await auth(as, client, body, headers)
    capture.assertion = body.get('client_assertion')
  }
}

// The PAR_* configuration, with `clientAuth` made by `lib` for PAR_AUTH.
async function readConfig(lib) {
  const issuer = new URL(env('PAR_ISSUER', { required: true }))
  const clientId = env('PAR_CLIENT_ID', { required: true })
  const clientSecret = env('PAR_CLIENT_SECRET')
  const authMode = env('PAR_AUTH') ?? (clientSecret === undefined ? 'none' : 'basic')
  const redirectUri = env('PAR_REDIRECT_URI', { required: true })
  const scope = env('PAR_SCOPE')
  const timeoutMs = Number(env('PAR_TIMEOUT_MS') ?? 10000)
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) {
    throw new HarnessConfigError('PAR_TIMEOUT_MS must be a positive integer')
  }
  const dpop = flag('PAR_DPOP')
  const requestObject = flag('PAR_REQUEST_OBJECT')
  const outerParams = new URLSearchParams(env('PAR_OUTER_PARAMS') ?? '')
  if (!requestObject && outerParams.size > 0) {
    throw new HarnessConfigError('PAR_OUTER_PARAMS needs PAR_REQUEST_OBJECT=1')
  }
  capture.enabled = JWT_AUTH_MODES.has(authMode)
  capture.dpop = dpop
  if (dpop || requestObject) capture.exchanges = []
  // PAR_PRIVATE_JWK signs the client assertion and / or the request object.
  const privateKey = authMode === 'private_key_jwt' || requestObject ? await privateKeyFromEnv() : undefined
  const auth = await clientAuthFor(lib, authMode, clientSecret, privateKey)
  const clientAuth = capture.enabled ? capturingAssertion(auth) : auth
  return {
    issuer,
    clientId,
    clientSecret,
    clientAuth,
    redirectUri,
    scope,
    timeoutMs,
    dpop,
    requestObject,
    // the request object's signing key ({key, kid}), with PAR_REQUEST_OBJECT
    requestObjectKey: requestObject ? privateKey : undefined,
    outerParams,
  }
}

// The form parameters pushed with a request object: `request`, then
// PAR_OUTER_PARAMS (the library adds client_id and client authentication).
export function requestObjectForm(config, requestObject) {
  const form = new URLSearchParams({ request: requestObject })
  for (const [name, value] of config.outerParams) form.append(name, value)
  return form
}

// The authorization request: response_type (when given), redirect_uri, scope,
// the PKCE S256 code_challenge and state, then PAR_EXTRA_PARAMS and
// PAR_OMIT_PARAMS applied.
export function authorizationParams(config, { responseType, codeChallenge, state }) {
  const params = new URLSearchParams()
  if (responseType !== undefined) params.set('response_type', responseType)
  params.set('redirect_uri', config.redirectUri)
  if (config.scope !== undefined) params.set('scope', config.scope)
  params.set('code_challenge', codeChallenge)
  params.set('code_challenge_method', 'S256')
  params.set('state', state)

  const extra = new URLSearchParams(env('PAR_EXTRA_PARAMS') ?? '')
  for (const name of new Set(extra.keys())) {
    params.delete(name)
    for (const value of extra.getAll(name)) params.append(name, value)
  }
  for (const name of (env('PAR_OMIT_PARAMS') ?? '').split(',')) {
    if (name.trim()) params.delete(name.trim())
  }
  return params
}

async function readJsonBody(response) {
  try {
    if (!response || response.bodyUsed) return undefined
    const text = await response.text()
    return text ? JSON.parse(text) : undefined
  } catch {
    return undefined
  }
}

async function describeCause(lib, err) {
  if (err instanceof lib.ResponseBodyError) {
    return {
      error: err.error,
      error_description: err.error_description ?? null,
      status: err.status,
      body: err.cause ?? null,
    }
  }
  if (err instanceof lib.WWWAuthenticateChallengeError) {
    // The WWW-Authenticate header is checked before the body, so e.g. a
    // 401 invalid_client carrying `WWW-Authenticate: Basic ...` lands here and
    // the JSON body is still unread: take error/error_description from the
    // challenge parameters, falling back to the body.
    const challenges = err.cause ?? []
    const params = challenges.find((c) => c.parameters?.error)?.parameters ?? {}
    const body = await readJsonBody(err.response)
    return {
      error: params.error ?? body?.error ?? null,
      error_description: params.error_description ?? body?.error_description ?? null,
      status: err.status,
      challenges,
      body: body ?? null,
    }
  }
  // e.g. oauth4webapi's OperationProcessingError "unexpected HTTP status code" or
  // openid-client's ClientError "unexpected HTTP response status code": cause is the Response
  if (err?.cause instanceof Response) {
    return { status: err.cause.status, body: (await readJsonBody(err.cause)) ?? null }
  }
  // e.g. TypeError "fetch failed" with cause ECONNREFUSED, or an openid-client
  // ClientError wrapping an oauth4webapi OperationProcessingError
  if (err?.cause instanceof Error) {
    return { name: err.cause.name, message: err.cause.message, code: err.cause.code ?? null }
  }
  // e.g. issuer mismatch: {expected, body, attribute}
  if (err?.cause && typeof err.cause === 'object' && !(err.cause instanceof URL)) {
    try {
      return JSON.parse(JSON.stringify(err.cause))
    } catch {
      return null
    }
  }
  return null
}

// Runs `main(config)` (config from readConfig(lib)) and prints its result as
// the success line, or the error it throws (configuration errors included) as
// the failure line with exit code 1.
export async function run(lib, main) {
  let output
  try {
    output = { ok: true, ...(await main(await readConfig(lib))) }
  } catch (err) {
    output = {
      ok: false,
      error: err?.name ?? 'Error',
      message: err?.message ?? String(err),
      code: err?.code ?? null,
      cause: await describeCause(lib, err).catch(() => null),
    }
    process.exitCode = 1
  }
  if (capture.enabled) output.client_assertion = capture.assertion
  if (capture.dpop) {
    output.dpop_jkt = capture.dpopJkt
    output.dpop_retried = capture.dpopRetried
  }
  if (capture.exchanges !== null) output.par_requests = capture.exchanges
  process.stdout.write(JSON.stringify(output) + '\n')
}
