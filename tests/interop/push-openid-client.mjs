// Interop harness: builds an authorization URL with a Pushed Authorization
// Request (RFC 9126) against par-server using openid-client's high-level API
// (discovery + buildAuthorizationUrlWithPAR) and prints ONE line of JSON.
//
//   success: {"ok":true,"authorization_url":"...","request_uri":"...","client_id":"..."}   exit 0
//   failure: {"ok":false,"error":"<name>","message":"...","code":...,"cause":...}   exit 1
//
// Configuration (environment variables, as for push.mjs):
//   PAR_ISSUER         issuer URL, e.g. http://127.0.0.1:8080/services/123456789
//                      (metadata is fetched with openid-client's default
//                      discovery, i.e. <issuer>/.well-known/openid-configuration)
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
//   PAR_TIMEOUT_MS     request timeout in milliseconds (default 10000; openid-client
//                      takes seconds, so it is passed on as PAR_TIMEOUT_MS / 1000)
//
// The service's metadata must advertise an authorization_endpoint:
// buildAuthorizationUrlWithPAR resolves it before pushing. response_type=code
// is added by openid-client when not given. The resulting URL carries only
// client_id and request_uri (RFC 9126 §4).
import * as client from 'openid-client'

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
      return client.ClientSecretBasic(secret)
    case 'post':
      if (secret === undefined) throw new HarnessConfigError('PAR_AUTH=post needs PAR_CLIENT_SECRET')
      return client.ClientSecretPost(secret)
    case 'none':
      return client.None()
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
  if (err instanceof client.ResponseBodyError) {
    return {
      error: err.error,
      error_description: err.error_description ?? null,
      status: err.status,
      body: err.cause ?? null,
    }
  }
  if (err instanceof client.WWWAuthenticateChallengeError) {
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
  // e.g. ClientError "unexpected HTTP response status code": cause is the Response
  if (err?.cause instanceof Response) {
    return { status: err.cause.status, body: (await readJsonBody(err.cause)) ?? null }
  }
  // e.g. TypeError "fetch failed" with cause ECONNREFUSED, or a ClientError
  // wrapping an oauth4webapi OperationProcessingError
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

  // Discovery, then a Configuration bound to the client. allowInsecureRequests
  // (par-server is plain http on loopback in tests) also covers discovery itself.
  const config = await client.discovery(issuer, clientId, clientSecret, clientAuth, {
    execute: [client.allowInsecureRequests],
    timeout: timeoutMs / 1000,
  })

  const codeVerifier = client.randomPKCECodeVerifier()
  const codeChallenge = await client.calculatePKCECodeChallenge(codeVerifier)
  const state = client.randomState()

  const params = new URLSearchParams()
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

  const url = await client.buildAuthorizationUrlWithPAR(config, params)

  return {
    ok: true,
    authorization_url: url.href,
    request_uri: url.searchParams.get('request_uri'),
    client_id: url.searchParams.get('client_id'),
  }
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
