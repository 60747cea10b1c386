// Drives par-server's management and backend APIs with Authlete's TypeScript
// SDK (@authlete/typescript-sdk), unchanged but for its serverURL, and prints
// ONE line of JSON: {"ok":true,"operations":{...}} once every operation has run,
// each operation as {"ok":true,"result":<the SDK's parsed answer>} or
// {"ok":false,"error":"<name>","message":"...","status":<HTTP status>|null,
// ("message" is the SDK's pretty() for a ResponseValidationError: the fields
// its schema rejected)
// "body":"<answer body>"|null}; exit 0. Some operations are meant to fail
// (a push with a replaced secret, a get of the deleted client or service). A failure
// outside the SDK calls prints {"ok":false,"operations":{...},"error":"..."}, exit 1.
//
// Configuration (environment variables):
//   PAR_BASE_URL       par-server's base URL, e.g. http://127.0.0.1:8080
//                      (the SDK's serverURL; its paths start with /api)
//   PAR_ADMIN_TOKEN    the admin token: service create, list and delete
//   PAR_REDIRECT_URI   the redirect URI registered for the client and pushed
//
// The service is created here with the admin token; its service access token
// (the answer's serviceAccessToken, which the SDK's Service model drops) is
// issued with the admin token over plain fetch, as Authlete issues it in its
// console. Every other call goes through the SDK with that service token.
import { createHash, randomBytes } from 'node:crypto'

import { Authlete } from '@authlete/typescript-sdk'

const baseUrl = process.env.PAR_BASE_URL
const adminToken = process.env.PAR_ADMIN_TOKEN
const redirectUri = process.env.PAR_REDIRECT_URI

const operations = {}

async function step(name, call) {
  try {
    const result = await call()
    operations[name] = { ok: true, result: result ?? null }
    return result
  } catch (err) {
    operations[name] = {
      ok: false,
      error: err?.name ?? 'Error',
      // ResponseValidationError: which fields of the answer the SDK's schema rejected
      message: typeof err?.pretty === 'function' ? err.pretty() : String(err?.message ?? err),
      status: err?.statusCode ?? err?.rawResponse?.status ?? null,
      body: err?.body ?? null,
    }
    return undefined
  }
}

async function serviceToken(serviceId) {
  const response = await fetch(`${baseUrl}/api/${serviceId}/service/token/create`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
    body: '{}',
  })
  if (response.status !== 200) throw new Error(`token create: ${response.status} ${await response.text()}`)
  return (await response.json()).accessToken
}

async function main() {
  const admin = new Authlete({ bearer: adminToken, serverURL: baseUrl })
  const created = await step('service.create', () =>
    admin.service.create({
      serviceName: 'typescript sdk service',
      supportedScopes: [{ name: 'openid' }, { name: 'profile' }],
    }),
  )
  await step('service.list', () => admin.service.list({}))
  if (created?.apiKey === undefined) return
  const serviceId = String(created.apiKey)
  const authlete = new Authlete({ bearer: await serviceToken(serviceId), serverURL: baseUrl })

  await step('service.get', () => authlete.service.get({ serviceId }))
  await step('service.update', () =>
    authlete.service.update({ serviceId, service: { serviceName: 'renamed typescript sdk service' } }),
  )
  const client = await step('client.create', () =>
    authlete.client.create({
      serviceId,
      client: {
        clientName: 'typescript sdk client',
        redirectUris: [redirectUri],
        clientType: 'CONFIDENTIAL',
        tokenAuthMethod: 'CLIENT_SECRET_BASIC',
        responseTypes: ['CODE'],
        grantTypes: ['AUTHORIZATION_CODE'],
      },
    }),
  )
  if (client?.clientId === undefined) return
  const clientId = String(client.clientId)
  await step('client.get', () => authlete.client.get({ serviceId, clientId }))
  await step('client.list', () => authlete.client.list({ serviceId }))
  await step('client.update', () =>
    authlete.client.update({ serviceId, clientId, client: { clientName: 'renamed typescript sdk client' } }),
  )
  const refreshed = await step('client.management.refreshSecret', () =>
    authlete.client.management.refreshSecret({ serviceId, clientIdentifier: clientId }),
  )
  const ownSecret = 'typescript-sdk-own-secret-0123456789abcdef'
  await step('client.management.updateSecret', () =>
    authlete.client.management.updateSecret({
      serviceId,
      clientIdentifier: clientId,
      clientSecretUpdateRequest: { clientSecret: ownSecret },
    }),
  )
  const parameters = new URLSearchParams({
    response_type: 'code',
    client_id: clientId,
    redirect_uri: redirectUri,
    scope: 'openid',
    state: 'typescript-sdk-state',
    code_challenge: createHash('sha256').update(randomBytes(32).toString('base64url')).digest('base64url'),
    code_challenge_method: 'S256',
  }).toString()
  await step('pushedAuthorization.create', () =>
    authlete.pushedAuthorization.create({
      serviceId,
      pushedAuthorizationRequest: { parameters, clientId, clientSecret: ownSecret },
    }),
  )
  // The refreshed secret was replaced by updateSecret: a push with it fails.
  await step('pushedAuthorization.create.oldSecret', () =>
    authlete.pushedAuthorization.create({
      serviceId,
      pushedAuthorizationRequest: { parameters, clientId, clientSecret: refreshed?.newClientSecret ?? '' },
    }),
  )
  await step('client.delete', () => authlete.client.delete({ serviceId, clientId }))
  await step('client.get.deleted', () => authlete.client.get({ serviceId, clientId }))
  await step('service.delete', () => admin.service.delete({ serviceId }))
  await step('service.get.deleted', () => admin.service.get({ serviceId }))
}

try {
  await main()
  process.stdout.write(JSON.stringify({ ok: true, operations }) + '\n')
} catch (err) {
  process.stdout.write(JSON.stringify({ ok: false, operations, error: String(err?.message ?? err) }) + '\n')
  process.exitCode = 1
}
