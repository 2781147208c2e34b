import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { CRD_FILE, buildCrd, renderCrdYaml } from '../../../operator/crd/generate.js';

const ROOT = new URL('../../../', import.meta.url);

type Node = Record<string, unknown>;

/** Every schema node with its path, depth first. */
function* walk(node: Node, path: string): Generator<[string, Node]> {
  yield [path, node];
  for (const [name, child] of Object.entries((node.properties as Record<string, Node> | undefined) ?? {})) {
    yield* walk(child, `${path}.${name}`);
  }
  if (typeof node.items === 'object' && node.items !== null) yield* walk(node.items as Node, `${path}[]`);
  if (typeof node.additionalProperties === 'object' && node.additionalProperties !== null) {
    yield* walk(node.additionalProperties as Node, `${path}{}`);
  }
}

function at(schema: Node, path: string): Node {
  let node = schema;
  for (const seg of path.split('.')) node = (node.properties as Record<string, Node>)[seg] as Node;
  return node;
}

const crd = parse(readFileSync(new URL(CRD_FILE, ROOT), 'utf8')) as Node;
const version = ((crd.spec as Node).versions as Node[])[0] as Node;
const schema = (version.schema as Node).openAPIV3Schema as Node;

describe('VaultCluster CRD', () => {
  it('is exactly what the generator produces from the schema (no drift: run npm run gen:crd)', () => {
    expect(readFileSync(new URL(CRD_FILE, ROOT), 'utf8')).toBe(renderCrdYaml());
    expect(crd).toEqual(buildCrd());
  });

  it('names the resource per DESIGN §6', () => {
    expect(crd.apiVersion).toBe('apiextensions.k8s.io/v1');
    expect(crd.kind).toBe('CustomResourceDefinition');
    expect((crd.metadata as Node).name).toBe('vaultclusters.coffer.dev');
    const spec = crd.spec as Node;
    expect(spec.group).toBe('coffer.dev');
    expect(spec.scope).toBe('Namespaced');
    expect(spec.names).toMatchObject({ kind: 'VaultCluster', plural: 'vaultclusters', singular: 'vaultcluster', shortNames: ['vc'] });
    expect(version).toMatchObject({ name: 'v1alpha1', served: true, storage: true, subresources: { status: {} } });
  });

  it('has the printer columns: replicas, members, ready, leader, phase, resize (wide), age', () => {
    const cols = version.additionalPrinterColumns as Node[];
    expect(cols.map((c) => [c.name, c.jsonPath])).toEqual([
      ['Replicas', '.spec.replicas'],
      ['Members', '.status.members'],
      ['Ready', '.status.readyReplicas'],
      ['Leader', '.status.leader'],
      ['Phase', '.status.rollout.phase'],
      ['Resize', '.status.resize.phase'],
      ['Age', '.metadata.creationTimestamp'],
    ]);
    expect(cols.find((c) => c.name === 'Age')?.type).toBe('date');
  });

  it('is a structural schema', () => {
    const forbidden = ['$id', '$schema', '$ref', 'definitions', 'patternProperties', 'const', 'additionalItems', 'dependencies', 'errorMessage', 'oneOf', 'allOf', 'not'];
    for (const [path, node] of walk(schema, '')) {
      for (const key of forbidden) expect(node, `${path} has ${key}`).not.toHaveProperty(key);
      if (node['x-kubernetes-int-or-string'] === true) {
        expect(node.type, path).toBeUndefined();
        expect(node.anyOf, path).toEqual([{ type: 'integer' }, { type: 'string' }]);
      } else {
        expect(['object', 'array', 'string', 'integer', 'number', 'boolean'], `${path} type`).toContain(node.type);
      }
      expect(typeof node.additionalProperties === 'boolean', `${path} additionalProperties boolean`).toBe(false);
      if (node.properties !== undefined) expect(node.additionalProperties, `${path} properties+additionalProperties`).toBeUndefined();
      if (node.type === 'array') expect(node.items, path).toBeDefined();
      // Defaulted fields are not required (the API server defaults before it validates).
      for (const req of (node.required as string[] | undefined) ?? []) {
        const child = (node.properties as Record<string, Node>)[req];
        expect(child, `${path}.${req} required but not a property`).toBeDefined();
        expect(child, `${path}.${req} required and defaulted`).not.toHaveProperty('default');
      }
    }
    // metadata may only restrict the name.
    expect(Object.keys(at(schema, 'metadata').properties as Node)).toEqual(['name']);
  });

  it('validates replicas, CIDRs and key references, with defaults', () => {
    expect(at(schema, 'spec.replicas')).toMatchObject({ type: 'integer', enum: [1, 3, 5, 7], default: 3 });
    expect(schema.required).toEqual(['spec']);
    expect(at(schema, 'spec').required).toEqual(['image']);
    const allow = at(schema, 'spec.readAllowlist');
    expect(allow).toMatchObject({ type: 'array', default: [] });
    const re = new RegExp((allow.items as Node).pattern as string);
    expect(re.test('10.0.0.0/8')).toBe(true);
    expect(re.test('10.0.0.0/33')).toBe(false);
    const proxies = at(schema, 'spec.trustedProxies');
    expect(proxies).toMatchObject({ type: 'array', default: [], maxItems: 64, items: { type: 'string', pattern: (allow.items as Node).pattern } });
    expect(at(schema, 'spec.trustProxy')).toMatchObject({ type: 'boolean', default: false });
    expect(at(schema, 'spec.wireguard')).toMatchObject({ default: {} });
    expect(at(schema, 'spec.wireguard.cidr')).toMatchObject({ type: 'string', default: '10.77.0.0/24' });
    expect(at(schema, 'spec.wireguard.keyGeneration')).toMatchObject({ type: 'integer', default: 1, minimum: 1 });
    expect(at(schema, 'spec.wireguard.managementOnOverlay')).toMatchObject({ type: 'boolean', default: false });
    expect(at(schema, 'spec.kms.mode')).toMatchObject({ type: 'string', enum: ['aws', 'local'] });
    expect(at(schema, 'spec.kms.rewrap.pollSecs')).toMatchObject({ type: 'integer', default: 86_400 });
    expect(at(schema, 'spec.bootstrap.tokenSecretRef').required).toEqual(['name', 'key']);
    expect(at(schema, 'spec.kms.localMasterKeySecretRef').required).toEqual(['name', 'key']);
    expect(at(schema, 'spec.storage')).toMatchObject({ default: {} });
    expect(at(schema, 'spec.storage.deleteClaimsOnScaleDown')).toMatchObject({ type: 'boolean', default: false });
    expect(at(schema, 'spec.serviceAccount.annotations')).toMatchObject({ type: 'object', additionalProperties: { type: 'string' } });
    const limits = at(schema, 'spec.resources.limits').additionalProperties as Node;
    expect(limits).toMatchObject({ 'x-kubernetes-int-or-string': true });
  });

  it('carries the cross-field rules as CEL', () => {
    const kmsRules = at(schema, 'spec.kms')['x-kubernetes-validations'] as Node[];
    expect(kmsRules).toContainEqual({
      rule: "self.mode != 'aws' || (has(self.keyId) && size(self.keyId) > 0)",
      message: 'kms.keyId is required when kms.mode is aws',
    });
    const storageRules = at(schema, 'spec.storage')['x-kubernetes-validations'] as Node[];
    expect(storageRules.map((r) => r.rule)).toContain('self.size == oldSelf.size');
    expect(at(schema, 'spec')['x-kubernetes-validations']).toEqual([
      {
        rule: '!self.trustProxy || (has(self.trustedProxies) && size(self.trustedProxies) > 0)',
        message: 'trustedProxies is required when trustProxy is true: list the addresses or CIDRs of the proxies whose X-Forwarded-For is believed',
        fieldPath: '.trustedProxies',
        reason: 'FieldValueRequired',
      },
    ]);
    const wgRules = at(schema, 'spec.wireguard')['x-kubernetes-validations'] as Node[];
    expect(wgRules.map((r) => r.rule)).toEqual(['self.keyGeneration >= oldSelf.keyGeneration']);
  });

  it('describes the status, with conditions as a map list keyed by type', () => {
    const status = at(schema, 'status');
    expect(Object.keys(status.properties as Node)).toEqual(['observedGeneration', 'readyReplicas', 'members', 'leader', 'rollout', 'resize', 'wireguard', 'conditions']);
    expect(at(schema, 'status.members')).toMatchObject({ type: 'integer', minimum: 1 });
    expect(at(schema, 'status.wireguard.step').enum).toEqual(['ReplacingKey', 'RestartingPod']);
    expect(at(schema, 'status.wireguard').required).toEqual(['keyGeneration']);
    expect(at(schema, 'status.rollout.phase').enum).toEqual(['Idle', 'RollingOutFlagOff', 'WaitingForGate', 'EnablingFlag', 'RollingOutFlagOn', 'Complete']);
    const conditions = at(schema, 'status.conditions');
    expect(conditions).toMatchObject({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'] });
    expect((conditions.items as Node).required).toEqual(['type', 'status', 'lastTransitionTime', 'reason', 'message']);
  });
});
