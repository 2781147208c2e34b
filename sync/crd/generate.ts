// Generates the CofferSecret CustomResourceDefinition from sync/api/schema.ts
// with the VaultCluster CRD's builder (operator/crd/generate.ts).
//
//   npm run gen:crd        (writes crds/coffersecrets.coffer.dev.yaml too)
//   node dist/sync/crd/generate.js [--out FILE]   (stdout without --out)
//
// test/unit/sync/crd.test.ts checks the committed YAML against a fresh rendering.
import { pathToFileURL } from 'node:url';
import { buildCustomResourceDefinition, crdMain, crdYaml } from '../../operator/crd/generate.js';
import { DNS_SUBDOMAIN } from '../../operator/api/schema.js';
import {
  CRD_NAME, CofferSecretSchema, CofferSecretSpecSchema, CofferSecretStatusSchema, GROUP, KIND, LIST_KIND, PLURAL,
  PRINTER_COLUMNS, SHORT_NAMES, SINGULAR, VERSION,
} from '../api/schema.js';

/** Path of the generated file, relative to the repository root. */
export const CRD_FILE = `crds/${CRD_NAME}.yaml`;

export function buildCofferSecretCrd(): ReturnType<typeof buildCustomResourceDefinition> {
  return buildCustomResourceDefinition({
    group: GROUP, version: VERSION, kind: KIND, listKind: LIST_KIND, plural: PLURAL, singular: SINGULAR,
    shortNames: SHORT_NAMES, description: CofferSecretSchema.description ?? KIND,
    specSchema: CofferSecretSpecSchema, statusSchema: CofferSecretStatusSchema, printerColumns: PRINTER_COLUMNS,
    namePattern: DNS_SUBDOMAIN, nameMaxLength: 253,
  });
}

export function renderCofferSecretCrdYaml(): string {
  return crdYaml(buildCofferSecretCrd(), 'sync/crd/generate.ts', 'sync/api/schema.ts');
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  crdMain(process.argv.slice(2), renderCofferSecretCrdYaml());
}
