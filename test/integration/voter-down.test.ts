// A 3-node cluster with one voter down keeps taking writes across a leader
// change. The new leader has never heard that voter's capabilities (it hears
// them only from the voter itself), so before the baseline rule every write
// waited 3 s for it and was refused with 503 until the voter came back.
import { afterEach, describe, expect, it } from 'vitest';
import { TestCluster } from '../helpers/cluster.js';
import { client } from '../helpers/http.js';
import { until } from '../helpers/wait.js';

let cluster: TestCluster | undefined;
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});

describe('one voter down across a leader change', () => {
  it('takes secret, token and role writes; holds back later command versions until the voter returns', async () => {
    cluster = await TestCluster.start(3);
    const first = await cluster.waitForLeader();
    const [next, down] = cluster.members.filter((m) => m.id !== first);
    await cluster.stopMember(down!.id, 'SIGKILL');
    // Restarted, the next leader has never heard the voter that is down (it may have in the first election).
    await cluster.stopMember(next!.id);
    await cluster.startMember(next!.id);
    await until('leadership to move to the other follower', async () => {
      const r = await client(cluster!.member(first).url, cluster!.token).post('/v1/admin/cluster/transfer-leadership', { to: next!.id });
      return r.status === 200 && r.body.leader_id === next!.id ? r : null;
    });
    expect(await cluster.waitForLeader(15_000, [down!.id])).toBe(next!.id);

    const lead = client(next!.url, cluster.token);
    const follower = client(cluster.member(first).url, cluster.token);
    expect((await lead.put('/v1/secrets/down/a', { value: 'one' })).status).toBe(201);
    expect((await lead.put('/v1/secrets/down/a', { value: 'two' })).body).toMatchObject({ version: 2 });
    expect((await follower.put('/v1/secrets/down/b', { value: 'forwarded' })).status).toBe(201);
    expect((await lead.put('/v1/roles/down-reader', { rules: [{ paths: ['down/*'], actions: ['read_metadata'] }] })).status).toBe(201);
    const minted = await lead.post('/v1/tokens', { name: 'down-app', role: 'down-reader' });
    expect(minted.status).toBe(201);
    expect((await client(next!.url, minted.body.token).get('/v1/metadata/down/a')).status).toBe(200);
    expect((await lead.del('/v1/tokens/down-app')).status).toBe(204);
    expect((await lead.del('/v1/secrets/down/b')).status).toBe(204);
    expect((await client(next!.url, minted.body.token).get('/v1/metadata/down/a')).status).toBe(401);

    // Commands the first release lacked still wait for the voter to say it decodes them.
    const declare = await lead.del('/v1/admin/cluster/members');
    expect(declare.status).toBe(503);
    expect(declare.body.error.message).toContain(`voter ${down!.id} does not advertise cluster.declare@1`);
    const roleDeleted = await lead.del('/v1/roles/down-reader');
    expect(roleDeleted.status).toBe(503);
    expect(roleDeleted.body.error.message).toContain(`voter ${down!.id} does not advertise role.delete@2`);

    // Back: it catches up on what it missed, and the held-back command goes through.
    await cluster.startMember(down!.id);
    const back = client(down!.url, cluster.token);
    await until('the returning voter to catch up', async () => {
      const r = await back.get('/v1/secrets/down/a?consistency=stale');
      return r.status === 200 && r.body.value === 'two' ? r : null;
    });
    await until('the member list write once every voter is heard', async () => {
      const r = await lead.del('/v1/admin/cluster/members');
      return r.status === 200 ? r : null;
    });
    expect((await lead.del('/v1/roles/down-reader')).status).toBe(204);
  });
});
