// The cluster key a node signs and checks its Raft traffic with.
import { randomBytes } from 'node:crypto';
import type { ServerConfig } from '../config/config.js';
import type { Logger } from '../log/logger.js';
import { ClusterAuth, KEY_BYTES } from '../raft/cluster-auth.js';

/**
 * Signs and checks Raft traffic with VAULT_CLUSTER_KEY (and accepts
 * VAULT_CLUSTER_KEY_PREVIOUS). A lone node without one gets a random key for
 * this run: its Raft listener then refuses everyone, which is right for a
 * node nobody may join (config refuses a missing key when VAULT_PEERS lists others).
 */
export function raftAuth(config: ServerConfig, logger: Logger): ClusterAuth {
  if (config.clusterKey) return new ClusterAuth({ nodeId: config.nodeId, key: config.clusterKey, previous: config.clusterKeyPrevious });
  const ephemeral = randomBytes(KEY_BYTES);
  const auth = new ClusterAuth({ nodeId: config.nodeId, key: ephemeral });
  ephemeral.fill(0); // ClusterAuth keeps its own copy, zeroed on close
  logger.warn('Raft traffic is authenticated with an ephemeral cluster key: no other node can join this one until VAULT_CLUSTER_KEY is set (base64 of 32 bytes, the same on every node)');
  return auth;
}
