import type { V1Container, V1EnvVar } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import {
  buildGeneratedSecret, buildManifests, generateSecretValue, resourceNames, secretTemplates, selectorLabels,
  type BuildOptions, type VaultClusterManifests,
} from '../../../operator/manifests/index.js';
import { judgeHost } from '../../../server/api/edge.js';
import { loadConfig } from '../../../server/config/config.js';
import { cluster } from './fixtures.js';

const OFF: BuildOptions = { rewrapEnabled: false };

function vaultContainer(m: VaultClusterManifests): V1Container {
  const c = m.statefulSet.spec?.template.spec?.containers[0];
  if (!c) throw new Error('no container');
  return c;
}

function env(m: VaultClusterManifests): Map<string, V1EnvVar> {
  return new Map((vaultContainer(m).env ?? []).map((e) => [e.name, e]));
}

function envValue(m: VaultClusterManifests, name: string): string | undefined {
  return env(m).get(name)?.value;
}

/**
 * The environment the kubelet gives the vault container of pod `pod`:
 * metadata.name for the fieldRef, a well-formed value for each Secret
 * reference, and `$(VAR)` expanded from the variables defined before it (an
 * undefined or later one stays as written, as the kubelet leaves it).
 */
function kubeletEnv(list: readonly V1EnvVar[], pod: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of list) {
    let value: string;
    if (e.valueFrom?.fieldRef) value = e.valueFrom.fieldRef.fieldPath === 'metadata.name' ? pod : '';
    else if (e.valueFrom?.secretKeyRef) value = e.name === 'VAULT_BOOTSTRAP_TOKEN' ? generateSecretValue('bootstrap-token') : generateSecretValue('cluster-key');
    else value = (e.value ?? '').replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (ref, name: string) => out[name] ?? ref);
    out[e.name] = value;
  }
  return out;
}

describe('buildManifests', () => {
  const vc = cluster();
  const m = buildManifests(vc, OFF);

  it('builds the documented objects with stable names', () => {
    expect(m.objects.map((o) => `${o.kind}/${o.metadata?.name}`)).toEqual([
      'ServiceAccount/vault', 'Service/vault-headless', 'Service/vault-client', 'StatefulSet/vault', 'PodDisruptionBudget/vault',
    ]);
    expect(resourceNames('vault')).toMatchObject({
      bootstrapTokenSecret: 'vault-bootstrap-token', masterKeySecret: 'vault-master-key',
      wireguardKeysSecret: 'vault-wireguard-keys', wireguardPeersConfigMap: 'vault-wireguard-peers',
      readAllowlistConfigMap: 'vault-read-allowlist',
    });
    for (const o of m.objects) expect(o.metadata?.namespace).toBe('secrets');
  });

  it('labels everything and selects pods by name+instance only', () => {
    const labels = { 'app.kubernetes.io/name': 'coffer', 'app.kubernetes.io/instance': 'vault', 'app.kubernetes.io/managed-by': 'coffer-operator' };
    const selector = { 'app.kubernetes.io/name': 'coffer', 'app.kubernetes.io/instance': 'vault' };
    for (const o of m.objects) expect(o.metadata?.labels).toEqual(labels);
    expect(m.statefulSet.spec?.selector).toEqual({ matchLabels: selector });
    expect(m.statefulSet.spec?.template.metadata?.labels).toEqual(labels);
    expect(m.headlessService.spec?.selector).toEqual(selector);
    expect(m.clientService.spec?.selector).toEqual(selector);
    expect(m.podDisruptionBudget.spec?.selector).toEqual({ matchLabels: selector });
    expect(JSON.stringify(m.objects)).not.toContain('cdk8s.io');
  });

  it('keeps names, selectors and serviceName across spec and release changes', () => {
    const other = buildManifests(
      cluster({
        replicas: 5, image: 'registry.example/coffer:2.0.0', kms: { mode: 'aws', keyId: 'alias/x', rewrap: { enabled: true } },
        tls: { secretName: 'tls' }, storage: { size: '5Gi', deleteClaimsOnScaleDown: true }, resources: { requests: { cpu: '1' } },
      }),
      { rewrapEnabled: true, image: 'registry.example/coffer:2.0.1' },
    );
    const ids = (x: VaultClusterManifests) => x.objects.map((o) => `${o.kind}/${o.metadata?.name}`);
    expect(ids(other)).toEqual(ids(m));
    expect(other.statefulSet.spec?.selector).toEqual(m.statefulSet.spec?.selector);
    expect(other.statefulSet.spec?.serviceName).toBe('vault-headless');
    expect(other.headlessService.spec?.selector).toEqual(m.headlessService.spec?.selector);
    expect(other.podDisruptionBudget.spec?.selector).toEqual(m.podDisruptionBudget.spec?.selector);
    expect(vaultContainer(other).image).toBe('registry.example/coffer:2.0.1');
    expect(selectorLabels('vault')).toEqual(m.statefulSet.spec?.selector?.matchLabels);
  });

  it('owns every object by the VaultCluster', () => {
    for (const o of m.objects) {
      expect(o.metadata?.ownerReferences).toEqual([
        { apiVersion: 'coffer.dev/v1alpha1', kind: 'VaultCluster', name: 'vault', uid: vc.metadata.uid, controller: true, blockOwnerDeletion: true },
      ]);
    }
    const noUid = buildManifests(cluster({}, { uid: undefined }), OFF);
    for (const o of noUid.objects) expect(o.metadata?.ownerReferences).toBeUndefined();
  });

  it('sets the server environment per DESIGN §3', () => {
    const e = env(m);
    expect(e.get('VAULT_NODE_ID')).toEqual({ name: 'VAULT_NODE_ID', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } } });
    expect(envValue(m, 'VAULT_API_ADDR')).toBe('0.0.0.0:8200');
    expect(envValue(m, 'VAULT_RAFT_ADDR')).toBe('0.0.0.0:8201');
    expect(envValue(m, 'VAULT_RAFT_ADVERTISE')).toBe('$(VAULT_NODE_ID).vault-headless.secrets.svc:8201');
    expect(envValue(m, 'VAULT_DATA_DIR')).toBe('/var/lib/coffer');
    expect(envValue(m, 'VAULT_KMS_MODE')).toBe('local');
    expect(e.has('VAULT_KMS_KEY_ID')).toBe(false);
    expect(e.get('VAULT_LOCAL_MASTER_KEY')?.valueFrom?.secretKeyRef).toEqual({ name: 'vault-master-key', key: 'master-key', optional: false });
    expect(e.get('VAULT_BOOTSTRAP_TOKEN')?.valueFrom?.secretKeyRef).toEqual({ name: 'vault-bootstrap-token', key: 'token', optional: false });
    expect(e.get('VAULT_CLUSTER_KEY')?.valueFrom?.secretKeyRef).toEqual({ name: 'vault-cluster-key', key: 'cluster-key', optional: false });
    expect(envValue(m, 'VAULT_DEK_CACHE_TTL_SECS')).toBe('300');
    expect(envValue(m, 'VAULT_KMS_REWRAP_ENABLED')).toBe('false');
    expect(envValue(m, 'VAULT_KMS_REWRAP_POLL_SECS')).toBe('86400');
    expect(envValue(m, 'VAULT_KMS_REWRAP_MAX_PER_SEC')).toBe('20');
    expect(envValue(m, 'VAULT_READ_ALLOWLIST')).toBe('');
    expect(envValue(m, 'VAULT_TRUST_PROXY')).toBe('false');
    expect(envValue(m, 'VAULT_TRUSTED_PROXIES')).toBe('');
    expect(e.has('VAULT_TLS_CERT_FILE')).toBe(false);
    // spec.audit's defaults: 30d, a quarter of the 1Gi volume in bytes, stdout on.
    expect(envValue(m, 'VAULT_AUDIT_RETENTION')).toBe('30d');
    expect(envValue(m, 'VAULT_AUDIT_MAX_BYTES')).toBe(String(256 * 1024 * 1024));
    expect(envValue(m, 'VAULT_AUDIT_STDOUT')).toBe('true');
    // $(VAULT_NODE_ID) only expands when VAULT_NODE_ID comes earlier in the list.
    const names = (vaultContainer(m).env ?? []).map((x) => x.name);
    expect(names.indexOf('VAULT_NODE_ID')).toBeLessThan(names.indexOf('VAULT_RAFT_ADVERTISE'));
    expect(new Set(names).size).toBe(names.length);
    for (const n of names) expect(n).toMatch(/^VAULT_[A-Z_]+$/);
  });

  it('maps aws mode, allowlist, proxy, TLS and user-supplied Secrets', () => {
    const x = buildManifests(
      cluster({
        kms: { mode: 'aws', keyId: 'arn:aws:kms:eu-west-1:1:key/k', dekCacheTtlSecs: 0, rewrap: { enabled: true, pollSecs: 60, maxPerSec: 5 } },
        readAllowlist: ['10.0.0.0/8', '192.168.1.5'], trustProxy: true, trustedProxies: ['10.42.0.0/16', '10.9.8.7'], tls: { secretName: 'vault-tls' },
        bootstrap: { tokenSecretRef: { name: 'my-token', key: 'value' } },
      }),
      OFF,
    );
    const e = env(x);
    expect(envValue(x, 'VAULT_KMS_MODE')).toBe('aws');
    expect(envValue(x, 'VAULT_KMS_KEY_ID')).toBe('arn:aws:kms:eu-west-1:1:key/k');
    expect(e.has('VAULT_LOCAL_MASTER_KEY')).toBe(false);
    expect(envValue(x, 'VAULT_DEK_CACHE_TTL_SECS')).toBe('0');
    expect(envValue(x, 'VAULT_KMS_REWRAP_POLL_SECS')).toBe('60');
    expect(envValue(x, 'VAULT_KMS_REWRAP_MAX_PER_SEC')).toBe('5');
    // spec.kms.rewrap.enabled is NOT applied directly: the rollout decides.
    expect(envValue(x, 'VAULT_KMS_REWRAP_ENABLED')).toBe('false');
    expect(envValue(buildManifests(cluster(), { rewrapEnabled: true }), 'VAULT_KMS_REWRAP_ENABLED')).toBe('true');
    expect(envValue(x, 'VAULT_READ_ALLOWLIST')).toBe('10.0.0.0/8,192.168.1.5');
    expect(envValue(x, 'VAULT_TRUST_PROXY')).toBe('true');
    expect(envValue(x, 'VAULT_TRUSTED_PROXIES')).toBe('10.42.0.0/16,10.9.8.7');
    expect(e.get('VAULT_BOOTSTRAP_TOKEN')?.valueFrom?.secretKeyRef).toEqual({ name: 'my-token', key: 'value', optional: false });
    expect(envValue(x, 'VAULT_TLS_CERT_FILE')).toBe('/etc/coffer/tls/tls.crt');
    expect(envValue(x, 'VAULT_TLS_KEY_FILE')).toBe('/etc/coffer/tls/tls.key');
    const pod = x.statefulSet.spec?.template.spec;
    expect(pod?.volumes).toContainEqual({ name: 'tls', secret: { secretName: 'vault-tls', defaultMode: 0o440 } });
    expect(vaultContainer(x).volumeMounts).toContainEqual({ name: 'tls', mountPath: '/etc/coffer/tls', readOnly: true });
    expect(vaultContainer(x).readinessProbe?.httpGet?.scheme).toBe('HTTPS');
    const local = buildManifests(cluster({ kms: { mode: 'local', localMasterKeySecretRef: { name: 'mk', key: 'k' } } }), OFF);
    expect(env(local).get('VAULT_LOCAL_MASTER_KEY')?.valueFrom?.secretKeyRef).toEqual({ name: 'mk', key: 'k', optional: false });
  });

  it.each([1, 3, 5, 7])('lists every ordinal as a peer for %i replicas', (n) => {
    const x = buildManifests(cluster({ replicas: n }), OFF);
    expect(x.statefulSet.spec?.replicas).toBe(n);
    const peers = (envValue(x, 'VAULT_PEERS') ?? '').split(',');
    expect(peers).toEqual(Array.from({ length: n }, (_, i) => `vault-${i}=vault-${i}.vault-headless.secrets.svc:8201`));
  });

  it('can use a full cluster domain for Raft hostnames', () => {
    const x = buildManifests(cluster({ replicas: 1 }), { rewrapEnabled: false, clusterDomain: 'cluster.local' });
    expect(envValue(x, 'VAULT_PEERS')).toBe('vault-0=vault-0.vault-headless.secrets.svc.cluster.local:8201');
    expect(envValue(x, 'VAULT_RAFT_ADVERTISE')).toBe('$(VAULT_NODE_ID).vault-headless.secrets.svc.cluster.local:8201');
  });

  it('answers to every Service and pod DNS name of the cluster (VAULT_API_HOSTNAMES), with the default cluster domain', () => {
    expect((envValue(m, 'VAULT_API_HOSTNAMES') ?? '').split(',')).toEqual([
      'vault-client', 'vault-client.secrets', 'vault-client.secrets.svc', 'vault-client.secrets.svc.cluster.local',
      'vault-headless', 'vault-headless.secrets', 'vault-headless.secrets.svc', 'vault-headless.secrets.svc.cluster.local',
      '$(VAULT_NODE_ID).vault-headless', '$(VAULT_NODE_ID).vault-headless.secrets',
      '$(VAULT_NODE_ID).vault-headless.secrets.svc', '$(VAULT_NODE_ID).vault-headless.secrets.svc.cluster.local',
    ]);
    // The pod's own names only expand when VAULT_NODE_ID comes earlier in the list.
    const names = (vaultContainer(m).env ?? []).map((x) => x.name);
    expect(names.indexOf('VAULT_NODE_ID')).toBe(0);
    expect(names.indexOf('VAULT_API_HOSTNAMES')).toBeGreaterThan(0);
    // The Services' real names, whatever the VaultCluster and namespace are called.
    const other = buildManifests(cluster({ replicas: 1 }, { name: 'kv', namespace: 'team-a' }), { rewrapEnabled: false, clusterDomain: 'corp.internal' });
    expect((envValue(other, 'VAULT_API_HOSTNAMES') ?? '').split(',')).toEqual([
      'kv-client', 'kv-client.team-a', 'kv-client.team-a.svc', 'kv-client.team-a.svc.corp.internal',
      'kv-headless', 'kv-headless.team-a', 'kv-headless.team-a.svc', 'kv-headless.team-a.svc.corp.internal',
      '$(VAULT_NODE_ID).kv-headless', '$(VAULT_NODE_ID).kv-headless.team-a',
      '$(VAULT_NODE_ID).kv-headless.team-a.svc', '$(VAULT_NODE_ID).kv-headless.team-a.svc.corp.internal',
    ]);
    expect(other.clientService.metadata?.name).toBe('kv-client');
    expect(other.headlessService.metadata?.name).toBe('kv-headless');
    // The overlay replaces VAULT_PEERS and drops VAULT_RAFT_ADVERTISE; the names stay, after VAULT_NODE_ID.
    const wg = buildManifests(cluster(), {
      rewrapEnabled: false,
      podExtensions: [{ env: [{ name: 'VAULT_PEERS', value: 'vault-0=10.77.0.1:8201' }], removeEnv: ['VAULT_RAFT_ADVERTISE', 'VAULT_RAFT_ADDR'] }],
    });
    const wgNames = (vaultContainer(wg).env ?? []).map((x) => x.name);
    expect(wgNames.indexOf('VAULT_NODE_ID')).toBe(0);
    expect(envValue(wg, 'VAULT_API_HOSTNAMES')).toBe(envValue(m, 'VAULT_API_HOSTNAMES'));
  });

  it('gives the server an environment it starts with, whose Host check takes the cluster\'s names and nothing else', () => {
    const x = buildManifests(cluster({ trustProxy: true, trustedProxies: ['10.42.0.0/16'] }), OFF);
    const podEnv = kubeletEnv(vaultContainer(x).env ?? [], 'vault-1');
    const config = loadConfig(podEnv);
    expect(config.trustProxy).toBe(true);
    expect(config.trustedProxies?.allows('10.42.3.4')).toBe(true);
    expect(config.trustedProxies?.allows('10.43.0.1')).toBe(false);
    const names = new Set(config.apiHostnames);
    for (const host of [
      'vault-client:8200', 'vault-client.secrets', 'vault-client.secrets.svc:8200', 'VAULT-CLIENT.secrets.svc.cluster.local.:8200',
      'vault-headless.secrets.svc', 'vault-1.vault-headless:8200', 'vault-1.vault-headless.secrets.svc.cluster.local:8200',
      '10.244.0.7:8200', 'localhost:8200',
    ]) expect(judgeHost(host, names), host).toBe(true);
    // Another pod's name, another namespace's Service, a rebinding attacker's name.
    for (const host of ['vault-0.vault-headless.secrets.svc', 'vault-client.other.svc', 'vault.attacker.example', 'vault-client.secrets.svc.evil.example']) {
      expect(judgeHost(host, names), host).toBe(false);
    }
    // trustProxy without trustedProxies would not start: the schema refuses it first (schema.test.ts).
    const unproxied = kubeletEnv(vaultContainer(m).env ?? [], 'vault-0');
    expect(loadConfig(unproxied).trustedProxies).toBeNull();
    expect(() => loadConfig({ ...unproxied, VAULT_TRUST_PROXY: 'true' })).toThrow(/VAULT_TRUSTED_PROXIES/);
  });

  it('probes readiness on /v1/ready and liveness on /v1/health', () => {
    const c = vaultContainer(m);
    expect(c.readinessProbe?.httpGet).toEqual({ path: '/v1/ready', port: 'api', scheme: 'HTTP' });
    expect(c.livenessProbe?.httpGet).toEqual({ path: '/v1/health', port: 'api', scheme: 'HTTP' });
    expect(c.startupProbe?.httpGet).toEqual({ path: '/v1/health', port: 'api', scheme: 'HTTP' });
    expect(c.startupProbe?.tcpSocket).toBeUndefined();
    expect(c.ports).toEqual([
      { containerPort: 8200, name: 'api', protocol: 'TCP' },
      { containerPort: 8201, name: 'raft', protocol: 'TCP' },
    ]);
    expect(c.args).toEqual(['server']);
    expect(c.imagePullPolicy).toBe('IfNotPresent');
  });

  it('runs non-root with a read-only root filesystem, no capabilities and a writable /tmp', () => {
    const pod = m.statefulSet.spec?.template.spec;
    const c = vaultContainer(m);
    expect(c.securityContext).toEqual({
      allowPrivilegeEscalation: false, privileged: false, readOnlyRootFilesystem: true, runAsNonRoot: true,
      runAsUser: 10_001, runAsGroup: 10_001, capabilities: { drop: ['ALL'] }, seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(pod?.securityContext).toEqual({
      runAsNonRoot: true, runAsUser: 10_001, runAsGroup: 10_001, fsGroup: 10_001, fsGroupChangePolicy: 'OnRootMismatch',
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(pod?.automountServiceAccountToken).toBe(false);
    expect(pod?.enableServiceLinks).toBe(false);
    expect(pod?.hostNetwork).toBe(false);
    expect(pod?.serviceAccountName).toBe('vault');
    expect(pod?.volumes).toContainEqual({ name: 'tmp', emptyDir: { sizeLimit: '64Mi' } });
    expect(c.volumeMounts).toEqual([
      { name: 'data', mountPath: '/var/lib/coffer' },
      { name: 'tmp', mountPath: '/tmp' },
      { name: 'members', mountPath: '/etc/coffer/members', readOnly: true },
    ]);
    // The declared members: the ConfigMap mounted whole (a resize updates it in place).
    expect(pod?.volumes).toContainEqual({ name: 'members', configMap: { name: 'vault-members', defaultMode: 0o444, optional: false } });
    expect(envValue(m, 'VAULT_MEMBERS_FILE')).toBe('/etc/coffer/members/members');
  });

  it('uses exactly spec.resources (none of cdk8s-plus\'s invented limits)', () => {
    expect(vaultContainer(m).resources).toBeUndefined();
    const resources = { requests: { cpu: '250m', memory: '256Mi' }, limits: { memory: '1Gi', 'ephemeral-storage': '1Gi' } };
    expect(vaultContainer(buildManifests(cluster({ resources }), OFF)).resources).toEqual(resources);
  });

  it('starts all pods in parallel with a rolling update', () => {
    expect(m.statefulSet.spec?.podManagementPolicy).toBe('Parallel');
    expect(m.statefulSet.spec?.serviceName).toBe('vault-headless');
    expect(m.statefulSet.spec?.updateStrategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { partition: 0 } });
  });

  it('has a PVC template and keeps claims unless the spec opts in', () => {
    const tpl = m.statefulSet.spec?.volumeClaimTemplates;
    expect(tpl).toHaveLength(1);
    expect(tpl?.[0]?.metadata?.name).toBe('data');
    expect(tpl?.[0]?.spec).toEqual({ accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } });
    expect(m.statefulSet.spec?.persistentVolumeClaimRetentionPolicy).toEqual({ whenDeleted: 'Retain', whenScaled: 'Retain' });
    const x = buildManifests(cluster({ storage: { size: '10Gi', storageClassName: 'gp3', deleteClaimsOnScaleDown: true, deleteClaimsOnDelete: true } }), OFF);
    expect(x.statefulSet.spec?.volumeClaimTemplates?.[0]?.spec).toEqual({
      accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '10Gi' } }, storageClassName: 'gp3',
    });
    expect(x.statefulSet.spec?.persistentVolumeClaimRetentionPolicy).toEqual({ whenDeleted: 'Delete', whenScaled: 'Delete' });
  });

  it('has a headless Service that publishes unready pods and a client Service for the API', () => {
    expect(m.headlessService.spec).toMatchObject({ clusterIP: 'None', publishNotReadyAddresses: true });
    expect(m.headlessService.spec?.ports?.map((p) => [p.name, p.port, p.targetPort])).toEqual([['api', 8200, 8200], ['raft', 8201, 8201]]);
    expect(m.clientService.spec?.clusterIP).toBeUndefined();
    expect(m.clientService.spec?.publishNotReadyAddresses).toBeUndefined();
    expect(m.clientService.spec?.ports?.map((p) => [p.name, p.port])).toEqual([['api', 8200]]);
    expect(m.headlessService.spec).not.toHaveProperty('externalIPs');
  });

  it('has a PodDisruptionBudget allowing the voter set\'s fault tolerance (at least 1)', () => {
    expect(m.podDisruptionBudget.apiVersion).toBe('policy/v1');
    expect(m.podDisruptionBudget.spec?.maxUnavailable).toBe(1);
    const sizes = ([1, 3, 5, 7] as const).map((replicas) => buildManifests(cluster({ replicas }), OFF).podDisruptionBudget.spec?.maxUnavailable);
    expect(sizes).toEqual([1, 1, 2, 3]);
    expect(buildManifests(cluster({ replicas: 5 }), { ...OFF, pdbMaxUnavailable: 1 }).podDisruptionBudget.spec?.maxUnavailable).toBe(1);
  });

  it('keeps VAULT_PEERS at the formed size when told (a resize changes no pod template)', () => {
    const formed = buildManifests(cluster({ replicas: 5 }), { ...OFF, formedMembers: 3 });
    expect((envValue(formed, 'VAULT_PEERS') ?? '').split(',')).toHaveLength(3);
    expect(formed.statefulSet.spec?.replicas).toBe(5);
    expect(formed.statefulSet.spec?.template).toEqual(buildManifests(cluster({ replicas: 3 }), OFF).statefulSet.spec?.template);
  });

  it('puts the spec annotations on the ServiceAccount (IRSA)', () => {
    const x = buildManifests(cluster({ serviceAccount: { annotations: { 'eks.amazonaws.com/role-arn': 'arn:aws:iam::1:role/coffer' } } }), OFF);
    expect(x.serviceAccount.metadata?.annotations).toEqual({ 'eks.amazonaws.com/role-arn': 'arn:aws:iam::1:role/coffer' });
    expect(x.serviceAccount.automountServiceAccountToken).toBe(false);
  });

  it('adds pod extensions (the WireGuard sidecar plugs in here)', () => {
    const x = buildManifests(cluster(), {
      rewrapEnabled: false,
      podExtensions: [{
        initContainers: [{ name: 'wireguard', image: 'wg', restartPolicy: 'Always' }],
        containers: [{ name: 'exporter', image: 'exp' }],
        volumes: [{ name: 'wg-keys', secret: { secretName: 'vault-wireguard' } }],
        env: [{ name: 'VAULT_EXTRA', value: '1' }],
      }],
    });
    const pod = x.statefulSet.spec?.template.spec;
    expect(pod?.initContainers?.map((c) => c.name)).toEqual(['wireguard']);
    expect(pod?.containers.map((c) => c.name)).toEqual(['vault', 'exporter']);
    expect(pod?.volumes?.map((v) => v.name)).toEqual(['tmp', 'members', 'wg-keys']);
    expect(envValue(x, 'VAULT_EXTRA')).toBe('1');
    expect(m.statefulSet.spec?.template.spec?.initContainers).toBeUndefined();
  });

  it('lets a pod extension replace and remove server env vars (the overlay\'s VAULT_PEERS)', () => {
    const x = buildManifests(cluster(), {
      rewrapEnabled: false,
      podExtensions: [{ env: [{ name: 'VAULT_PEERS', value: 'vault-0=10.77.0.1:8201' }, { name: 'VAULT_NEW', value: 'x' }], removeEnv: ['VAULT_RAFT_ADVERTISE', 'VAULT_RAFT_ADDR'] }],
    });
    const names = (vaultContainer(x).env ?? []).map((e) => e.name);
    const before = (vaultContainer(m).env ?? []).map((e) => e.name);
    expect(envValue(x, 'VAULT_PEERS')).toBe('vault-0=10.77.0.1:8201');
    expect(names.indexOf('VAULT_PEERS')).toBe(before.indexOf('VAULT_PEERS') - 2);
    expect(names).not.toContain('VAULT_RAFT_ADVERTISE');
    expect(names).not.toContain('VAULT_RAFT_ADDR');
    expect(names.at(-1)).toBe('VAULT_NEW');
    expect(new Set(names).size).toBe(names.length);
  });

  it('readAllowlistFrom: mounts the read-allowlist ConfigMap as a directory and points VAULT_READ_ALLOWLIST_FILE at it; none without it', () => {
    const plain = m.statefulSet.spec!.template.spec!;
    expect(plain.containers[0]!.env!.map((e) => e.name)).not.toContain('VAULT_READ_ALLOWLIST_FILE');
    expect(plain.volumes!.map((v) => v.name)).not.toContain('read-allowlist');
    const from = cluster({ readAllowlist: ['10.0.0.0/8'], readAllowlistFrom: [{ namespace: 'coffer-system', podSelector: { matchLabels: { app: 'sync' } } }] });
    const pod = buildManifests(from, OFF).statefulSet.spec!.template.spec!;
    const vault = pod.containers[0]!;
    const env = new Map(vault.env!.map((e) => [e.name, e.value]));
    expect(env.get('VAULT_READ_ALLOWLIST')).toBe('10.0.0.0/8');
    expect(env.get('VAULT_READ_ALLOWLIST_FILE')).toBe('/etc/coffer/read-allowlist/allowlist');
    expect(pod.volumes!.find((v) => v.name === 'read-allowlist')).toEqual({
      name: 'read-allowlist', configMap: { name: 'vault-read-allowlist', defaultMode: 0o444, optional: false },
    });
    const mount = vault.volumeMounts!.find((v) => v.name === 'read-allowlist');
    expect(mount).toEqual({ name: 'read-allowlist', mountPath: '/etc/coffer/read-allowlist', readOnly: true });
    expect(mount).not.toHaveProperty('subPath');
  });

  it('is deterministic', () => {
    expect(buildManifests(cluster(), OFF)).toEqual(buildManifests(cluster(), OFF));
  });
});

describe('generated Secrets', () => {
  it('lists the bootstrap token and the cluster key always, and the master key in local mode only', () => {
    const clusterKey = expect.objectContaining({ purpose: 'cluster-key', namespace: 'secrets', name: 'vault-cluster-key', key: 'cluster-key', generated: true });
    expect(secretTemplates(cluster())).toEqual([
      expect.objectContaining({ purpose: 'bootstrap-token', namespace: 'secrets', name: 'vault-bootstrap-token', key: 'token', generated: true }),
      clusterKey,
      expect.objectContaining({ purpose: 'local-master-key', namespace: 'secrets', name: 'vault-master-key', key: 'master-key', generated: true }),
    ]);
    const aws = secretTemplates(cluster({ kms: { mode: 'aws', keyId: 'k' }, bootstrap: { tokenSecretRef: { name: 't', key: 'k' } } }));
    expect(aws).toEqual([expect.objectContaining({ purpose: 'bootstrap-token', name: 't', key: 'k', generated: false }), clusterKey]);
  });

  it('generates 256-bit values in the format the server reads', () => {
    const token = generateSecretValue('bootstrap-token');
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(token, 'base64url')).toHaveLength(32);
    const key = generateSecretValue('local-master-key');
    expect(Buffer.from(key, 'base64')).toHaveLength(32);
    expect(Buffer.from(key, 'base64').toString('base64')).toBe(key);
    const clusterKey = generateSecretValue('cluster-key'); // VAULT_CLUSTER_KEY: standard base64 of 32 bytes
    expect(Buffer.from(clusterKey, 'base64')).toHaveLength(32);
    expect(Buffer.from(clusterKey, 'base64').toString('base64')).toBe(clusterKey);
    expect(clusterKey).not.toBe(key);
    expect(generateSecretValue('bootstrap-token')).not.toBe(token);
  });

  it('builds an immutable Secret, owned only when the data goes with the VaultCluster', () => {
    const vc = cluster();
    const [tokenTpl] = secretTemplates(vc);
    const fixed = () => new Uint8Array(32).fill(7);
    const s = buildGeneratedSecret(vc, tokenTpl!, fixed);
    expect(s.metadata).toMatchObject({ name: 'vault-bootstrap-token', namespace: 'secrets' });
    expect(s.immutable).toBe(true);
    expect(Buffer.from(s.data?.token ?? '', 'base64').toString()).toBe(Buffer.alloc(32, 7).toString('base64url'));
    expect(s.metadata?.ownerReferences).toBeUndefined();
    const owned = cluster({ storage: { deleteClaimsOnDelete: true } });
    expect(buildGeneratedSecret(owned, secretTemplates(owned)[0]!).metadata?.ownerReferences).toHaveLength(1);
    const user = cluster({ bootstrap: { tokenSecretRef: { name: 't', key: 'k' } } });
    expect(() => buildGeneratedSecret(user, secretTemplates(user)[0]!)).toThrow(/supplied by the user/);
  });

  it('never puts a secret value into the manifests', () => {
    const vc = cluster({ tls: { secretName: 'vault-tls' } });
    const m = buildManifests(vc, OFF);
    const text = JSON.stringify(m.objects);
    expect(m.objects.map((o) => o.kind)).not.toContain('Secret');
    expect(text).not.toMatch(/"(data|stringData)":/);
    const values = (vaultContainer(m).env ?? []).filter((e) => /TOKEN|MASTER_KEY/.test(e.name));
    expect(values).toHaveLength(2);
    for (const e of values) {
      expect(e.value).toBeUndefined();
      expect(e.valueFrom?.secretKeyRef).toBeDefined();
    }
  });
});
