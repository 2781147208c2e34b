import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { DATA_RULES, VAULT_REF_RULES } from '../../../sync/api/schema.js';
import { CRD_FILE, buildCofferSecretCrd, renderCofferSecretCrdYaml } from '../../../sync/crd/generate.js';

const ROOT = new URL('../../../', import.meta.url);
type Node = Record<string, unknown>;

const crd = parse(readFileSync(new URL(CRD_FILE, ROOT), 'utf8')) as Node;
const version = ((crd.spec as Node).versions as Node[])[0] as Node;
const schema = (version.schema as Node).openAPIV3Schema as Node;
const spec = (schema.properties as Record<string, Node>).spec as Node;
const prop = (n: Node, k: string) => (n.properties as Record<string, Node>)[k] as Node;

describe('CofferSecret CRD', () => {
  it('is exactly what the generator produces from the schema (no drift: run npm run gen:crd)', () => {
    expect(readFileSync(new URL(CRD_FILE, ROOT), 'utf8')).toBe(renderCofferSecretCrdYaml());
    expect(crd).toEqual(buildCofferSecretCrd());
  });

  it('names the resource, has a status subresource and the printer columns', () => {
    expect((crd.metadata as Node).name).toBe('coffersecrets.coffer.dev');
    expect((crd.spec as Node).names).toMatchObject({ kind: 'CofferSecret', plural: 'coffersecrets', shortNames: ['csec'] });
    expect(version.subresources).toEqual({ status: {} });
    expect((version.additionalPrinterColumns as Node[]).map((c) => c.name)).toEqual(['Ready', 'Reason', 'Synced', 'Age']);
  });

  it('carries the cross-field rules as CEL and the defaults', () => {
    expect((prop(spec, 'vaultRef')['x-kubernetes-validations'] as Node[]).map((r) => r.rule)).toEqual(VAULT_REF_RULES.map((r) => r.rule));
    expect((prop(spec, 'data')['x-kubernetes-validations'] as Node[]).map((r) => r.rule)).toEqual(DATA_RULES.map((r) => r.rule));
    expect(prop(spec, 'refreshInterval').default).toBe('5m');
    expect(prop(spec, 'target').default).toEqual({ type: 'Opaque' });
    expect(prop(prop(spec, 'tokenSecretRef'), 'key').default).toBe('token');
    expect(spec.required).toEqual(['vaultRef', 'tokenSecretRef', 'data']);
  });
});
