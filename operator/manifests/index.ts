// Manifests of a VaultCluster: names and labels, the objects built with
// cdk8s, and the Secrets generated once by the reconciler.
export * from './names.js';
export * from './secrets.js';
export * from './build.js';
export * from './read-allowlist.js';
export * from './members.js';
