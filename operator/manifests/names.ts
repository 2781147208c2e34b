// Names, labels and fixed numbers of everything the operator creates for a
// VaultCluster. Names and selector labels are part of the upgrade contract:
// a StatefulSet's selector and serviceName cannot change, and PVCs are found
// by name, so nothing here may depend on the spec or on the release.
import { API_VERSION, KIND } from '../api/schema.js';
import type { VaultCluster } from '../api/types.js';

export const API_PORT = 8200;
export const RAFT_PORT = 8201;
/** Management listener on the overlay address (spec.wireguard.managementOnOverlay). */
export const MGMT_PORT = 8202;
export const API_PORT_NAME = 'api';
export const RAFT_PORT_NAME = 'raft';

/**
 * Arguments of the vault container. The image's entrypoint is the `coffer`
 * executable (DESIGN §2), so the container runs `coffer server`.
 */
export const SERVER_ARGS: readonly string[] = ['server'];

/** Name of the vault container in the pod (the WireGuard sidecar sits beside it). */
export const CONTAINER_NAME = 'vault';
/** Volume claim template name; PVCs are `data-<name>-<ordinal>`. */
export const DATA_VOLUME = 'data';
export const DATA_MOUNT_PATH = '/var/lib/coffer';
export const TMP_VOLUME = 'tmp';
export const TMP_MOUNT_PATH = '/tmp';
export const TLS_VOLUME = 'tls';
export const TLS_MOUNT_PATH = '/etc/coffer/tls';
/** The read-allowlist ConfigMap, mounted as a directory (not subPath) so the kubelet's updates reach the pod. */
export const READ_ALLOWLIST_VOLUME = 'read-allowlist';
export const READ_ALLOWLIST_MOUNT_PATH = '/etc/coffer/read-allowlist';
/** Key of the read-allowlist ConfigMap: one address or CIDR per line, sorted. */
export const READ_ALLOWLIST_KEY = 'allowlist';
/** VAULT_READ_ALLOWLIST_FILE of the vault container. */
export const READ_ALLOWLIST_FILE = `${READ_ALLOWLIST_MOUNT_PATH}/${READ_ALLOWLIST_KEY}`;

/** The members ConfigMap (the declared Raft members the leader's autopilot reads), mounted as a directory. */
export const MEMBERS_VOLUME = 'members';
export const MEMBERS_MOUNT_PATH = '/etc/coffer/members';
/** Key of the members ConfigMap: one `id=host:port` per line, in ordinal order. */
export const MEMBERS_KEY = 'members';
/** VAULT_MEMBERS_FILE of the vault container. */
export const MEMBERS_FILE = `${MEMBERS_MOUNT_PATH}/${MEMBERS_KEY}`;

/** UID/GID the server runs as (non-root); also the fsGroup that owns the data volume. */
export const RUN_AS_USER = 10_001;
export const RUN_AS_GROUP = 10_001;

export const LABEL_NAME = 'app.kubernetes.io/name';
export const LABEL_INSTANCE = 'app.kubernetes.io/instance';
export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by';
export const LABEL_COMPONENT = 'app.kubernetes.io/component';
export const APP_NAME = 'coffer';
export const MANAGED_BY = 'coffer-operator';

/**
 * Object names for a VaultCluster called `<name>`:
 *
 * | object | name |
 * |---|---|
 * | ServiceAccount | `<name>` |
 * | StatefulSet | `<name>` (pods `<name>-0` … `<name>-N-1`) |
 * | headless Service (Raft, pod DNS) | `<name>-headless` |
 * | client Service (API) | `<name>-client` |
 * | PodDisruptionBudget | `<name>` |
 * | PVCs | `data-<name>-<ordinal>` |
 * | generated bootstrap-token Secret | `<name>-bootstrap-token`, key `token` |
 * | generated local master-key Secret | `<name>-master-key`, key `master-key` |
 * | generated cluster-key Secret | `<name>-cluster-key`, key `cluster-key` |
 * | WireGuard key Secret | `<name>-wireguard-keys`, key `<pod name>.key` per pod |
 * | WireGuard peer ConfigMap | `<name>-wireguard-peers`, key `peers.json` |
 * | read-allowlist ConfigMap | `<name>-read-allowlist`, key `allowlist` |
 * | members ConfigMap | `<name>-members`, key `members` |
 */
export interface ResourceNames {
  serviceAccount: string;
  statefulSet: string;
  headlessService: string;
  clientService: string;
  podDisruptionBudget: string;
  bootstrapTokenSecret: string;
  masterKeySecret: string;
  clusterKeySecret: string;
  wireguardKeysSecret: string;
  wireguardPeersConfigMap: string;
  readAllowlistConfigMap: string;
  membersConfigMap: string;
}

export function resourceNames(name: string): ResourceNames {
  return {
    serviceAccount: name,
    statefulSet: name,
    headlessService: `${name}-headless`,
    clientService: `${name}-client`,
    podDisruptionBudget: name,
    bootstrapTokenSecret: `${name}-bootstrap-token`,
    masterKeySecret: `${name}-master-key`,
    clusterKeySecret: `${name}-cluster-key`,
    wireguardKeysSecret: `${name}-wireguard-keys`,
    wireguardPeersConfigMap: `${name}-wireguard-peers`,
    readAllowlistConfigMap: `${name}-read-allowlist`,
    membersConfigMap: `${name}-members`,
  };
}

export const BOOTSTRAP_TOKEN_KEY = 'token';
export const MASTER_KEY_KEY = 'master-key';
export const CLUSTER_KEY_KEY = 'cluster-key';

/** Namespace of the VaultCluster (`default` when a file for `render` names none). */
export function namespaceOf(vc: VaultCluster): string {
  return vc.metadata.namespace ?? 'default';
}

/** Pod name of one ordinal; also the node's VAULT_NODE_ID. */
export function podName(name: string, ordinal: number): string {
  return `${name}-${ordinal}`;
}

/** PVC name of one ordinal. */
export function claimName(name: string, ordinal: number): string {
  return `${DATA_VOLUME}-${podName(name, ordinal)}`;
}

/**
 * The pod selector. Never add to it: a StatefulSet's selector is immutable
 * and PodDisruptionBudgets and Services must keep matching old pods.
 */
export function selectorLabels(name: string): Record<string, string> {
  return { [LABEL_NAME]: APP_NAME, [LABEL_INSTANCE]: name };
}

/** Labels on every object the operator creates. */
export function commonLabels(name: string): Record<string, string> {
  return { ...selectorLabels(name), [LABEL_MANAGED_BY]: MANAGED_BY };
}

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller: boolean;
  blockOwnerDeletion: boolean;
}

/** The controller owner reference to the VaultCluster, or none when its uid is unknown (render). */
export function ownerReferences(vc: VaultCluster): OwnerReference[] {
  const uid = vc.metadata.uid;
  if (uid === undefined || uid === '') return [];
  return [{ apiVersion: API_VERSION, kind: KIND, name: vc.metadata.name, uid, controller: true, blockOwnerDeletion: true }];
}

/** Cluster DNS domain when the operator is given none (--cluster-domain). */
export const DEFAULT_CLUSTER_DOMAIN = 'cluster.local';

/**
 * VAULT_API_HOSTNAMES: every DNS name a client in the cluster can reach a
 * vault pod's API by, so the server's Host check (DNS-rebinding defence)
 * answers them and nothing else besides IP literals and localhost. Each
 * Service is named the four ways the resolver's search path allows
 * (`<svc>`, `<svc>.<ns>`, `<svc>.<ns>.svc`, `<svc>.<ns>.svc.<domain>`), and so
 * is the pod's own record under the headless Service, written with
 * `$(VAULT_NODE_ID)`: Kubernetes expands it in the pod (VAULT_NODE_ID comes
 * first in the env list), so each pod answers only to its own names and the
 * value does not grow with the replica count. Were the reference ever left
 * unexpanded, the server would refuse the name at start instead of serving
 * under a wrong list.
 */
export function apiHostnames(name: string, namespace: string, clusterDomain?: string): string[] {
  const domain = clusterDomain || DEFAULT_CLUSTER_DOMAIN;
  const { clientService, headlessService } = resourceNames(name);
  const forms = (base: string) => [base, `${base}.${namespace}`, `${base}.${namespace}.svc`, `${base}.${namespace}.svc.${domain}`];
  return [...forms(clientService), ...forms(headlessService), ...forms(`$(VAULT_NODE_ID).${headlessService}`)];
}

/** Raft address of one ordinal, through the headless Service. */
export function raftHost(name: string, namespace: string, ordinal: number, clusterDomain?: string): string {
  const svc = clusterDomain ? `svc.${clusterDomain}` : 'svc';
  return `${podName(name, ordinal)}.${resourceNames(name).headlessService}.${namespace}.${svc}`;
}

/** Every ordinal below `replicas` as `id=host:port` (its Raft address through the headless Service), in ordinal order. */
export function peerEntries(name: string, namespace: string, replicas: number, clusterDomain?: string): string[] {
  const peers: string[] = [];
  for (let i = 0; i < replicas; i++) {
    peers.push(`${podName(name, i)}=${raftHost(name, namespace, i, clusterDomain)}:${RAFT_PORT}`);
  }
  return peers;
}

/** VAULT_PEERS: every ordinal as `id=host:port`, in ordinal order. */
export function peersValue(name: string, namespace: string, replicas: number, clusterDomain?: string): string {
  return peerEntries(name, namespace, replicas, clusterDomain).join(',');
}
