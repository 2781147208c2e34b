// The WireGuard sidecar and the vault container's overlay environment, as a
// PodExtension for buildManifests (operator/manifests/build.ts).
//
// The sidecar runs `coffer wg-agent` from the same image as the vault
// container: the agent starts wireguard-go, configures the interface from
// the key Secret and the peer ConfigMap (mounted whole, so the kubelet
// updates them in place and the agent reloads them live), and answers
// /ready (the interface is up and configured) and /health on port 8203.
//
// Where the cluster supports it (Kubernetes 1.29+), the sidecar is a native
// sidecar: an init container with restartPolicy Always. Its startup probe
// then holds back the vault container until the overlay is up, so the
// server can bind Raft to its overlay address at start. On older clusters it
// is a plain second container; the server then fails to bind until the
// interface exists and the kubelet restarts it (slower start, same result).
//
// Privileges: runs as root (wireguard-go must create and configure a TUN
// interface) with exactly one capability, NET_ADMIN, and /dev/net/tun
// mounted from the host as a character device. Not privileged, no privilege
// escalation, read-only root filesystem; wireguard-go's UAPI socket and /tmp
// are small emptyDirs. The vault container gets none of these volumes.
//
// Vault container: VAULT_PEERS lists the overlay address of every ordinal
// the cluster was formed with (a pod added later by a resize finds its own in
// the members ConfigMap, which lists overlay addresses too), and
// VAULT_RAFT_ADDR/VAULT_RAFT_ADVERTISE are removed. A StatefulSet template
// cannot carry per-pod values, so the server derives its advertise address
// from its own VAULT_PEERS entry and, with VAULT_OVERLAY_CIDR set, listens
// for Raft on that overlay address only: VAULT_RAFT_ADVERTISE is, in effect,
// the pod's overlay address.
//
// Limitation: a running cluster cannot mix overlay and non-overlay pods.
// Turning spec.wireguard on or off, or changing its cidr, changes every
// node's Raft address; the StatefulSet rolls one pod at a time, and the
// first restarted pod cannot reach the others (nor they it). Decide at
// creation (see WIREGUARD.md).
import type { V1Container, V1EnvVar, V1Volume } from '@kubernetes/client-node';
import { parseCidr } from '../../common/ipv4.js';
import { overlayAddress } from '../api/overlay.js';
import type { VaultCluster } from '../api/types.js';
import type { PodExtension } from '../manifests/build.js';
import { MGMT_PORT, RAFT_PORT, podName, resourceNames } from '../manifests/names.js';

export const WIREGUARD_CONTAINER = 'wireguard';
/** Arguments of the sidecar; the image's entrypoint is `coffer`. */
export const AGENT_ARGS: readonly string[] = ['wg-agent'];
/** The agent's HTTP port: /ready and /health. */
export const AGENT_PORT = 8203;
export const AGENT_PORT_NAME = 'wg-agent';
export const WIREGUARD_PORT_NAME = 'wireguard';

export const KEYS_VOLUME = 'wireguard-keys';
export const KEYS_MOUNT_PATH = '/etc/coffer/wireguard/keys';
export const PEERS_VOLUME = 'wireguard-peers';
export const PEERS_MOUNT_PATH = '/etc/coffer/wireguard/peers';
export const TUN_VOLUME = 'wireguard-tun';
export const TUN_PATH = '/dev/net/tun';
export const RUN_VOLUME = 'wireguard-run';
/** wireguard-go's UAPI socket directory. */
export const RUN_MOUNT_PATH = '/var/run/wireguard';
export const WG_TMP_VOLUME = 'wireguard-tmp';

/** The agent's view of its pod: env var with the pod name (its key is `<pod name>.key`, its peer entry `name`). */
export const AGENT_NAME_ENV = 'COFFER_WG_NAME';

/** Env vars the overlay removes from the vault container (see the header). */
export const REMOVED_ENV: readonly string[] = ['VAULT_RAFT_ADDR', 'VAULT_RAFT_ADVERTISE'];

export interface SidecarOptions {
  /** Image of the vault container (the rollout's image); the sidecar runs the same one. */
  image: string;
  /** Native sidecar (init container, restartPolicy Always); false on clusters older than 1.29. Default true. */
  nativeSidecar?: boolean;
  /** Raft size the cluster was formed with: VAULT_PEERS lists these ordinals (see BuildOptions.formedMembers). Default spec.replicas. */
  formedMembers?: number;
}

/** VAULT_PEERS over the overlay: `<vc>-0=10.77.0.1:8201,…`. */
export function overlayPeersValue(name: string, cidr: string, replicas: number): string {
  const c = parseCidr(cidr);
  return Array.from({ length: replicas }, (_, i) => `${podName(name, i)}=${overlayAddress(c, i)}:${RAFT_PORT}`).join(',');
}

/** The env of the vault container that the overlay sets (replacing entries of the same name). */
export function overlayEnv(vc: VaultCluster, formedMembers: number = vc.spec.replicas): V1EnvVar[] {
  const wg = vc.spec.wireguard;
  const env: V1EnvVar[] = [
    { name: 'VAULT_PEERS', value: overlayPeersValue(vc.metadata.name, wg.cidr, formedMembers) },
    { name: 'VAULT_OVERLAY_CIDR', value: wg.cidr },
  ];
  // `overlay` is the server's word for "my overlay address" (the host of my VAULT_PEERS entry).
  if (wg.managementOnOverlay) env.push({ name: 'VAULT_MGMT_ADDR', value: `overlay:${MGMT_PORT}` });
  return env;
}

export function sidecarContainer(vc: VaultCluster, opts: SidecarOptions): V1Container {
  const native = opts.nativeSidecar ?? true;
  const probe = (path: string, extra: Record<string, number>) => ({
    httpGet: { path, port: AGENT_PORT_NAME, scheme: 'HTTP' },
    timeoutSeconds: 2,
    ...extra,
  });
  return {
    name: WIREGUARD_CONTAINER,
    image: opts.image,
    imagePullPolicy: 'IfNotPresent',
    args: [...AGENT_ARGS],
    ...(native ? { restartPolicy: 'Always' } : {}),
    env: [{ name: AGENT_NAME_ENV, valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } } }],
    ports: [
      { containerPort: vc.spec.wireguard.port, name: WIREGUARD_PORT_NAME, protocol: 'UDP' },
      { containerPort: AGENT_PORT, name: AGENT_PORT_NAME, protocol: 'TCP' },
    ],
    securityContext: {
      runAsUser: 0,
      runAsNonRoot: false,
      privileged: false,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'], add: ['NET_ADMIN'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    volumeMounts: [
      { name: KEYS_VOLUME, mountPath: KEYS_MOUNT_PATH, readOnly: true },
      { name: PEERS_VOLUME, mountPath: PEERS_MOUNT_PATH, readOnly: true },
      { name: TUN_VOLUME, mountPath: TUN_PATH },
      { name: RUN_VOLUME, mountPath: RUN_MOUNT_PATH },
      { name: WG_TMP_VOLUME, mountPath: '/tmp' },
    ],
    // Startup: the overlay must be up before the vault container starts
    // (native sidecars hold back the main containers until this passes).
    // No readiness probe: a sidecar's readiness counts towards the pod's, and
    // a transient agent state (a wireguard-go restart, a bad peers file while
    // the last good config keeps running) would take every pod out of the
    // client Service at once. The vault container's /v1/ready already fails
    // when Raft cannot reach the leader over the overlay.
    startupProbe: probe('/ready', { periodSeconds: 1, failureThreshold: 300 }),
    livenessProbe: probe('/health', { periodSeconds: 10, failureThreshold: 6 }),
    // wireguard-go plus the Node agent.
    resources: { requests: { cpu: '10m', memory: '48Mi' }, limits: { memory: '128Mi' } },
  };
}

export function sidecarVolumes(vc: VaultCluster): V1Volume[] {
  const names = resourceNames(vc.metadata.name);
  return [
    // Mounted whole (no subPath): the kubelet swaps in new keys and peers and the agent reloads them.
    { name: KEYS_VOLUME, secret: { secretName: names.wireguardKeysSecret, defaultMode: 0o400, optional: false } },
    { name: PEERS_VOLUME, configMap: { name: names.wireguardPeersConfigMap, defaultMode: 0o444, optional: false } },
    { name: TUN_VOLUME, hostPath: { path: TUN_PATH, type: 'CharDevice' } },
    { name: RUN_VOLUME, emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } },
    { name: WG_TMP_VOLUME, emptyDir: { sizeLimit: '16Mi' } },
  ];
}

/** The whole overlay as a PodExtension; none when spec.wireguard.enabled is false. */
export function wireguardPodExtension(vc: VaultCluster, opts: SidecarOptions): PodExtension | undefined {
  if (!vc.spec.wireguard.enabled) return undefined;
  const sidecar = sidecarContainer(vc, opts);
  return {
    ...((opts.nativeSidecar ?? true) ? { initContainers: [sidecar] } : { containers: [sidecar] }),
    volumes: sidecarVolumes(vc),
    env: overlayEnv(vc, opts.formedMembers),
    removeEnv: [...REMOVED_ENV],
  };
}
