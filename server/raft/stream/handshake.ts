// Opening a Raft stream: an HTTP/1.1 upgrade on the Raft listener, signed like
// every other Raft request (cluster-auth.ts: MAC, clock window, nonce, `?to=`).
//
//   sender → GET /raft/v1/stream?to=<receiver>   Upgrade: coffer-raft-v1
//            x-coffer-capabilities + the auth headers, no body
//   receiver → 101 Switching Protocols
//            x-coffer-node, x-coffer-stream-nonce (fresh), x-coffer-capabilities,
//            x-coffer-mac = reply MAC over the sender's nonce, 101 and
//            "<stream nonce>\n<capabilities>"
//
// Both ends then derive the stream key from the key that verified the
// handshake, both ids and both nonces (ClusterAuth.streamKey), and the sender
// writes frames (frames.ts). The stream carries messages one way only: each
// node opens its own stream to each peer. A member from before streams
// answers the upgrade as a plain request (404, signed), and the sender falls
// back to one HTTP request per batch.
import type { ClusterAuth, KeySlot, RequestHeaders } from '../cluster-auth.js';
import { AuthRefusal, isNonceText } from '../cluster-auth.js';

export const STREAM_PATH = '/raft/v1/stream';
export const STREAM_PROTOCOL = 'coffer-raft-v1';
export const STREAM_NONCE_HEADER = 'x-coffer-stream-nonce';

/** What the 101's MAC covers besides the status: the receiver's nonce and capabilities. */
export function acceptBody(receiverNonce: string, capabilities: string): Buffer {
  return Buffer.from(`${receiverNonce}\n${capabilities}`);
}

/**
 * The sender's check of the receiver's 101: a member's MAC over our nonce,
 * a well-formed stream nonce. Returns the stream key and the receiver's
 * capabilities. Throws AuthRefusal otherwise.
 */
export function acceptedStream(
  auth: ClusterAuth,
  receiver: string,
  senderNonce: string,
  headers: RequestHeaders,
): { key: Buffer; capabilities: string[] } {
  const receiverNonce = headers[STREAM_NONCE_HEADER];
  const caps = headers['x-coffer-capabilities'] ?? '';
  if (typeof receiverNonce !== 'string' || !isNonceText(receiverNonce) || typeof caps !== 'string') {
    throw new AuthRefusal('malformed', `stream accept from ${receiver} lacks a well-formed stream nonce`);
  }
  const slot: KeySlot = auth.verifyResponse(receiver, senderNonce, 101, headers, acceptBody(receiverNonce, caps));
  return { key: auth.streamKey(slot, auth.nodeId, receiver, senderNonce, receiverNonce), capabilities: caps.split(',').filter(Boolean) };
}
