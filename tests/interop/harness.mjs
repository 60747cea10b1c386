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
//   PAR_CLIENT_SECRET  client secret (omit for public clients)
//   PAR_AUTH           basic | post | none  (default: basic with a secret, none without)
//   PAR_REDIRECT_URI   redirect_uri
//   PAR_SCOPE          scope (optional)
//   PAR_EXTRA_PARAMS   urlencoded string merged into the request parameters;
//                      a name given here replaces the generated value(s)
//                      (e.g. "redirect_uri=https%3A%2F%2Fevil.example%2Fcb")
//   PAR_OMIT_PARAMS    comma-separated parameter names to leave out
//                      (e.g. "code_challenge,code_challenge_method")
//   PAR_TIMEOUT_MS     request timeout in milliseconds (default 10000)
//
// The functions that depend on the client library take it as `lib`, the
// module namespace of oauth4webapi or openid-client: both export
// ClientSecretBasic / ClientSecretPost / None and (openid-client re-exporting
// oauth4webapi's) ResponseBodyError / WWWAuthenticateChallengeError.

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

function clientAuthFor(lib, mode, secret) {
  switch (mode) {
    case 'basic':
      if (secret === undefined) throw new HarnessConfigError('PAR_AUTH=basic needs PAR_CLIENT_SECRET')
      return lib.ClientSecretBasic(secret)
    case 'post':
      if (secret === undefined) throw new HarnessConfigError('PAR_AUTH=post needs PAR_CLIENT_SECRET')
      return lib.ClientSecretPost(secret)
    case 'none':
      return lib.None()
    default:
      throw new HarnessConfigError(`PAR_AUTH must be basic, post or none, got ${JSON.stringify(mode)}`)
  }
}

// The PAR_* configuration, with `clientAuth` made by `lib` for PAR_AUTH.
function readConfig(lib) {
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
  const clientAuth = clientAuthFor(lib, authMode, clientSecret)
  return { issuer, clientId, clientSecret, clientAuth, redirectUri, scope, timeoutMs }
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
    output = { ok: true, ...(await main(readConfig(lib))) }
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
  process.stdout.write(JSON.stringify(output) + '\n')
}
