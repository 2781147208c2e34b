// A token minted through the leader is used at once on a follower, as a
// client behind a Service that spreads requests over the pods would: the
// follower may not have applied the token yet. It must not answer 401; a
// token that really does not exist still gets 401, and a revoked one too.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCluster } from '../helpers/cluster.js';
import { client } from '../helpers/http.js';
import { randomToken } from '../helpers/node.js';

const ROUNDS = 25;

describe('a freshly minted token on a follower', () => {
  let cluster: TestCluster;
  beforeAll(async () => {
    cluster = await TestCluster.start(3);
    await cluster.waitForBootstrapToken();
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  it(`is accepted by every follower right after the mint returns (${ROUNDS} rounds)`, async () => {
    const lead = await cluster.waitForLeader();
    const admin = client(cluster.member(lead).url, cluster.token);
    expect((await admin.put('/v1/roles/lister', { rules: [{ paths: ['*'], actions: ['list'] }] })).status).toBe(201);
    const followers = cluster.members.filter((m) => m.id !== lead);
    const statuses: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const minted = await admin.post('/v1/tokens', { name: `fresh-${i}`, role: 'lister' });
      expect(minted.status).toBe(201);
      const answers = await Promise.all(followers.map((f) => client(f.url, minted.body.token).get('/v1/metadata?prefix=')));
      statuses.push(...answers.map((a) => a.status));
    }
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
  }, 120_000);

  it('still refuses a token nobody minted, and a revoked one, with 401', async () => {
    const lead = await cluster.waitForLeader();
    const admin = client(cluster.member(lead).url, cluster.token);
    const follower = cluster.members.find((m) => m.id !== lead)!;
    expect((await client(follower.url, randomToken()).get('/v1/metadata?prefix=')).status).toBe(401);
    const minted = await admin.post('/v1/tokens', { name: 'soon-revoked', role: 'lister' });
    expect((await admin.del('/v1/tokens/soon-revoked')).status).toBe(204);
    // Revocation is applied on the follower within a heartbeat; it never turns into a 200 after that.
    await new Promise((r) => setTimeout(r, 500));
    expect((await client(follower.url, minted.body.token).get('/v1/metadata?prefix=')).status).toBe(401);
  });
});
