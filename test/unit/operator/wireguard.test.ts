import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import type { V1Container, V1Secret } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { parseCidr } from '../../../common/ipv4.js';
import { overlayAddress, overlayCidrProblem } from '../../../operator/api/overlay.js';
import { buildManifests } from '../../../operator/manifests/index.js';
import {
  GENERATIONS_ANNOTATION, GENERATION_ANNOTATION, generateKeyPair, generatePrivateKey, isWireguardKey, keySecretFor,
  peersConfigMap, publicKeyOf, readKeySecret, scaleKeys, wireguardPodExtension,
  type PeersDocument,
} from '../../../operator/wireguard/index.js';
import { cluster } from './fixtures.js';

const KEY = /^[A-Za-z0-9+/]{43}=$/;

describe('WireGuard keys', () => {
  it('are 44-character standard base64 of 32 bytes, clamped like wg genkey, distinct', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const { privateKey, publicKey } = generateKeyPair();
      for (const k of [privateKey, publicKey]) {
        expect(k).toMatch(KEY);
        expect(k).toHaveLength(44);
        expect(Buffer.from(k, 'base64')).toHaveLength(32);
        expect(isWireguardKey(k)).toBe(true);
      }
      const raw = Buffer.from(privateKey, 'base64');
      expect(raw[0]! & 7).toBe(0);
      expect(raw[31]! & 0xc0).toBe(0x40);
      seen.add(privateKey);
      seen.add(publicKey);
    }
    expect(seen.size).toBe(40);
  });

  it('derive the public key from the private one (node:crypto X25519, RFC 7748 vector)', () => {
    const pair = generateKeyPair();
    expect(publicKeyOf(pair.privateKey)).toBe(pair.publicKey);
    // RFC 7748 §6.1, Alice.
    const alicePriv = Buffer.from('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a', 'hex').toString('base64');
    const alicePub = Buffer.from('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a', 'hex').toString('base64');
    expect(publicKeyOf(alicePriv)).toBe(alicePub);
    // The same as node:crypto's own public key for a node-generated pair.
    const { privateKey } = generateKeyPairSync('x25519');
    const raw = privateKey.export({ format: 'jwk' }).d!;
    const text = Buffer.from(raw, 'base64url').toString('base64');
    const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
    expect(publicKeyOf(text)).toBe(spki.subarray(spki.length - 32).toString('base64'));
  });

  it('refuse what is not a key, without echoing it', () => {
    for (const bad of ['', 'abc', 'A'.repeat(44), `${'A'.repeat(43)}=\n`, Buffer.alloc(31).toString('base64'), 42]) {
      expect(isWireguardKey(bad)).toBe(false);
    }
    const secretish = 'not-a-key-but-maybe-sensitive';
    expect(() => publicKeyOf(secretish)).toThrow(/not a WireGuard private key/);
    try {
      publicKeyOf(secretish);
    } catch (err) {
      expect(String(err)).not.toContain(secretish);
    }
  });
});

describe('overlay addresses', () => {
  it('gives ordinal i the network address + i + 1', () => {
    expect(overlayAddress('10.77.0.0/24', 0)).toBe('10.77.0.1');
    expect(overlayAddress('10.77.0.0/24', 6)).toBe('10.77.0.7');
    expect(overlayAddress('192.168.255.248/29', 5)).toBe('192.168.255.254');
    expect(overlayAddress('10.0.0.0/8', 300)).toBe('10.0.1.45');
    expect(parseCidr('10.77.1.9/16')).toEqual({ text: '10.77.1.9/16', address: 0x0a4d0109, prefix: 16, network: 0x0a4d0000 });
  });

  it('checks the range holds every replica plus network and broadcast', () => {
    expect(overlayCidrProblem('10.77.0.0/24', 7)).toBeUndefined();
    expect(overlayCidrProblem('10.77.0.0/29', 6)).toBeUndefined();
    expect(overlayCidrProblem('10.77.0.0/29', 7)).toMatch(/room for 6 pod addresses .* replicas is 7; use a \/28 or larger/);
    expect(overlayCidrProblem('10.77.0.0/30', 3)).toMatch(/room for 2 pod addresses/);
    expect(overlayCidrProblem('10.77.0.0/31', 1)).toMatch(/room for 0 pod addresses/);
    expect(overlayCidrProblem('10.77.0.4/30', 1)).toBeUndefined();
    expect(overlayCidrProblem('10.77.0.5/30', 1)).toMatch(/not a network address/);
    expect(overlayCidrProblem('0.0.0.0/0', 3)).toMatch(/every IPv4 address/);
  });
});

const fixed = (() => {
  // Deterministic but valid private keys for tests: k1, k2, … (each a real key).
  const keys = Array.from({ length: 16 }, () => generatePrivateKey());
  return () => {
    let i = 0;
    return () => keys[i++ % keys.length]!;
  };
})();

function secretWith(keys: Record<string, string>, annotations: Record<string, string> = {}): V1Secret {
  return {
    apiVersion: 'v1', kind: 'Secret',
    metadata: { name: 'vault-wireguard-keys', namespace: 'secrets', resourceVersion: '7', annotations },
    data: Object.fromEntries(Object.entries(keys).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
  };
}

describe('WireGuard key Secret', () => {
  const vc = cluster({ wireguard: { enabled: true } });

  it('a new Secret: one key per pod, Opaque, owned, generation annotations', () => {
    const scaled = scaleKeys(readKeySecret(null), 'vault', 3, 1, fixed());
    expect(scaled.added).toEqual(['vault-0', 'vault-1', 'vault-2']);
    const { secret, changed } = keySecretFor(vc, null, scaled.entries, 1);
    expect(changed).toBe(true);
    expect(secret.type).toBe('Opaque');
    expect(secret.immutable).toBeUndefined();
    expect(secret.metadata).toMatchObject({
      name: 'vault-wireguard-keys', namespace: 'secrets',
      labels: { 'app.kubernetes.io/managed-by': 'coffer-operator', 'app.kubernetes.io/instance': 'vault', 'app.kubernetes.io/component': 'wireguard-keys' },
      annotations: { [GENERATION_ANNOTATION]: '1', [GENERATIONS_ANNOTATION]: '{"vault-0":1,"vault-1":1,"vault-2":1}' },
    });
    expect(secret.metadata?.ownerReferences).toEqual([expect.objectContaining({ kind: 'VaultCluster', name: 'vault', controller: true })]);
    expect(Object.keys(secret.data ?? {})).toEqual(['vault-0.key', 'vault-1.key', 'vault-2.key']);
    const texts = Object.values(secret.data ?? {}).map((v) => Buffer.from(v, 'base64').toString('utf8'));
    for (const t of texts) expect(t).toMatch(KEY);
    expect(new Set(texts).size).toBe(3);
  });

  it('scaling keeps existing keys, adds keys for new ordinals and drops removed ones', () => {
    const [a, b, c] = [generatePrivateKey(), generatePrivateKey(), generatePrivateKey()];
    const existing = secretWith({ 'vault-0.key': a, 'vault-1.key': b, 'vault-2.key': c }, { [GENERATION_ANNOTATION]: '2', [GENERATIONS_ANNOTATION]: '{"vault-0":2,"vault-1":2,"vault-2":2}' });
    const state = readKeySecret(existing);
    expect(state.recorded).toBe(2);
    const up = scaleKeys(state, 'vault', 5, 2);
    expect(up.entries.slice(0, 3).map((e) => e.privateKey)).toEqual([a, b, c]);
    expect(up.added).toEqual(['vault-3', 'vault-4']);
    expect(up.entries[3]!.generation).toBe(2);
    const upSecret = keySecretFor(vc, existing, up.entries, 2);
    expect(upSecret.changed).toBe(true);
    expect(upSecret.secret.metadata?.resourceVersion).toBe('7');
    expect(Object.keys(upSecret.secret.data ?? {})).toHaveLength(5);

    const down = scaleKeys(readKeySecret(upSecret.secret), 'vault', 1, 2);
    expect(down.entries.map((e) => e.privateKey)).toEqual([a]);
    expect(down.removed).toEqual(['vault-1', 'vault-2', 'vault-3', 'vault-4']);
    expect(Object.keys(keySecretFor(vc, upSecret.secret, down.entries, 2).secret.data ?? {})).toEqual(['vault-0.key']);

    // Nothing to do: unchanged.
    const same = scaleKeys(state, 'vault', 3, 2, () => { throw new Error('must not generate'); });
    expect(keySecretFor(vc, existing, same.entries, 2).changed).toBe(false);
  });

  it('replaces a stored value that is not a key, and reads per-key generations', () => {
    const good = generatePrivateKey();
    const state = readKeySecret(secretWith(
      { 'vault-0.key': good, 'vault-1.key': 'garbage', 'other': 'x' },
      { [GENERATION_ANNOTATION]: '3', [GENERATIONS_ANNOTATION]: '{"vault-0":4}' },
    ));
    expect(state.malformed).toEqual(['vault-1']);
    expect(state.keys.get('vault-0')).toEqual({ privateKey: good, generation: 4 });
    const scaled = scaleKeys(state, 'vault', 2, 3);
    expect(scaled.regenerated).toEqual(['vault-1']);
    expect(scaled.added).toEqual([]);
    expect(isWireguardKey(scaled.entries[1]!.privateKey)).toBe(true);
    // Without annotations every key is generation 1.
    const bare = readKeySecret(secretWith({ 'vault-0.key': good }));
    expect(bare.recorded).toBeUndefined();
    expect(bare.keys.get('vault-0')?.generation).toBe(1);
  });
});

describe('WireGuard peer ConfigMap', () => {
  it('lists every pod with its public key, overlay address and endpoint', () => {
    const vc = cluster({ replicas: 3, wireguard: { enabled: true, port: 51_999, cidr: '10.99.0.0/28' } });
    const pairs = [generateKeyPair(), generateKeyPair(), generateKeyPair()];
    const cm = peersConfigMap(vc, pairs.map((p) => p.privateKey));
    expect(cm.metadata).toMatchObject({
      name: 'vault-wireguard-peers', namespace: 'secrets',
      labels: { 'app.kubernetes.io/managed-by': 'coffer-operator', 'app.kubernetes.io/component': 'wireguard-peers' },
    });
    expect(cm.metadata?.ownerReferences).toHaveLength(1);
    expect(Object.keys(cm.data ?? {})).toEqual(['peers.json']);
    const doc = JSON.parse(cm.data!['peers.json']!) as PeersDocument;
    expect(doc).toEqual({
      version: 1, listenPort: 51_999, cidr: '10.99.0.0/28',
      peers: pairs.map((p, i) => ({
        name: `vault-${i}`, publicKey: p.publicKey, address: `10.99.0.${i + 1}`, endpoint: `vault-${i}.vault-headless.secrets.svc:51999`,
      })),
    });
    // Public keys only.
    for (const p of pairs) expect(cm.data!['peers.json']).not.toContain(p.privateKey);
    const full = JSON.parse(peersConfigMap(vc, pairs.map((p) => p.privateKey), 'cluster.local').data!['peers.json']!) as PeersDocument;
    expect(full.peers[2]!.endpoint).toBe('vault-2.vault-headless.secrets.svc.cluster.local:51999');
  });
});

describe('WireGuard sidecar and vault env', () => {
  const vc = cluster({ replicas: 3, wireguard: { enabled: true } });
  const ext = wireguardPodExtension(vc, { image: 'registry.example/coffer:1.0.1' })!;
  const m = buildManifests(vc, { rewrapEnabled: false, image: 'registry.example/coffer:1.0.1', podExtensions: [ext] });
  const pod = m.statefulSet.spec!.template.spec!;
  const sidecar = pod.initContainers?.[0] as V1Container;
  const vault = pod.containers[0]!;
  const env = new Map((vault.env ?? []).map((e) => [e.name, e]));

  it('is nothing when the overlay is off', () => {
    expect(wireguardPodExtension(cluster(), { image: 'x' })).toBeUndefined();
  });

  it('is a native sidecar running coffer wg-agent from the vault image', () => {
    expect(pod.initContainers?.map((c) => c.name)).toEqual(['wireguard']);
    expect(pod.containers.map((c) => c.name)).toEqual(['vault']);
    expect(sidecar).toMatchObject({
      name: 'wireguard', image: 'registry.example/coffer:1.0.1', imagePullPolicy: 'IfNotPresent', args: ['wg-agent'], restartPolicy: 'Always',
    });
    expect(sidecar.image).toBe(vault.image);
    expect(sidecar.command).toBeUndefined();
    expect(sidecar.env).toEqual([{ name: 'COFFER_WG_NAME', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } } }]);
    expect(sidecar.ports).toEqual([
      { containerPort: 51_820, name: 'wireguard', protocol: 'UDP' },
      { containerPort: 8203, name: 'wg-agent', protocol: 'TCP' },
    ]);
    expect(sidecar.resources?.limits?.memory).toBeDefined();
  });

  it('has NET_ADMIN only, as root, never privileged', () => {
    expect(sidecar.securityContext).toEqual({
      runAsUser: 0, runAsNonRoot: false, privileged: false, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'], add: ['NET_ADMIN'] }, seccompProfile: { type: 'RuntimeDefault' },
    });
    // The vault container keeps its own restrictive context; nothing else in the pod is privileged.
    expect(vault.securityContext).toMatchObject({ runAsNonRoot: true, privileged: false, capabilities: { drop: ['ALL'] } });
    expect(JSON.stringify(m.statefulSet)).not.toContain('"privileged":true');
    expect(pod.hostNetwork).toBe(false);
  });

  it('mounts the keys and peers whole, /dev/net/tun as a CharDevice, and emptyDirs, in the sidecar only', () => {
    expect(pod.volumes).toEqual(expect.arrayContaining([
      { name: 'wireguard-keys', secret: { secretName: 'vault-wireguard-keys', defaultMode: 0o400, optional: false } },
      { name: 'wireguard-peers', configMap: { name: 'vault-wireguard-peers', defaultMode: 0o444, optional: false } },
      { name: 'wireguard-tun', hostPath: { path: '/dev/net/tun', type: 'CharDevice' } },
      { name: 'wireguard-run', emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } },
      { name: 'wireguard-tmp', emptyDir: { sizeLimit: '16Mi' } },
    ]));
    expect(pod.volumes?.filter((v) => v.hostPath)).toHaveLength(1);
    expect(sidecar.volumeMounts).toEqual([
      { name: 'wireguard-keys', mountPath: '/etc/coffer/wireguard/keys', readOnly: true },
      { name: 'wireguard-peers', mountPath: '/etc/coffer/wireguard/peers', readOnly: true },
      { name: 'wireguard-tun', mountPath: '/dev/net/tun' },
      { name: 'wireguard-run', mountPath: '/var/run/wireguard' },
      { name: 'wireguard-tmp', mountPath: '/tmp' },
    ]);
    for (const mnt of sidecar.volumeMounts ?? []) expect(mnt.subPath).toBeUndefined();
    expect(vault.volumeMounts?.map((v) => v.name)).toEqual(['data', 'tmp', 'members']);
  });

  it('probes the agent: startup on /ready, liveness on /health, port 8203; pod readiness is left to the vault container', () => {
    expect(sidecar.startupProbe?.httpGet).toEqual({ path: '/ready', port: 'wg-agent', scheme: 'HTTP' });
    expect(sidecar.readinessProbe).toBeUndefined();
    expect(sidecar.livenessProbe?.httpGet).toEqual({ path: '/health', port: 'wg-agent', scheme: 'HTTP' });
    expect((sidecar.startupProbe?.periodSeconds ?? 0) * (sidecar.startupProbe?.failureThreshold ?? 0)).toBeGreaterThanOrEqual(120);
  });

  it('points VAULT_PEERS at the overlay, sets VAULT_OVERLAY_CIDR, and leaves the advertise address to the server', () => {
    expect(env.get('VAULT_PEERS')?.value).toBe('vault-0=10.77.0.1:8201,vault-1=10.77.0.2:8201,vault-2=10.77.0.3:8201');
    expect(env.get('VAULT_OVERLAY_CIDR')?.value).toBe('10.77.0.0/24');
    expect(env.has('VAULT_RAFT_ADDR')).toBe(false);
    expect(env.has('VAULT_RAFT_ADVERTISE')).toBe(false);
    expect(env.has('VAULT_MGMT_ADDR')).toBe(false);
    const names = (vault.env ?? []).map((e) => e.name);
    expect(new Set(names).size).toBe(names.length);
    expect(names.indexOf('VAULT_PEERS')).toBe(2); // replaced in place
    const mgmt = buildManifests(cluster({ wireguard: { enabled: true, managementOnOverlay: true, cidr: '10.1.2.0/29' }, replicas: 5 }), {
      rewrapEnabled: false,
      podExtensions: [wireguardPodExtension(cluster({ wireguard: { enabled: true, managementOnOverlay: true, cidr: '10.1.2.0/29' }, replicas: 5 }), { image: 'x' })!],
    });
    const mEnv = new Map((mgmt.statefulSet.spec!.template.spec!.containers[0]!.env ?? []).map((e) => [e.name, e.value]));
    expect(mEnv.get('VAULT_MGMT_ADDR')).toBe('overlay:8202');
    expect(mEnv.get('VAULT_PEERS')).toBe('vault-0=10.1.2.1:8201,vault-1=10.1.2.2:8201,vault-2=10.1.2.3:8201,vault-3=10.1.2.4:8201,vault-4=10.1.2.5:8201');
  });

  it('falls back to a plain second container where native sidecars are not supported', () => {
    const x = wireguardPodExtension(vc, { image: 'img', nativeSidecar: false })!;
    expect(x.initContainers).toBeUndefined();
    expect(x.containers?.map((c) => c.name)).toEqual(['wireguard']);
    expect(x.containers?.[0]?.restartPolicy).toBeUndefined();
    const b = buildManifests(vc, { rewrapEnabled: false, podExtensions: [x] });
    expect(b.statefulSet.spec!.template.spec!.containers.map((c) => c.name)).toEqual(['vault', 'wireguard']);
  });

  it('never puts key material into the manifests', () => {
    const text = JSON.stringify(m.objects);
    expect(text).not.toMatch(/"(data|stringData)":/);
    expect(m.objects.map((o) => o.kind)).not.toContain('Secret');
  });
});
