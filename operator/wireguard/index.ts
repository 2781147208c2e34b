// The operator side of the WireGuard overlay: key pairs (keys.ts), the key
// Secret (secret.ts), the peer ConfigMap (peers.ts), the sidecar PodExtension
// (sidecar.ts) and the pure key rotation state machine (rotation.ts). Which
// address each pod gets is the API's (../api/overlay.ts).
export * from './keys.js';
export * from './secret.js';
export * from './peers.js';
export * from './sidecar.js';
export * from './rotation.js';
