// Generates the VaultCluster CustomResourceDefinition from operator/api/schema.ts.
//
//   npm run gen:crd        (writes crds/vaultclusters.coffer.dev.yaml)
//   node dist/operator/crd/generate.js [--out FILE]   (stdout without --out)
//
// The committed YAML is checked against a fresh rendering by a unit test, so
// it can never drift from the schema the operator validates with.
import { renameSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { stringify } from 'yaml';
import { Value } from '@sinclair/typebox/value';
import {
  CRD_NAME, GROUP, KIND, LIST_KIND, MAX_NAME_LENGTH, DNS_LABEL, PLURAL, PRINTER_COLUMNS,
  SHORT_NAMES, SINGULAR, VERSION, VaultClusterSchema, VaultClusterSpecSchema, VaultClusterStatusSchema, type TSchema,
} from '../api/schema.js';

/** Path of the generated file, relative to the repository root. */
export const CRD_FILE = `crds/${CRD_NAME}.yaml`;

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

/**
 * Keywords that only the runtime validator understands, or that Kubernetes
 * rejects in a CRD schema.
 */
const DROPPED = new Set(['$id', '$schema', 'errorMessage', 'patternProperties', 'const', 'anyOf']);

/** Order keys so the YAML reads naturally; unknown keys follow, alphabetically. */
const KEY_ORDER = [
  'description', 'type', 'format', 'enum', 'default', 'minimum', 'maximum', 'minLength', 'maxLength',
  'pattern', 'minItems', 'maxItems', 'anyOf', 'x-kubernetes-int-or-string', 'items', 'properties',
  'additionalProperties', 'required', 'x-kubernetes-list-type', 'x-kubernetes-list-map-keys', 'x-kubernetes-validations',
];

function ordered(obj: JsonObject): JsonObject {
  const keys = Object.keys(obj).sort((a, b) => {
    const ia = KEY_ORDER.indexOf(a);
    const ib = KEY_ORDER.indexOf(b);
    if (ia !== -1 || ib !== -1) return (ia === -1 ? Infinity : ia) - (ib === -1 ? Infinity : ib);
    return a < b ? -1 : a > b ? 1 : 0;
  });
  const out: JsonObject = {};
  for (const k of keys) out[k] = obj[k] as Json;
  return out;
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Translates one TypeBox (JSON Schema) node into a Kubernetes structural
 * schema node: every node typed, literal unions as `enum`, records as
 * `additionalProperties`, int-or-string quantities marked as such, defaulted
 * properties not `required`, and no `additionalProperties: false` (the API
 * server prunes unknown fields; the operator's validator reports them).
 */
export function toStructural(input: TSchema): JsonObject {
  // JSON round trip drops TypeBox's symbol keys and any function values.
  const node = JSON.parse(JSON.stringify(input)) as JsonObject;
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(node)) {
    if (DROPPED.has(k)) continue;
    if (k === 'additionalProperties' && typeof v === 'boolean') continue;
    out[k] = v;
  }

  const anyOf = node.anyOf;
  if (Array.isArray(anyOf)) {
    const branches = anyOf.filter(isObject);
    if (branches.length > 0 && branches.every((b) => 'const' in b)) {
      // A union of literals: an enum of one JSON type.
      const values = branches.map((b) => b.const as Json);
      out.type = jsonType(values);
      out.enum = values;
    } else if (
      branches.length === 2 &&
      branches.some((b) => b.type === 'integer') &&
      branches.some((b) => b.type === 'string')
    ) {
      // int-or-string (resource quantities), the way controller-gen writes it.
      const str = branches.find((b) => b.type === 'string') as JsonObject;
      out.anyOf = [{ type: 'integer' }, { type: 'string' }];
      if (typeof str.pattern === 'string') out.pattern = str.pattern;
      out['x-kubernetes-int-or-string'] = true;
    } else {
      throw new Error(`cannot express union in a structural schema: ${JSON.stringify(anyOf)}`);
    }
  } else if ('const' in node) {
    out.type = jsonType([node.const as Json]);
    out.enum = [node.const as Json];
  }

  if (isObject(node.properties)) {
    const props: JsonObject = {};
    for (const [name, child] of Object.entries(node.properties)) {
      // The original child keeps TypeBox's symbol keys, which Value.Default needs.
      const original = (input as { properties?: Record<string, TSchema> }).properties?.[name];
      props[name] = toStructural(original ?? (child as unknown as TSchema));
    }
    out.properties = props;
    const required = Array.isArray(node.required)
      ? node.required.filter((r) => typeof r === 'string' && !(isObject(props[r]) && 'default' in (props[r] as JsonObject)))
      : [];
    if (required.length > 0) out.required = required;
    else delete out.required;
  }
  if (isObject(node.patternProperties)) {
    const values = Object.values(node.patternProperties);
    if (values.length !== 1) throw new Error('only single-pattern records are supported');
    out.additionalProperties = toStructural(values[0] as unknown as TSchema);
  }
  if (isObject(node.items)) out.items = toStructural(node.items as unknown as TSchema);
  // An object default is written out with its own nested defaults applied: the
  // API server does not default inside a default before it checks it against
  // the CEL rules (`default: {}` on spec.kms fails "no such key: mode").
  if (isObject(out.default) && isObject(node.properties)) {
    out.default = Value.Default(input, structuredClone(out.default)) as Json;
  }
  return ordered(out);
}

function jsonType(values: Json[]): string {
  if (values.every((v) => typeof v === 'string')) return 'string';
  if (values.every((v) => Number.isInteger(v))) return 'integer';
  if (values.every((v) => typeof v === 'number')) return 'number';
  if (values.every((v) => typeof v === 'boolean')) return 'boolean';
  throw new Error(`mixed-type enum ${JSON.stringify(values)}`);
}

/** What differs between Coffer's CRDs; the rest of the CustomResourceDefinition is shared. */
export interface CrdSpec {
  group: string;
  version: string;
  kind: string;
  listKind: string;
  plural: string;
  singular: string;
  shortNames: readonly string[];
  description: string;
  specSchema: TSchema;
  statusSchema: TSchema;
  printerColumns: readonly { name: string; type: string; jsonPath: string; description?: string; priority?: number }[];
  /** Restriction on metadata.name (a CRD may restrict nothing else of metadata). */
  namePattern: string;
  nameMaxLength: number;
}

/** A namespaced CustomResourceDefinition with a status subresource, as a plain object. */
export function buildCustomResourceDefinition(c: CrdSpec): JsonObject {
  const openAPIV3Schema: JsonObject = {
    description: c.description,
    type: 'object',
    properties: {
      apiVersion: { description: 'APIVersion defines the versioned schema of this representation of an object.', type: 'string' },
      kind: { description: 'Kind is a string value representing the REST resource this object represents.', type: 'string' },
      // Kubernetes owns metadata; a CRD may only restrict name/generateName.
      metadata: {
        type: 'object',
        properties: { name: { type: 'string', maxLength: c.nameMaxLength, pattern: c.namePattern } },
      },
      spec: toStructural(c.specSchema),
      status: toStructural(c.statusSchema),
    },
    required: ['spec'],
  };
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: {
      name: `${c.plural}.${c.group}`,
      labels: { 'app.kubernetes.io/name': 'coffer', 'app.kubernetes.io/component': 'crd' },
    },
    spec: {
      group: c.group,
      names: { kind: c.kind, listKind: c.listKind, plural: c.plural, singular: c.singular, shortNames: [...c.shortNames], categories: ['coffer'] },
      scope: 'Namespaced',
      versions: [
        {
          name: c.version,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: c.printerColumns.map((col) => ({ ...col }) as JsonObject),
          schema: { openAPIV3Schema },
        },
      ],
    },
  };
}

/** The VaultCluster CustomResourceDefinition as a plain object. */
export function buildCrd(): JsonObject {
  return buildCustomResourceDefinition({
    group: GROUP, version: VERSION, kind: KIND, listKind: LIST_KIND, plural: PLURAL, singular: SINGULAR,
    shortNames: SHORT_NAMES, description: VaultClusterSchema.description ?? KIND,
    specSchema: VaultClusterSpecSchema, statusSchema: VaultClusterStatusSchema, printerColumns: PRINTER_COLUMNS,
    namePattern: DNS_LABEL, nameMaxLength: MAX_NAME_LENGTH,
  });
}

/** A CRD as committed YAML: a do-not-edit header naming the generator and source, then the object. */
export function crdYaml(crd: JsonObject, generator: string, source: string): string {
  const spec = crd.spec as { group: string; names: { kind: string }; versions: { name: string }[] };
  const header = [
    `# Code generated by ${generator} from ${source}. DO NOT EDIT.`,
    '# Regenerate with: npm run gen:crd',
    `# ${(crd.metadata as { name: string }).name}: ${spec.names.kind} (${spec.group}/${spec.versions[0]!.name})`,
  ].join('\n');
  return `${header}\n${stringify(crd, { lineWidth: 0, aliasDuplicateObjects: false })}`;
}

/** The CRD as the YAML committed to crds/. */
export function renderCrdYaml(): string {
  return crdYaml(buildCrd(), 'operator/crd/generate.ts', 'operator/api/schema.ts');
}

/** A generator's command line: the YAML to stdout, or with `--out FILE` to that file. */
export function crdMain(argv: string[], yaml: string): void {
  const i = argv.indexOf('--out');
  const out = i === -1 ? undefined : argv[i + 1];
  if (i !== -1 && !out) throw new Error('--out needs a file name');
  if (out === undefined) {
    process.stdout.write(yaml);
    return;
  }
  // Write-then-rename so a failed run never leaves a truncated CRD behind.
  writeFileSync(`${out}.tmp`, yaml);
  renameSync(`${out}.tmp`, out);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  crdMain(process.argv.slice(2), renderCrdYaml());
}
