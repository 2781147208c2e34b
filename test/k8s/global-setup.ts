// Runs once before the test:k8s files: builds (or finds cached) etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler and kwok with
// test/k8s/tools/build.sh. A failed build throws, so the tier fails instead of
// skipping. The first build takes a long time (tens of minutes on 2 cores).
import { binDir, buildBinaries, pinnedVersions } from './harness/binaries.js';

export default async function setup(): Promise<void> {
  const started = Date.now();
  const log = (line: string) => console.log(`[test:k8s] ${line}`);
  log(`control-plane binaries (${pinnedVersions()}) in ${binDir()}`);
  await buildBinaries(log);
  log(`binaries ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}
