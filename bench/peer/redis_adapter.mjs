// A Redis adapter for node-oidc-provider, modelled on the package's example Redis adapter so the peer
// stores pushed requests the way a deployment following that example would: a model instance is one
// JSON string under "<prefix><Model>:<id>", written by one MULTI of SET and EXPIRE whose reply is
// awaited, so the provider answers 201 only after Redis has acknowledged the pushed request.
//
// Only what PAR exercises is needed here (upsert, find, consume, destroy of PushedAuthorizationRequest);
// the uid and user-code lookups and grant revocation are kept small but working, so nothing else the
// provider might call fails silently.
import Redis from 'ioredis';

// Resolves once Redis answers, so a peer without its Redis fails at start-up rather than under load.
export async function redisAdapter(url, prefix = 'oidc-peer:') {
  const redis = new Redis(url, { keyPrefix: prefix, maxRetriesPerRequest: 1 });
  await redis.ping();

  // Run a MULTI and surface the first per-command error (exec() only rejects when the MULTI aborts).
  async function commit(multi) {
    for (const [err] of await multi.exec()) {
      if (err) throw err;
    }
  }

  // Models issued under a grant, listed per grant so revokeByGrantId can delete them.
  const issuedUnderGrant = new Set([
    'AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest',
  ]);

  return class RedisAdapter {
    constructor(model) {
      this.model = model;
    }

    key(id) {
      return `${this.model}:${id}`;
    }

    async upsert(id, payload, expiresIn) {
      const key = this.key(id);
      const multi = redis.multi().set(key, JSON.stringify(payload));
      if (expiresIn) multi.expire(key, expiresIn);
      // Secondary indexes point back at the id and live as long as the record.
      for (const [index, value] of [['uid', payload.uid], ['userCode', payload.userCode]]) {
        if (!value) continue;
        multi.set(`${index}:${value}`, id);
        if (expiresIn) multi.expire(`${index}:${value}`, expiresIn);
      }
      if (payload.grantId && issuedUnderGrant.has(this.model)) {
        const grantKey = `grant:${payload.grantId}`;
        multi.rpush(grantKey, key);
        // The list must outlive its longest-lived member; the expiry only ever grows.
        if (expiresIn) multi.expire(grantKey, expiresIn, 'GT').expire(grantKey, expiresIn, 'NX');
      }
      await commit(multi);
    }

    async find(id) {
      if (!id) return undefined;
      const stored = await redis.get(this.key(id));
      return stored ? JSON.parse(stored) : undefined;
    }

    async findByUid(uid) {
      return this.find(await redis.get(`uid:${uid}`));
    }

    async findByUserCode(userCode) {
      return this.find(await redis.get(`userCode:${userCode}`));
    }

    // Marks the record consumed in place, keeping its expiry. A read-modify-write: two concurrent
    // consumers of one record both succeed, which a benchmark of pushes never exercises.
    async consume(id) {
      const payload = await this.find(id);
      if (!payload) return;
      payload.consumed = Math.floor(Date.now() / 1000);
      await redis.set(this.key(id), JSON.stringify(payload), 'KEEPTTL');
    }

    async destroy(id) {
      await redis.del(this.key(id));
    }

    async revokeByGrantId(grantId) {
      const grantKey = `grant:${grantId}`;
      // The list holds keys without the prefix (ioredis prefixes key arguments, not values).
      const keys = await redis.lrange(grantKey, 0, -1);
      await commit(redis.multi().del(...keys, grantKey));
    }
  };
}
