// Builds the Kubernetes objects of a VaultCluster in memory with cdk8s and
// cdk8s-plus-28 (no synth to disk: Chart.toJson()).
//
// cdk8s-plus is opinionated; every default it applies that matters to a
// Raft StatefulSet is overridden here on purpose, and the unit tests pin the
// result:
// - selectors: cdk8s-plus selects pods by a generated `cdk8s.io/metadata.addr`
//   label; we select by selectorLabels() only (stable across releases) and
//   remove that label from the pod template;
// - resources: cdk8s-plus invents CPU/memory requests and limits; we emit
//   exactly spec.resources (nothing when the spec has none);
// - probes: its default TCP startup probe is replaced by HTTP probes on the
//   server's /v1/health and /v1/ready;
// - imagePullPolicy: Always → IfNotPresent (pinned tags and digests, and
//   images side-loaded into kind);
// - security: non-root with a fixed UID/GID and fsGroup (so the data volume is
//   writable), read-only root filesystem, all capabilities dropped,
//   RuntimeDefault seccomp, fsGroupChangePolicy OnRootMismatch (Always would
//   re-chown the whole volume on every start);
// - podManagementPolicy Parallel: Raft needs every initial voter up before
//   any of them can become ready (OrderedReady would deadlock on pod 0);
// - automountServiceAccountToken stays false: the server never calls the
//   Kubernetes API, and IRSA injects its own projected token;
// - enableServiceLinks false: no docker-link env vars next to VAULT_*.
import type {
  V1Container, V1EnvVar, V1PodDisruptionBudget, V1Service, V1ServiceAccount, V1StatefulSet, V1Volume,
} from '@kubernetes/client-node';
import { App, Chart, JsonPatch } from 'cdk8s';
import * as kplus from 'cdk8s-plus-28';
import { auditEnv } from '../api/audit.js';
import type { VaultCluster } from '../api/types.js';
import {
  API_PORT, API_PORT_NAME, CONTAINER_NAME, DATA_MOUNT_PATH, DATA_VOLUME, RAFT_PORT, RAFT_PORT_NAME, RUN_AS_GROUP,
  MEMBERS_FILE, MEMBERS_MOUNT_PATH, MEMBERS_VOLUME, READ_ALLOWLIST_FILE, READ_ALLOWLIST_MOUNT_PATH, READ_ALLOWLIST_VOLUME, RUN_AS_USER, SERVER_ARGS, TLS_MOUNT_PATH, TLS_VOLUME, TMP_MOUNT_PATH, TMP_VOLUME, commonLabels, namespaceOf, ownerReferences,
  apiHostnames, peersValue, resourceNames, selectorLabels,
} from './names.js';
import { usesReadAllowlistFile } from './read-allowlist.js';
import { bootstrapTokenRef, clusterKeyRef, masterKeyRef } from './secrets.js';

/**
 * Additions to the pod from another part of the operator. This is where the
 * WireGuard issue plugs in: it turns spec.wireguard, the WireGuard key Secret
 * and the peer ConfigMap into a PodExtension (a native sidecar in
 * `initContainers` with `restartPolicy: Always`, its volumes, and any env the
 * vault container needs) and passes it in BuildOptions.podExtensions.
 * buildManifests itself never reads spec.wireguard.
 */
export interface PodExtension {
  /** Extra containers in the pod (after the vault container). */
  containers?: V1Container[];
  /** Init containers, including native sidecars (restartPolicy: Always). */
  initContainers?: V1Container[];
  volumes?: V1Volume[];
  /**
   * Env vars of the vault container: one whose name the server environment
   * already has replaces that entry in place (so `$(VAR)` references keep
   * their order, e.g. the overlay's VAULT_PEERS); others are appended.
   */
  env?: V1EnvVar[];
  /** Names removed from the vault container's env (e.g. VAULT_RAFT_ADVERTISE, which the overlay derives). */
  removeEnv?: string[];
}

export interface BuildOptions {
  /**
   * VAULT_KMS_REWRAP_ENABLED. Decided by the rotation-flag rollout
   * (status.rollout), never taken from spec.kms.rewrap.enabled directly: the
   * flag may only be switched on after every pod runs the release with it off.
   */
  rewrapEnabled: boolean;
  /** Server image; defaults to spec.image. */
  image?: string;
  /**
   * Appends `.svc.<clusterDomain>` to Raft hostnames instead of relying on the
   * DNS search path (`.svc`); also the domain of the fully qualified names in
   * VAULT_API_HOSTNAMES (cluster.local when unset).
   */
  clusterDomain?: string;
  /**
   * Raft size the cluster was formed with: VAULT_PEERS lists these ordinals
   * and never changes on a resize (so a resize rolls no pod). Default
   * spec.replicas (a new cluster).
   */
  formedMembers?: number;
  /**
   * The PodDisruptionBudget's maxUnavailable. Default the fault tolerance of
   * spec.replicas voters (at least 1); during a resize the reconciler passes
   * the smaller voter set's.
   */
  pdbMaxUnavailable?: number;
  /** Extra pod template annotations (e.g. a restart stamp). */
  podAnnotations?: Record<string, string>;
  /** See PodExtension. */
  podExtensions?: PodExtension[];
}

export interface VaultClusterManifests {
  serviceAccount: V1ServiceAccount;
  headlessService: V1Service;
  clientService: V1Service;
  statefulSet: V1StatefulSet;
  podDisruptionBudget: V1PodDisruptionBudget;
  /** Everything above, in apply order. */
  objects: (V1ServiceAccount | V1Service | V1StatefulSet | V1PodDisruptionBudget)[];
}

/** The server environment (DESIGN §3) for the vault container. */
export function serverEnv(vc: VaultCluster, opts: BuildOptions): V1EnvVar[] {
  const { name } = vc.metadata;
  const ns = namespaceOf(vc);
  const spec = vc.spec;
  const headless = resourceNames(name).headlessService;
  const svc = opts.clusterDomain ? `svc.${opts.clusterDomain}` : 'svc';
  const env: V1EnvVar[] = [
    // First: later values refer to it with $(VAULT_NODE_ID).
    { name: 'VAULT_NODE_ID', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } } },
    { name: 'VAULT_API_ADDR', value: `0.0.0.0:${API_PORT}` },
    { name: 'VAULT_RAFT_ADDR', value: `0.0.0.0:${RAFT_PORT}` },
    { name: 'VAULT_RAFT_ADVERTISE', value: `$(VAULT_NODE_ID).${headless}.${ns}.${svc}:${RAFT_PORT}` },
    { name: 'VAULT_PEERS', value: peersValue(name, ns, opts.formedMembers ?? spec.replicas, opts.clusterDomain) },
    // The declared members (operator/manifests/members.ts): a fixed path, so a resize changes only the ConfigMap.
    { name: 'VAULT_MEMBERS_FILE', value: MEMBERS_FILE },
    { name: 'VAULT_DATA_DIR', value: DATA_MOUNT_PATH },
    { name: 'VAULT_KMS_MODE', value: spec.kms.mode },
  ];
  if (spec.kms.mode === 'aws' && spec.kms.keyId !== undefined) env.push({ name: 'VAULT_KMS_KEY_ID', value: spec.kms.keyId });
  const mk = masterKeyRef(vc);
  if (mk) env.push({ name: 'VAULT_LOCAL_MASTER_KEY', valueFrom: { secretKeyRef: { name: mk.name, key: mk.key, optional: false } } });
  const ck = clusterKeyRef(vc);
  env.push({ name: 'VAULT_CLUSTER_KEY', valueFrom: { secretKeyRef: { name: ck.name, key: ck.key, optional: false } } });
  const token = bootstrapTokenRef(vc);
  env.push(
    { name: 'VAULT_DEK_CACHE_TTL_SECS', value: String(spec.kms.dekCacheTtlSecs) },
    { name: 'VAULT_KMS_REWRAP_ENABLED', value: String(opts.rewrapEnabled) },
    { name: 'VAULT_KMS_REWRAP_POLL_SECS', value: String(spec.kms.rewrap.pollSecs) },
    { name: 'VAULT_KMS_REWRAP_MAX_PER_SEC', value: String(spec.kms.rewrap.maxPerSec) },
    { name: 'VAULT_BOOTSTRAP_TOKEN', valueFrom: { secretKeyRef: { name: token.name, key: token.key, optional: false } } },
    { name: 'VAULT_READ_ALLOWLIST', value: spec.readAllowlist.join(',') },
    // The ConfigMap's path, fixed: pod IPs change only the ConfigMap, never this template.
    ...(usesReadAllowlistFile(vc) ? [{ name: 'VAULT_READ_ALLOWLIST_FILE', value: READ_ALLOWLIST_FILE }] : []),
    { name: 'VAULT_TRUST_PROXY', value: String(spec.trustProxy) },
    // Empty unless set: the server reads an empty value as unset.
    { name: 'VAULT_TRUSTED_PROXIES', value: spec.trustedProxies.join(',') },
    // After VAULT_NODE_ID: the pod's own names refer to it.
    { name: 'VAULT_API_HOSTNAMES', value: apiHostnames(name, ns, opts.clusterDomain).join(',') },
    // spec.audit, always rendered (defaults included): the pods never fall back to the server's statfs guess.
    ...auditEnv(spec.audit, spec.storage.size),
  );
  if (spec.tls) {
    env.push(
      { name: 'VAULT_TLS_CERT_FILE', value: `${TLS_MOUNT_PATH}/tls.crt` },
      { name: 'VAULT_TLS_KEY_FILE', value: `${TLS_MOUNT_PATH}/tls.key` },
    );
  }
  for (const ext of opts.podExtensions ?? []) {
    const drop = new Set(ext.removeEnv ?? []);
    for (let i = env.length - 1; i >= 0; i--) if (drop.has(env[i]!.name)) env.splice(i, 1);
    for (const e of ext.env ?? []) {
      const i = env.findIndex((x) => x.name === e.name);
      if (i >= 0) env[i] = e;
      else env.push(e);
    }
  }
  return env;
}

/** Builds every object the operator keeps in sync for this VaultCluster (Secrets aside, see secrets.ts). */
export function buildManifests(vc: VaultCluster, opts: BuildOptions): VaultClusterManifests {
  const { name } = vc.metadata;
  const namespace = namespaceOf(vc);
  const spec = vc.spec;
  const names = resourceNames(name);
  const labels = commonLabels(name);
  const selector = selectorLabels(name);
  const owners = ownerReferences(vc);
  const scheme = spec.tls ? 'HTTPS' : 'HTTP';

  const app = new App();
  const chart = new Chart(app, name, { namespace, disableResourceNameHashes: true });
  const meta = (objName: string, extra: { annotations?: Record<string, string> } = {}) => ({
    name: objName,
    namespace,
    labels,
    ...extra,
  });

  const serviceAccount = new kplus.ServiceAccount(chart, 'service-account', {
    metadata: meta(names.serviceAccount, { annotations: spec.serviceAccount.annotations }),
    automountToken: false,
  });

  const ports = [
    { port: API_PORT, targetPort: API_PORT, name: API_PORT_NAME, protocol: kplus.Protocol.TCP },
    { port: RAFT_PORT, targetPort: RAFT_PORT, name: RAFT_PORT_NAME, protocol: kplus.Protocol.TCP },
  ];
  // Pod DNS and Raft: resolvable before the pods are ready, or the first
  // election could never happen.
  const headless = new kplus.Service(chart, 'headless', {
    metadata: meta(names.headlessService),
    clusterIP: 'None',
    publishNotReadyAddresses: true,
    ports,
  });
  // Clients: ready pods only, API port only.
  new kplus.Service(chart, 'client', {
    metadata: meta(names.clientService),
    type: kplus.ServiceType.CLUSTER_IP,
    ports: [ports[0] as (typeof ports)[number]],
  });

  const sts = new kplus.StatefulSet(chart, 'statefulset', {
    metadata: meta(names.statefulSet),
    service: headless,
    select: false,
    replicas: spec.replicas,
    podManagementPolicy: kplus.PodManagementPolicy.PARALLEL,
    strategy: kplus.StatefulSetUpdateStrategy.rollingUpdate({ partition: 0 }),
    serviceAccount,
    automountServiceAccountToken: false,
    podMetadata: { labels, ...(opts.podAnnotations ? { annotations: opts.podAnnotations } : {}) },
    securityContext: {
      ensureNonRoot: true,
      user: RUN_AS_USER,
      group: RUN_AS_GROUP,
      fsGroup: RUN_AS_GROUP,
      fsGroupChangePolicy: kplus.FsGroupChangePolicy.ON_ROOT_MISMATCH,
    },
    containers: [
      {
        name: CONTAINER_NAME,
        image: opts.image ?? spec.image,
        imagePullPolicy: kplus.ImagePullPolicy.IF_NOT_PRESENT,
        args: [...SERVER_ARGS],
        ports: [
          { number: API_PORT, name: API_PORT_NAME, protocol: kplus.Protocol.TCP },
          { number: RAFT_PORT, name: RAFT_PORT_NAME, protocol: kplus.Protocol.TCP },
        ],
        securityContext: {
          ensureNonRoot: true,
          user: RUN_AS_USER,
          group: RUN_AS_GROUP,
          privileged: false,
          readOnlyRootFilesystem: true,
          allowPrivilegeEscalation: false,
        },
      },
    ],
  });
  sts.select(kplus.LabelSelector.of({ labels: selector }));

  new kplus.k8s.KubePodDisruptionBudget(chart, 'pdb', {
    metadata: meta(names.podDisruptionBudget),
    spec: {
      // The voter set's fault tolerance (3: 1, 5: 2, 7: 3; 1 for a single node so it can still be drained).
      maxUnavailable: kplus.k8s.IntOrString.fromNumber(opts.pdbMaxUnavailable ?? Math.max(1, Math.floor((spec.replicas - 1) / 2))),
      selector: { matchLabels: selector },
    },
  });

  // ---- overrides of cdk8s-plus defaults (see the header comment). They are
  // applied to the synthesized JSON, not with ApiObject.addJsonPatch: cdk8s
  // runs patched L1 output through its typed mappers again, which silently
  // drops plain strings where it expects IntOrString/Quantity objects.
  const patches = new Map<string, JsonPatch[]>();
  const patch = (kind: string, objName: string, ...ops: JsonPatch[]) => {
    patches.set(`${kind}/${objName}`, [...(patches.get(`${kind}/${objName}`) ?? []), ...ops]);
  };
  const pod = '/spec/template/spec';
  const vault = `${pod}/containers/0`;
  for (const svcName of [names.headlessService, names.clientService]) {
    patch('Service', svcName, JsonPatch.replace('/spec/selector', selector), JsonPatch.remove('/spec/externalIPs'));
  }
  const volumes: V1Volume[] = [
    // A writable /tmp on a read-only root filesystem.
    { name: TMP_VOLUME, emptyDir: { sizeLimit: '64Mi' } },
  ];
  const mounts = [
    { name: DATA_VOLUME, mountPath: DATA_MOUNT_PATH },
    { name: TMP_VOLUME, mountPath: TMP_MOUNT_PATH },
  ];
  if (spec.tls) {
    volumes.push({ name: TLS_VOLUME, secret: { secretName: spec.tls.secretName, defaultMode: 0o440 } });
    mounts.push({ name: TLS_VOLUME, mountPath: TLS_MOUNT_PATH, readOnly: true } as (typeof mounts)[number]);
  }
  if (usesReadAllowlistFile(vc)) {
    // A directory mount (not subPath): the kubelet swaps the ConfigMap's
    // `..data` link on every update, which a subPath mount would never see.
    volumes.push({ name: READ_ALLOWLIST_VOLUME, configMap: { name: names.readAllowlistConfigMap, defaultMode: 0o444, optional: false } });
    mounts.push({ name: READ_ALLOWLIST_VOLUME, mountPath: READ_ALLOWLIST_MOUNT_PATH, readOnly: true } as (typeof mounts)[number]);
  }
  // A directory mount (not subPath): a resize updates the ConfigMap in place.
  volumes.push({ name: MEMBERS_VOLUME, configMap: { name: names.membersConfigMap, defaultMode: 0o444, optional: false } });
  mounts.push({ name: MEMBERS_VOLUME, mountPath: MEMBERS_MOUNT_PATH, readOnly: true } as (typeof mounts)[number]);
  const extensions = opts.podExtensions ?? [];
  for (const ext of extensions) volumes.push(...(ext.volumes ?? []));
  const probe = (path: string, extra: Record<string, number>) => ({
    httpGet: { path, port: API_PORT_NAME, scheme },
    timeoutSeconds: 2,
    ...extra,
  });
  const claimRetention = {
    whenDeleted: spec.storage.deleteClaimsOnDelete ? 'Delete' : 'Retain',
    whenScaled: spec.storage.deleteClaimsOnScaleDown ? 'Delete' : 'Retain',
  };
  patch(
    'StatefulSet',
    names.statefulSet,
    JsonPatch.remove('/spec/template/metadata/labels/cdk8s.io~1metadata.addr'),
    JsonPatch.add('/spec/persistentVolumeClaimRetentionPolicy', claimRetention),
    JsonPatch.add('/spec/volumeClaimTemplates', [
      {
        apiVersion: 'v1',
        kind: 'PersistentVolumeClaim',
        metadata: { name: DATA_VOLUME, labels },
        spec: {
          accessModes: ['ReadWriteOnce'],
          resources: { requests: { storage: spec.storage.size } },
          ...(spec.storage.storageClassName !== undefined ? { storageClassName: spec.storage.storageClassName } : {}),
        },
      },
    ]),
    JsonPatch.add(`${pod}/enableServiceLinks`, false),
    JsonPatch.add(`${pod}/volumes`, volumes),
    JsonPatch.add(`${pod}/securityContext/seccompProfile`, { type: 'RuntimeDefault' }),
    JsonPatch.add(`${vault}/env`, serverEnv(vc, opts)),
    JsonPatch.add(`${vault}/volumeMounts`, mounts),
    JsonPatch.add(`${vault}/securityContext/capabilities`, { drop: ['ALL'] }),
    JsonPatch.add(`${vault}/securityContext/seccompProfile`, { type: 'RuntimeDefault' }),
    spec.resources && (spec.resources.limits || spec.resources.requests)
      ? JsonPatch.replace(`${vault}/resources`, spec.resources)
      : JsonPatch.remove(`${vault}/resources`),
    // Startup: up to 5 minutes to open a large raft log before liveness counts.
    JsonPatch.replace(`${vault}/startupProbe`, probe('/v1/health', { periodSeconds: 5, failureThreshold: 60 })),
    JsonPatch.add(`${vault}/livenessProbe`, probe('/v1/health', { periodSeconds: 10, failureThreshold: 6 })),
    JsonPatch.add(`${vault}/readinessProbe`, probe('/v1/ready', { periodSeconds: 5, failureThreshold: 3 })),
  );
  const extraContainers = extensions.flatMap((e) => e.containers ?? []);
  const extraInit = extensions.flatMap((e) => e.initContainers ?? []);
  extraContainers.forEach((c, i) => patch('StatefulSet', names.statefulSet, JsonPatch.add(`${pod}/containers/${i + 1}`, c)));
  if (extraInit.length > 0) patch('StatefulSet', names.statefulSet, JsonPatch.add(`${pod}/initContainers`, extraInit));

  // ---- plain objects, owned by the VaultCluster
  const byKind = new Map<string, Record<string, unknown>>();
  for (const synthesized of chart.toJson() as Record<string, unknown>[]) {
    const key = `${String(synthesized.kind)}/${String((synthesized.metadata as { name: unknown }).name)}`;
    const obj = JsonPatch.apply(synthesized, ...(patches.get(key) ?? [])) as Record<string, unknown>;
    patches.delete(key);
    if (owners.length > 0) (obj.metadata as Record<string, unknown>).ownerReferences = structuredClone(owners);
    byKind.set(key, obj);
  }
  if (patches.size > 0) throw new Error(`internal: patches for objects not in the chart: ${[...patches.keys()].join(', ')}`);
  const take = <T>(kind: string, objName: string): T => {
    const obj = byKind.get(`${kind}/${objName}`);
    if (!obj) throw new Error(`internal: ${kind} ${objName} missing from the chart`);
    return obj as T;
  };
  const out = {
    serviceAccount: take<V1ServiceAccount>('ServiceAccount', names.serviceAccount),
    headlessService: take<V1Service>('Service', names.headlessService),
    clientService: take<V1Service>('Service', names.clientService),
    statefulSet: take<V1StatefulSet>('StatefulSet', names.statefulSet),
    podDisruptionBudget: take<V1PodDisruptionBudget>('PodDisruptionBudget', names.podDisruptionBudget),
  };
  return {
    ...out,
    objects: [out.serviceAccount, out.headlessService, out.clientService, out.statefulSet, out.podDisruptionBudget],
  };
}
