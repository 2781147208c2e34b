// The peer ConfigMap `<vc>-wireguard-peers`, key `peers.json`: what every
// agent needs to know about every pod, public keys only.
//
//   {"version":1,"listenPort":51820,"cidr":"10.77.0.0/24","peers":[
//     {"name":"vault-0","publicKey":"<44 chars>","address":"10.77.0.1",
//      "endpoint":"vault-0.vault-headless.ns.svc:51820"}, …]}
//
// It is derived from the key Secret on every reconcile (public key = X25519
// of the stored private key), so it cannot drift from it, and follows
// spec.replicas. Applied with server-side apply like the other owned objects.
import type { V1ConfigMap } from '@kubernetes/client-node';
import { parseCidr } from '../../common/ipv4.js';
import { overlayAddress } from '../api/overlay.js';
import type { VaultCluster } from '../api/types.js';
import { ownedConfigMap } from '../manifests/config-map.js';
import { namespaceOf, podName, raftHost, resourceNames } from '../manifests/names.js';
import { publicKeyOf } from './keys.js';

export const PEERS_KEY = 'peers.json';
export const PEERS_FORMAT_VERSION = 1;
export const PEERS_COMPONENT = 'wireguard-peers';

export interface Peer {
  name: string;
  publicKey: string;
  address: string;
  endpoint: string;
}

export interface PeersDocument {
  version: number;
  listenPort: number;
  cidr: string;
  peers: Peer[];
}

/** peers.json for these public keys (index = ordinal). */
export function peersDocument(vc: VaultCluster, publicKeys: readonly string[], clusterDomain?: string): PeersDocument {
  const { name } = vc.metadata;
  const ns = namespaceOf(vc);
  const wg = vc.spec.wireguard;
  const cidr = parseCidr(wg.cidr);
  return {
    version: PEERS_FORMAT_VERSION,
    listenPort: wg.port,
    cidr: wg.cidr,
    peers: publicKeys.map((publicKey, i) => ({
      name: podName(name, i),
      publicKey,
      address: overlayAddress(cidr, i),
      endpoint: `${raftHost(name, ns, i, clusterDomain)}:${wg.port}`,
    })),
  };
}

/** The ConfigMap for these private keys (index = ordinal); only their public keys go in. */
export function peersConfigMap(vc: VaultCluster, privateKeys: readonly string[], clusterDomain?: string): V1ConfigMap {
  const doc = peersDocument(vc, privateKeys.map(publicKeyOf), clusterDomain);
  return ownedConfigMap(vc, resourceNames(vc.metadata.name).wireguardPeersConfigMap, PEERS_COMPONENT, {
    [PEERS_KEY]: JSON.stringify(doc, null, 2) + '\n',
  });
}
