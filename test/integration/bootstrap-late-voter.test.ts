// A voter that is unreachable when the first leader is elected (in the e2e
// run: a WireGuard peer whose endpoint resolved seconds later). The bootstrap
// token is a baseline command every release decodes, so the leader proposes it
// without that voter's capabilities and the two voters commit it; the late
// voter then catches up, with no restart or second election. (It used to wait
// for the voter and then give up, and the cluster stayed unadministrable.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCluster } from '../helpers/cluster.js';
import { request } from '../helpers/http.js';
import { until } from '../helpers/wait.js';

describe('the bootstrap token with a voter that joins late', () => {
  let cluster: TestCluster;
  let leader: string;
  beforeAll(async () => {
    cluster = await TestCluster.start(3, {}, { heldBack: ['n3'] });
    leader = await cluster.waitForLeader();
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  it('works while a voter has never been heard from', async () => {
    const status = await until('the bootstrap token on the leader', async () => {
      const r = await request(cluster.member(leader).url, 'GET', '/v1/admin/cluster', { token: cluster.token });
      return r.status === 200 ? r.body : null;
    });
    expect(status.leader_id).toBe(leader);
  }, 20_000);

  it('works on every node once that voter starts, with the same leader', async () => {
    await cluster.startMember('n3');
    await cluster.waitForBootstrapToken(20_000);
    expect(await cluster.waitForLeader()).toBe(leader);
    const status = await until('the third voter in the cluster status', async () => {
      const r = await request(cluster.member(leader).url, 'GET', '/v1/admin/cluster', { token: cluster.token });
      return r.status === 200 && r.body.peers.some((p: { id: string }) => p.id === 'n3') ? r.body : null;
    });
    expect(status.leader_id).toBe(leader);
  }, 40_000);
});
