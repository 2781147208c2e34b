// Which release an image is.
//
// The gate of a rollout (DESIGN §6) waits until every pod's /v1/health
// reports "the release". The server reports `version` (its package.json
// version, or COFFER_RELEASE). The operator learns the release of an image
// from the image reference itself: the tag IS the release.
//
//   registry.example/coffer:0.1.0                 -> 0.1.0
//   registry.example/coffer:v0.1.0                -> 0.1.0   (one leading "v" is dropped)
//   registry.example:5000/coffer:0.2.0-rc.1@sha256:… -> 0.2.0-rc.1 (a digest may follow the tag)
//   registry.example/coffer@sha256:…              -> unknown (no tag)
//   registry.example/coffer, …/coffer:latest      -> unknown
//
// Why the tag and not a status-recorded expectation: the release must be
// known before any pod runs the image (the rollout decides on it), it must
// survive an operator restart without extra state, and release images are
// published as <registry>/coffer:<package.json version>. When the release is
// unknown (no tag, `latest`, or a digest only), the gate cannot compare
// against an expected value; it then requires every pod to report one and
// the same version, so at least no pod runs a different build than the rest.
// Publish images with their version as the tag to get the exact check.

/** The tag of an image reference, or undefined when it has none. */
export function imageTag(image: string): string | undefined {
  const noDigest = image.split('@', 1)[0] ?? image;
  const lastSlash = noDigest.lastIndexOf('/');
  const lastPart = noDigest.slice(lastSlash + 1);
  const colon = lastPart.lastIndexOf(':');
  if (colon < 0) return undefined;
  const tag = lastPart.slice(colon + 1);
  return tag === '' ? undefined : tag;
}

/** The release an image runs (see the header), or null when the image does not say. */
export function releaseOfImage(image: string): string | null {
  const tag = imageTag(image);
  if (tag === undefined || tag === 'latest') return null;
  return normalizeRelease(tag);
}

/** `v1.2.3` and `1.2.3` are the same release. */
export function normalizeRelease(version: string): string {
  return /^v\d/.test(version) ? version.slice(1) : version;
}
