// Interop harness: sends one Pushed Authorization Request (RFC 9126) to
// par-server with the oauth4webapi client and prints ONE line of JSON.
//
//   success: {"ok":true,"request_uri":"...","expires_in":60,"status":201}   exit 0
//   failure: {"ok":false,"error":"<name>","message":"...","code":...,"cause":...}   exit 1
//
// Configuration (environment variables):
//   PAR_ISSUER         issuer URL, e.g. http://127.0.0.1:8080/services/123456789
//                      (metadata is fetched from the RFC 8414 path-inserted
//                      /.well-known/oauth-authorization-server/<path> location)
//   PAR_CLIENT_ID      client_id
//   PAR_CLIENT_SECRET  client secret (omit for public clients)
//   PAR_AUTH           basic | post | none  (default: basic with a secret, none without)
//   PAR_REDIRECT_URI   redirect_uri
//   PAR_SCOPE          scope (optional)
//   PAR_EXTRA_PARAMS   urlencoded string merged into the request parameters;
//                      a name given here replaces the generated value(s)
//                      (e.g. "redirect_uri=https%3A%2F%2Fevil.example%2Fcb")
//   PAR_OMIT_PARAMS    comma-separated parameter names to leave out
//                      (e.g. "code_challenge,code_challenge_method")
//   PAR_TIMEOUT_MS     per-request timeout in milliseconds (default 10000)
//
// Note: oauth4webapi always puts client_id in the PAR body (also with
// client_secret_basic) and sets client_id itself, so client_id cannot be
// overridden through PAR_EXTRA_PARAMS.
import * as oauth from 'oauth4webapi'

class HarnessConfigError extends Error {
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

function clientAuthFor(mode, secret) {
  switch (mode) {
    case 'basic':
      if (secret === undefined) throw new HarnessConfigError('PAR_AUTH=basic needs PAR_CLIENT_SECRET')
      return oauth.ClientSecretBasic(secret)
    case 'post':
      if (secret === undefined) throw new HarnessConfigError('PAR_AUTH=post needs PAR_CLIENT_SECRET')
      return oauth.ClientSecretPost(secret)
    case 'none':
      return oauth.None()
    default:
      throw new HarnessConfigError(`PAR_AUTH must be basic, post or none, got ${JSON.stringify(mode)}`)
  }
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

async function describeCause(err) {
  if (err instanceof oauth.ResponseBodyError) {
    return {
      error: err.error,
      error_description: err.error_description ?? null,
      status: err.status,
      body: err.cause ?? null,
    }
  }
  if (err instanceof oauth.WWWAuthenticateChallengeError) {
    // oauth4webapi checks WWW-Authenticate before the body, so e.g. a
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
  // e.g. OperationProcessingError "unexpected HTTP status code": cause is the Response
  if (err?.cause instanceof Response) {
    return { status: err.cause.status, body: (await readJsonBody(err.cause)) ?? null }
  }
  // e.g. TypeError "fetch failed" with cause ECONNREFUSED
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

async function main() {
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

  const clientAuth = clientAuthFor(authMode, clientSecret)
  const options = {
    [oauth.allowInsecureRequests]: true, // par-server is plain http on loopback in tests
    signal: () => AbortSignal.timeout(timeoutMs),
  }

  // RFC 8414 discovery: GET <origin>/.well-known/oauth-authorization-server<issuer path>
  const as = await oauth
    .discoveryRequest(issuer, { ...options, algorithm: 'oauth2' })
    .then((response) => oauth.processDiscoveryResponse(issuer, response))

  const client = { client_id: clientId }

  const codeVerifier = oauth.generateRandomCodeVerifier()
  const codeChallenge = await oauth.calculatePKCECodeChallenge(codeVerifier)
  const state = oauth.generateRandomState()

  const params = new URLSearchParams()
  params.set('response_type', 'code')
  params.set('redirect_uri', redirectUri)
  if (scope !== undefined) params.set('scope', scope)
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

  const response = await oauth.pushedAuthorizationRequest(as, client, clientAuth, params, options)
  const status = response.status
  const result = await oauth.processPushedAuthorizationResponse(as, client, response)

  return { ok: true, request_uri: result.request_uri, expires_in: result.expires_in, status }
}

let output
try {
  output = await main()
} catch (err) {
  output = {
    ok: false,
    error: err?.name ?? 'Error',
    message: err?.message ?? String(err),
    code: err?.code ?? null,
    cause: await describeCause(err).catch(() => null),
  }
  process.exitCode = 1
}
process.stdout.write(JSON.stringify(output) + '\n')
