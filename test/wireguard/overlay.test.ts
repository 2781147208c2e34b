// A real WireGuard overlay: three Coffer nodes, each in its own network
// namespace on an underlay bridge, each with `coffer wg-agent` driving Debian's
// userspace wireguard-go. Raft and management run on the overlay only; the
// test process reaches the API listeners (value reads, health) over the
// underlay and the management listeners from inside a node's namespace.
import net from 'node:net';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { request } from '../helpers/http.js';
import { Capture } from './harness/capture.js';
import {
  MGMT_PORT, OverlayCluster, RAFT_PORT, WG_PORT, waitFor, type OverlayNode,
} from './harness/overlay-cluster.js';
import { missingPrerequisites } from './harness/prereqs.js';

const missing = missingPrerequisites();
if (missing.length > 0) console.log(`[test:wireguard] SKIPPED: missing ${missing.join('; ')}`);

const VOTERS = ['n1', 'n2', 'n3'];

/** TCP connect from the test process; resolves 'refused', 'open' or the error code. */
function tcpProbe(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, timeout: 2_000 });
    s.once('connect', () => {
      s.destroy();
      resolve('open');
    });
    s.once('timeout', () => {
      s.destroy();
      resolve('timeout');
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED' ? 'refused' : e.code ?? e.message));
  });
}

describe.skipIf(missing.length > 0)('WireGuard overlay in network namespaces', () => {
  let c: OverlayCluster;
  const started = Date.now();
  const timings: Record<string, number> = {};
  const mark = (what: string, since: number) => (timings[what] = Date.now() - since);

  /** PUT through `via`'s namespace to `to`'s management listener on the overlay. */
  const put = (via: OverlayNode, to: OverlayNode, name: string, value: string, timeoutMs = 10_000) =>
    via.http.request(`${c.mgmtUrl(to)}/v1/secrets/${name}`, 'PUT', { token: c.token, body: { value }, timeoutMs });

  /** A value as this node has it locally (stale read over the underlay API). */
  const localValue = async (n: OverlayNode, name: string): Promise<unknown> =>
    (await request(c.apiUrl(n), 'GET', `/v1/secrets/${name}?consistency=stale`, { timeoutMs: 3_000 })).body?.value;

  beforeAll(async () => {
    const t0 = Date.now();
    c = await OverlayCluster.create();
    // A worker that exits without reaching afterAll still removes its namespaces;
    // one that is killed leaves them to the next run's global setup.
    process.once('exit', () => c.underlay.destroy());
    for (const i of [1, 2, 3]) await c.addNode(i);
    c.writePeers(VOTERS);
    const nodes = VOTERS.map((id) => c.node(id));
    await Promise.all(nodes.map((n) => c.startAgent(n)));
    await Promise.all(nodes.map((n) => c.waitAgentReady(n)));
    mark('agents ready', t0);
    await Promise.all(nodes.map((n) => c.startServer(n, VOTERS)));
    await c.waitForLeader(VOTERS);
    mark('cluster formed', t0);
  });

  // On a failure, the tail of every node's agent and server log says what the overlay did.
  afterEach((ctx) => {
    if (ctx.task.result?.state !== 'fail' || !c) return;
    for (const n of c.nodes) {
      for (const [what, p] of [['wg-agent', n.agent], ['server', n.server]] as const) {
        if (p) console.log(`--- ${n.id} ${what} (last 25 lines)\n${p.output().split('\n').slice(-25).join('\n')}`);
      }
    }
  });

  afterAll(async () => {
    const t0 = Date.now();
    await c?.stop();
    mark('teardown', t0);
    mark('total', started);
    console.log(`[test:wireguard] timings (ms): ${JSON.stringify(timings)}`);
  });

  it('each agent brings up its interface (overlay address, MTU 1420, peers) and reports it without any private key', async () => {
    for (const id of VOTERS) {
      const n = c.node(id);
      expect(await c.agentReady(n)).toEqual({ status: 200, body: { ready: true } });
      const [link] = JSON.parse(await c.underlay.exec(n.net, 'ip', ['-j', 'addr', 'show', 'dev', n.iface]));
      expect(link.mtu).toBe(1420);
      expect(link.flags).toContain('UP');
      expect(link.addr_info.filter((a: { family: string }) => a.family === 'inet').map((a: { local: string; prefixlen: number }) => `${a.local}/${a.prefixlen}`)).toEqual([`${n.overlayIp}/24`]);

      const others = VOTERS.filter((x) => x !== id).map((x) => c.node(x));
      expect((await c.wgShow(n, 'peers')).trim().split('\n').sort()).toEqual(others.map((o) => o.key.pub).sort());
      expect((await c.wgShow(n, 'allowed-ips')).trim().split('\n').sort()).toEqual(others.map((o) => `${o.key.pub}\t${o.overlayIp}/32`).sort());
      expect((await c.wgShow(n, 'persistent-keepalive')).trim().split('\n').map((l) => l.split('\t')[1])).toEqual(['25', '25']);
      expect((await c.wgShow(n, 'listen-port')).trim()).toBe(String(WG_PORT));

      // Raft traffic has flowed, so every peer has had a handshake.
      const status = await waitFor(`${id}: a handshake with every peer`, async () => {
        const s = await c.agentStatus(n);
        return s.peers.every((p) => p.latestHandshakeAgeSecs !== null) ? s : null;
      });
      expect(status).toMatchObject({ name: id, address: `${n.overlayIp}/24`, publicKey: n.key.pub, ready: true, reason: null, wireguardGo: { running: true, restarts: 0 } });
      expect(status.peers.map((p) => ({ name: p.name, endpoint: p.endpoint, resolved: p.resolvedEndpoint }))).toEqual(
        others.map((o) => ({ name: o.id, endpoint: `${c.endpointName(o)}:${WG_PORT}`, resolved: `${o.net.ip}:${WG_PORT}` })),
      );
      expect((await request(c.agentUrl(n), 'GET', '/health')).status).toBe(200);
    }
    // No private key in any agent's /status or log.
    for (const n of c.nodes) {
      const texts = [JSON.stringify(await c.agentStatus(n)), n.agent!.output()];
      for (const m of c.nodes) for (const t of texts) expect(t).not.toContain(m.key.priv);
    }
  });

  it('the cluster forms over overlay addresses only: Raft and management are unreachable on the underlay', async () => {
    const n1 = c.node('n1');
    const status = await n1.http.request(`${c.mgmtUrl(n1)}/v1/admin/cluster`, 'GET', { token: c.token });
    expect(status.status).toBe(200);
    expect(status.body.peers.map((p: { id: string; address: string }) => `${p.id}=${p.address}`).sort()).toEqual(
      VOTERS.map((id) => `${id}=10.77.0.${id.slice(1)}:${RAFT_PORT}`),
    );
    expect(status.body.leader_id).toMatch(/^n[123]$/);

    for (const id of VOTERS) {
      const n = c.node(id);
      // Listening sockets inside the namespace: Raft and management on the overlay address only.
      const listening = (await c.underlay.exec(n.net, 'ss', ['-Hltn'])).split('\n').map((l) => l.trim().split(/\s+/)[3]).filter(Boolean);
      expect(listening.filter((a) => a!.endsWith(`:${RAFT_PORT}`))).toEqual([`${n.overlayIp}:${RAFT_PORT}`]);
      expect(listening.filter((a) => a!.endsWith(`:${MGMT_PORT}`))).toEqual([`${n.overlayIp}:${MGMT_PORT}`]);
      // From the underlay (the test process): refused; the API answers, but has no management routes.
      expect(await tcpProbe(n.net.ip, RAFT_PORT)).toBe('refused');
      expect(await tcpProbe(n.net.ip, MGMT_PORT)).toBe('refused');
      expect((await request(c.apiUrl(n), 'GET', '/v1/admin/cluster', { token: c.token })).status).toBe(404);
      expect((await request(c.apiUrl(n), 'GET', '/v1/health')).status).toBe(200);
    }
    // From another node's namespace: the underlay address refuses Raft, the overlay address answers it.
    const n2 = c.node('n2');
    await expect(n1.http.request(`http://${n2.net.ip}:${RAFT_PORT}/`, 'GET', { timeoutMs: 3_000 })).rejects.toThrow('ECONNREFUSED');
    const overRaft = await n1.http.request(`http://${n2.overlayIp}:${RAFT_PORT}/`, 'GET', { timeoutMs: 3_000 });
    expect(overRaft.status).toBeGreaterThanOrEqual(400); // an HTTP answer from Raft's listener, through the tunnel
  });

  it('a capture on the underlay during writes sees only WireGuard UDP between the nodes, never TCP or HTTP', async () => {
    const u = c.underlay;
    const marker = `capture-marker-${Date.now()}`;
    const file = path.join(c.root, 'underlay.pcap');
    // Node-to-node packets only: the test's own API traffic to the nodes comes from the host address.
    const cap = await Capture.start(u.switchNs, 'br0', `ip and src net ${u.cidr} and dst net ${u.cidr} and not host ${u.hostIp}`, file);
    const nodes = VOTERS.map((id) => c.node(id));
    const t0 = Date.now();
    for (let i = 0; i < 30; i++) {
      const via = nodes[i % 3]!;
      const to = nodes[(i + 1) % 3]!; // always across the overlay
      const r = await put(via, to, `wg/capture/${i}`, `${marker}-${i}`);
      expect(r.status).toBeLessThan(300);
    }
    // Linearizable reads on followers go through the leader (ReadIndex) over Raft.
    for (const n of nodes) expect((await request(c.apiUrl(n), 'GET', '/v1/secrets/wg/capture/29')).body.value).toBe(`${marker}-29`);
    mark('30 writes over the overlay', t0);
    const { lines, raw } = await cap.stop();

    expect(lines.length).toBeGreaterThan(30);
    const esc = u.cidr.split('.').slice(0, 3).join('\\.');
    const wgUdp = new RegExp(`^IP ${esc}\\.\\d+\\.${WG_PORT} > ${esc}\\.\\d+\\.${WG_PORT}: UDP, length \\d+$`);
    const other = lines.filter((l) => !wgUdp.test(l));
    expect(other).toEqual([]);
    // Every node sent on the underlay during the writes: the traffic really crossed it.
    const senders = new Set(lines.map((l) => l.split(' ')[1]!.split('.').slice(0, 4).join('.')));
    expect([...senders].sort()).toEqual(nodes.map((n) => n.net.ip).sort());
    const bytes = raw.toString('latin1');
    for (const plain of [marker, 'HTTP/1.1', 'wg/capture', c.token]) expect(bytes).not.toContain(plain);
  });

  it('a node that moves to another underlay address is found again through its name by the other agents', async () => {
    const n1 = c.node('n1');
    const n2 = c.node('n2');
    const n3 = c.node('n3');
    const from = n2.net.ip;
    const t0 = Date.now();
    await c.underlay.moveNode(n2.net, 12);
    c.underlay.setName(c.endpointName(n2), n2.net.ip); // as DNS follows a rescheduled pod
    for (const n of [n1, n3]) {
      await waitFor(`${n.id}'s agent to re-resolve n2 to ${n2.net.ip}`, async () => {
        const p = (await c.agentStatus(n)).peers.find((x) => x.name === 'n2');
        return p?.resolvedEndpoint === `${n2.net.ip}:${WG_PORT}` && p.currentEndpoint === `${n2.net.ip}:${WG_PORT}`;
      }, 15_000);
      expect(n.agent!.output()).toMatch(new RegExp(`"from":"${from.replace(/\./g, '\\.')}:${WG_PORT}","to":"${n2.net.ip.replace(/\./g, '\\.')}:${WG_PORT}","msg":"endpoint moved"`));
      expect((await c.wgShow(n, 'endpoints')).split('\n').find((l) => l.startsWith(n2.key.pub))).toBe(`${n2.key.pub}\t${n2.net.ip}:${WG_PORT}`);
    }
    mark('re-resolve a moved node', t0);
    // The cluster still replicates to n2 at its new address. Until every side has
    // the new address the leader may have lost its quorum for a moment and answer
    // 503 no_leader, which a client retries.
    const moved = await waitFor('a write after the move', async () => {
      const r = await put(n1, n1, 'wg/moved', 'after-move');
      if (r.status === 503) return null;
      return r;
    }, 15_000, 200);
    expect(moved.status, moved.text).toBeLessThan(300);
    expect(await waitFor('n2 to apply a write made after it moved', async () => (await localValue(n2, 'wg/moved')) === 'after-move', 15_000)).toBe(true);
    expect(await c.agentReady(n2)).toEqual({ status: 200, body: { ready: true } });
  });

  it('a node with a wrong private key cannot join or read Raft', async () => {
    const t0 = Date.now();
    const n1 = c.node('n1');
    const good = VOTERS.map((id) => c.node(id));
    const leader = await c.waitForLeader(VOTERS);
    const termBefore = (await n1.http.request(`${c.mgmtUrl(n1)}/v1/admin/cluster`, 'GET', { token: c.token })).body.term;

    // Scale-up as the operator does it: n4's key pair goes into peers.json. Its pod, though, has another private key.
    const n4 = await c.addNode(4, { wrongKey: true });
    c.writePeers([...VOTERS, 'n4']);
    for (const n of good) {
      await waitFor(`${n.id}'s agent to add peer n4 from the changed peers.json`, async () => (await c.wgShow(n, 'peers')).includes(n4.key.pub), 10_000);
    }
    await c.startAgent(n4);
    const ready4 = await waitFor('n4\'s agent to apply its configuration and say why it is not ready', async () => {
      const r = await c.agentReady(n4);
      return r.status === 503 && /does not match the publicKey listed for n4/.test(r.body.reason ?? '') ? r : null;
    });
    expect(ready4.body.ready).toBe(false);
    const status4 = await c.agentStatus(n4);
    expect(status4).toMatchObject({ address: '10.77.0.4/24', wireguardGo: { running: true } });
    expect(status4.publicKey).not.toBe(n4.key.pub);
    // The interface is configured all the same, so it is WireGuard that keeps n4 out.
    expect((await c.underlay.exec(n4.net, 'ip', ['-o', '-4', 'addr', 'show', 'dev', n4.iface]))).toContain('10.77.0.4/24');

    // n4 believes it is a voter: it campaigns and dials the others' Raft listeners.
    await c.startServer(n4, [...VOTERS, 'n4']);
    const probes = good.flatMap((n) => [
      // Over the overlay, n4's packets go into a tunnel nobody accepts: silence, not a refusal.
      expect(n4.http.request(`http://${n.overlayIp}:${RAFT_PORT}/`, 'GET', { timeoutMs: 2_000 })).rejects.toThrow('client timeout'),
      expect(n4.http.request(`${c.mgmtUrl(n)}/v1/health`, 'GET', { timeoutMs: 2_000 })).rejects.toThrow('client timeout'),
      // And the underlay has no Raft to offer either.
      expect(n4.http.request(`http://${n.net.ip}:${RAFT_PORT}/`, 'GET', { timeoutMs: 2_000 })).rejects.toThrow('ECONNREFUSED'),
    ]);
    await Promise.all([...probes, new Promise((r) => setTimeout(r, 3_000))]); // meanwhile n4 campaigns through many election timeouts

    // n4 never heard from a leader and holds no data.
    const h4 = await c.health(n4);
    expect(h4?.leader_id ?? null).toBeNull();
    const read = await request(c.apiUrl(n4), 'GET', '/v1/secrets/wg/capture/0?consistency=stale');
    expect(read.status).toBe(404);
    // The others never heard from n4: no handshake, nothing received, same leader and term, n4 not a member.
    for (const n of good) {
      const p = (await c.agentStatus(n)).peers.find((x) => x.name === 'n4');
      expect(p).toMatchObject({ latestHandshakeAgeSecs: null });
    }
    for (const p of (await c.agentStatus(n4)).peers) expect(p.latestHandshakeAgeSecs).toBeNull();
    const after = (await n1.http.request(`${c.mgmtUrl(n1)}/v1/admin/cluster`, 'GET', { token: c.token })).body;
    expect(after.leader_id).toBe(leader);
    expect(after.term).toBe(termBefore);
    expect(after.peers.map((p: { id: string }) => p.id).sort()).toEqual(VOTERS);
    // The cluster keeps working meanwhile.
    expect((await put(n1, n1, 'wg/with-intruder', 'fine')).status).toBeLessThan(300);

    // SIGTERM stops the agent cleanly: exit 0, wireguard-go and its interface gone.
    await n4.server!.stop('SIGKILL');
    expect(await n4.agent!.stop('SIGTERM')).toBe(0);
    await expect(c.underlay.exec(n4.net, 'ip', ['link', 'show', 'dev', n4.iface])).rejects.toThrow(/does not exist/);
    await expect(c.wgShow(n4, 'peers')).rejects.toThrow();
    // Scale back down: the agents remove the peer that is no longer listed.
    c.writePeers(VOTERS);
    for (const n of good) {
      await waitFor(`${n.id}'s agent to remove peer n4`, async () => !(await c.wgShow(n, 'peers')).includes(n4.key.pub), 10_000);
    }
    mark('wrong-key node', t0);
  });

  it('SIGKILL of the leader\'s wireguard-go under a write load: the agent restarts it and no acknowledged write is lost', async () => {
    const nodes = VOTERS.map((id) => c.node(id));
    const leaderId = await c.waitForLeader(VOTERS);
    const leader = c.node(leaderId);
    const before = await c.agentStatus(leader);
    expect(before.wireguardGo.running).toBe(true);

    // Three writers, one per namespace, each writing to its own node's management listener.
    const acked: { name: string; value: string; at: number }[] = [];
    let failures = 0;
    let stop = false;
    const writers = nodes.map(async (n) => {
      for (let i = 0; !stop; i++) {
        const name = `wg/load/${n.id}/${i}`;
        const value = `${n.id}-${i}`;
        try {
          const r = await put(n, n, name, value, 8_000);
          if (r.status === 200 || r.status === 201) acked.push({ name, value, at: Date.now() });
          else failures++;
        } catch {
          failures++; // timed out or refused: not acknowledged, so not counted
        }
        if (!stop) await new Promise((r) => setTimeout(r, 20));
      }
    });

    await new Promise((r) => setTimeout(r, 1_500));
    const killedAt = Date.now();
    const ackedBeforeKill = acked.length;
    process.kill(before.wireguardGo.pid!, 'SIGKILL');
    const restarted = await waitFor('the agent to restart wireguard-go and be ready again', async () => {
      const s = await c.agentStatus(leader);
      return s.ready && s.wireguardGo.restarts >= 1 && s.wireguardGo.pid !== before.wireguardGo.pid ? s : null;
    }, 30_000, 50);
    mark('wireguard-go killed -> agent ready again', killedAt);
    await c.waitForLeader(VOTERS, 30_000);
    mark('wireguard-go killed -> one leader again', killedAt);
    const recoveredAt = Date.now();
    // Every writer (the restarted node's own included) gets writes acknowledged again.
    await waitFor('writes acknowledged through every node after recovery', async () =>
      nodes.every((n) => acked.filter((a) => a.at > recoveredAt && a.value.startsWith(`${n.id}-`)).length >= 5), 30_000);
    stop = true;
    await Promise.all(writers);

    expect(restarted.wireguardGo.restarts).toBe(1);
    expect(ackedBeforeKill).toBeGreaterThan(0);
    expect(leader.agent!.output()).toMatch(/wireguard-go killed by SIGKILL/);
    // Every acknowledged write is on every node (each node's own copy: stale reads).
    const expected = acked.map((a) => a.value);
    for (const n of nodes) {
      let values: unknown[] = [];
      await waitFor(`${n.id} to hold every acknowledged write`, async () => {
        values = await Promise.all(acked.map((a) => localValue(n, a.name)));
        return values.every((v, i) => v === expected[i]);
      }, 15_000, 250).catch(() => undefined);
      expect(values).toEqual(expected);
    }
    console.log(`[test:wireguard] load: ${acked.length} writes acknowledged (${ackedBeforeKill} before the kill), ${failures} not acknowledged`);
  });
});
