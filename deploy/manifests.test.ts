// The install manifests in deploy/: Kubernetes schema validation (kubernetes-models' validators, built from
// the Kubernetes OpenAPI schemas) plus a strict unknown-field check (the OpenAPI-generated models of
// @kubernetes/client-node), the RBAC rules against the requests the kube source really makes (recorded
// by the stand-in API server), the settings ConfigMap against decodeSettings, and the DaemonSet's flags
// against `wgplane daemon --help`.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import * as E from 'fp-ts/lib/Either.js';
import YAML from 'yaml';
import * as k8s from '@kubernetes/client-node';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { ClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import { ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding';
import { Role } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import { RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import { DEFAULT_SETTINGS, SETTING_KEYS, decodeSettings } from '../core/settings.js';
import type { NodeName } from '../core/model.js';
import { StandinApiServer, type StandinRequest } from '../testing/standin-apiserver.js';
import { wgplaneHere } from '../testing/cluster.js';
import { generateKey } from '../testing/generate.js';
import { createKubeSource } from '../adapters/sources/kube.js';
import type { ClusterEvent } from '../adapters/sources/source.js';

const DEPLOY = dirname(fileURLToPath(import.meta.url));
const ROOT = join(DEPLOY, '..');

type Obj = Record<string, any>;

interface Doc {
  readonly file: string;
  readonly index: number;
  readonly obj: Obj;
}

function kustomization(): Obj {
  return YAML.parse(readFileSync(join(DEPLOY, 'kustomization.yaml'), 'utf8')) as Obj;
}

/** Every document of every file the kustomization lists, in order. */
function loadDocs(): Doc[] {
  const out: Doc[] = [];
  for (const file of kustomization().resources as string[]) {
    YAML.parseAllDocuments(readFileSync(join(DEPLOY, file), 'utf8')).forEach((d, index) => {
      assert.equal(d.errors.length, 0, `${file} document ${index}: ${d.errors.map((e) => e.message).join('; ')}`);
      const obj = d.toJS() as Obj | null;
      if (obj !== null) out.push({ file, index, obj });
    });
  }
  return out;
}

const DOCS = loadDocs();
const where = (d: Doc) => `${d.file}[${d.index}] ${d.obj.kind}/${d.obj.metadata?.name}`;
const find = (kind: string, name = 'wgplane'): Obj => {
  const d = DOCS.find((x) => x.obj.kind === kind && x.obj.metadata?.name === name);
  assert.ok(d, `no ${kind} ${name} in deploy/`);
  return d.obj;
};

// ---------------------------------------------------------------------------------------------------
// Schema validation

type Validating = new (data: any) => { validate(): void };
const MODELS: Record<string, Validating> = {
  'v1/ServiceAccount': ServiceAccount as unknown as Validating,
  'v1/ConfigMap': ConfigMap as unknown as Validating,
  'apps/v1/DaemonSet': DaemonSet as unknown as Validating,
  'rbac.authorization.k8s.io/v1/ClusterRole': ClusterRole as unknown as Validating,
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ClusterRoleBinding as unknown as Validating,
  'rbac.authorization.k8s.io/v1/Role': Role as unknown as Validating,
  'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding as unknown as Validating,
};

/** Schema errors of one object (kubernetes-models: types, formats, required fields), or null. */
function schemaError(obj: Obj): string | null {
  const Model = MODELS[`${obj.apiVersion}/${obj.kind}`];
  if (!Model) return `no schema known for ${obj.apiVersion} ${obj.kind}`;
  try {
    new Model(structuredClone(obj)).validate();
    return null;
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}

/** The client-node model class of an apiVersion/kind: V1DaemonSet, V1ClusterRole, ... */
function rootType(obj: Obj): string {
  const version = String(obj.apiVersion).split('/').pop()!;
  return `${version[0]!.toUpperCase()}${version.slice(1)}${obj.kind}`;
}

const LEAF = new Set(['string', 'number', 'boolean', 'Date', 'IntOrString', 'any', 'object']);

/** Fields the OpenAPI schema does not know (what the API server's strict field validation rejects). */
function unknownFields(value: unknown, type: string, path: string, out: string[]): string[] {
  if (value === null || value === undefined || LEAF.has(type)) return out;
  const arr = /^Array<(.+)>$/.exec(type);
  if (arr) {
    if (Array.isArray(value)) value.forEach((v, i) => unknownFields(v, arr[1]!, `${path}[${i}]`, out));
    return out;
  }
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map) {
    if (typeof value === 'object') for (const [k, v] of Object.entries(value)) unknownFields(v, map[1]!, `${path}.${k}`, out);
    return out;
  }
  const cls = (k8s as unknown as Record<string, { getAttributeTypeMap?: () => { baseName: string; type: string }[] }>)[type];
  if (!cls?.getAttributeTypeMap) throw new Error(`${path}: no model for type ${type}`);
  if (typeof value !== 'object' || Array.isArray(value)) return out; // a type error: the schema check reports it
  const attrs = new Map(cls.getAttributeTypeMap().map((a) => [a.baseName, a.type]));
  for (const [k, v] of Object.entries(value)) {
    const t = attrs.get(k);
    if (t === undefined) out.push(`${path}.${k}`);
    else unknownFields(v, t, `${path}.${k}`, out);
  }
  return out;
}

describe('deploy/ manifests: schemas', () => {
  it('the kustomization lists every manifest in deploy/ and nothing else', () => {
    const yamls = readdirSync(DEPLOY).filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml').sort();
    assert.deepEqual([...(kustomization().resources as string[])].sort(), yamls);
    assert.deepEqual(Object.keys(kustomization()).sort(), ['apiVersion', 'images', 'kind', 'resources']);
    assert.equal(kustomization().images[0].name, find('DaemonSet').spec.template.spec.containers[0].image.split(':')[0]);
  });

  it('holds the objects of an install, all in kube-system (but the cluster-scoped ones)', () => {
    assert.deepEqual(
      DOCS.map((d) => `${d.obj.kind}/${d.obj.metadata.name}`).sort(),
      ['ClusterRole/wgplane', 'ClusterRoleBinding/wgplane', 'ConfigMap/wgplane', 'DaemonSet/wgplane', 'Role/wgplane', 'RoleBinding/wgplane', 'ServiceAccount/wgplane'],
    );
    for (const d of DOCS) {
      if (d.obj.kind.startsWith('Cluster')) assert.equal(d.obj.metadata.namespace, undefined, where(d));
      else assert.equal(d.obj.metadata.namespace, 'kube-system', where(d));
    }
  });

  for (const d of DOCS) {
    it(`${where(d)} validates against the Kubernetes OpenAPI schema`, () => {
      assert.equal(schemaError(d.obj), null, where(d));
      assert.deepEqual(unknownFields(d.obj, rootType(d.obj), d.obj.kind, []), [], `${where(d)}: fields the API does not know`);
    });
  }

  it('the checks catch what they must (wrong types, missing required fields, unknown fields)', () => {
    const ds = structuredClone(find('DaemonSet'));
    ds.spec.template.spec.containers[0].ports[0].containerPort = '9476';
    assert.match(schemaError(ds) ?? '', /containerPort must be integer/);
    const noName = structuredClone(find('DaemonSet'));
    delete noName.spec.template.spec.containers[0].name;
    assert.match(schemaError(noName) ?? '', /containers\/0 must have required property '?name'?/);
    const role = structuredClone(find('ClusterRole'));
    role.rules[0].verbs = 'get';
    assert.match(schemaError(role) ?? '', /verbs must be array/);
    const typo = structuredClone(find('DaemonSet'));
    typo.spec.template.spec.containers[0].securityContext.capabilites = { add: ['SYS_ADMIN'] };
    typo.spec.template.spec.hostNetwrok = true;
    assert.deepEqual(unknownFields(typo, 'V1DaemonSet', 'DaemonSet', []).sort(), [
      'DaemonSet.spec.template.spec.containers[0].securityContext.capabilites',
      'DaemonSet.spec.template.spec.hostNetwrok',
    ]);
  });
});

// ---------------------------------------------------------------------------------------------------
// The DaemonSet: what the agent needs, and no more

describe('deploy/ manifests: the DaemonSet', () => {
  const ds = find('DaemonSet');
  const pod = ds.spec.template.spec;
  const c = pod.containers[0];

  it('runs on every node in the host network namespace, critical, rolling one node at a time', () => {
    assert.equal(ds.metadata.namespace, 'kube-system');
    assert.equal(pod.hostNetwork, true);
    assert.equal(pod.dnsPolicy, 'ClusterFirstWithHostNet');
    assert.equal(pod.priorityClassName, 'system-node-critical');
    assert.deepEqual(pod.tolerations, [{ operator: 'Exists' }]);
    assert.equal(pod.serviceAccountName, 'wgplane');
    assert.deepEqual(ds.spec.updateStrategy, { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } });
    assert.ok(pod.terminationGracePeriodSeconds > 0);
    assert.deepEqual(ds.spec.selector.matchLabels, ds.spec.template.metadata.labels);
    assert.equal(pod.containers.length, 1);
    assert.equal(pod.initContainers, undefined);
  });

  it('is not privileged: NET_ADMIN and NET_RAW only, everything else dropped', () => {
    const sc = c.securityContext;
    assert.equal(sc.privileged, false);
    assert.equal(sc.allowPrivilegeEscalation, false);
    assert.equal(sc.readOnlyRootFilesystem, true);
    assert.deepEqual(sc.capabilities, { drop: ['ALL'], add: ['NET_ADMIN', 'NET_RAW'] });
    assert.equal(pod.hostPID, undefined);
    assert.equal(pod.hostIPC, undefined);
    assert.equal(pod.securityContext, undefined);
  });

  it('mounts the state directory, wireguard-go sockets, the xtables lock, the host /proc/sys/net and /dev/net/tun', () => {
    const vols = new Map<string, Obj>(pod.volumes.map((v: Obj) => [v.name, v]));
    const mounts = new Map<string, Obj>(c.volumeMounts.map((m: Obj) => [m.mountPath, m]));
    const host = (mountPath: string) => vols.get(mounts.get(mountPath)?.name)?.hostPath;
    assert.deepEqual(host('/var/lib/wgplane'), { path: '/var/lib/wgplane', type: 'DirectoryOrCreate' });
    assert.deepEqual(host('/run/wireguard'), { path: '/run/wireguard', type: 'DirectoryOrCreate' });
    assert.deepEqual(host('/run/xtables.lock'), { path: '/run/xtables.lock', type: 'FileOrCreate' });
    assert.deepEqual(host('/dev/net/tun'), { path: '/dev/net/tun', type: 'CharDevice' });
    assert.deepEqual(host('/host/proc/sys/net'), { path: '/proc/sys/net', type: 'Directory' });
    assert.ok(vols.get(mounts.get('/run/wgplane')?.name)?.emptyDir, 'the entry point needs a writable /run/wgplane');
    // The image's sysctl writes through this root (deploy/sysctl.sh); it must be the mounted host /proc/sys.
    const env = new Map<string, Obj>(c.env.map((e: Obj) => [e.name, e]));
    assert.equal(env.get('WGPLANE_SYSCTL_ROOT')?.value, '/host/proc/sys');
    // The young-generation size the daemon benchmark measures with (scripts/bench.sh reads it from here),
    // in a form NODE_OPTIONS accepts (node refuses to start on an option it does not allow there).
    const nodeOptions = String(env.get('NODE_OPTIONS')?.value);
    assert.match(nodeOptions, /^--max-semi-space-size=\d+ --max-old-space-size=\d+$/);
    const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(require("v8").getHeapStatistics().total_heap_size > 0))'], { env: { ...process.env, NODE_OPTIONS: nodeOptions }, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    // Nothing mounted inside /proc (the runtime refuses it) and every mount has its volume.
    for (const [p, m] of mounts) {
      assert.ok(!p.startsWith('/proc/'), p);
      assert.ok(vols.has(m.name), `volume ${m.name}`);
    }
    assert.equal(mounts.size, vols.size);
  });

  it('takes the node name from the downward API', () => {
    const env = c.env.find((e: Obj) => e.name === 'NODE_NAME');
    assert.deepEqual(env.valueFrom, { fieldRef: { fieldPath: 'spec.nodeName' } });
  });

  it('probes /healthz and /readyz and exposes /metrics on the port it listens on, with scrape annotations', () => {
    assert.deepEqual(c.ports, [{ name: 'metrics', containerPort: 9476, protocol: 'TCP' }]);
    assert.deepEqual(c.livenessProbe.httpGet, { path: '/healthz', port: 'metrics' });
    assert.deepEqual(c.readinessProbe.httpGet, { path: '/readyz', port: 'metrics' });
    const ann = ds.spec.template.metadata.annotations;
    assert.deepEqual(ann, { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '9476', 'prometheus.io/path': '/metrics' });
    const addr = (c.args as string[]).find((a) => a.startsWith('--metrics-addr='));
    assert.equal(addr, '--metrics-addr=0.0.0.0:9476');
  });

  it('has resource requests and a memory limit', () => {
    assert.ok(c.resources.requests.cpu && c.resources.requests.memory);
    assert.ok(c.resources.limits.memory);
  });

  it('leaves the image ENTRYPOINT (`wgplane daemon`) alone and passes only flags', () => {
    assert.equal(c.command, undefined);
    for (const a of c.args as string[]) assert.match(a, /^--[a-z][a-z-]*=\S+$/);
    const containerfile = readFileSync(join(DEPLOY, 'Containerfile'), 'utf8');
    const entry = /^ENTRYPOINT (\[.*\])$/m.exec(containerfile);
    assert.ok(entry, 'Containerfile has an exec-form ENTRYPOINT');
    const argv = JSON.parse(entry[1]!) as string[];
    assert.equal(argv.at(-1), 'daemon');
    assert.equal(argv.at(-2), '/usr/local/bin/wgplane-entrypoint');
  });

  it('passes only flags that `wgplane daemon --help` lists', async () => {
    const r = await wgplaneHere(['daemon', '--help']);
    const out = `${r.stdout}${r.stderr}`;
    assert.equal(r.exitCode, 0, `daemon --help failed: ${out}`);
    for (const a of c.args as string[]) {
      const flag = a.split('=')[0]!;
      assert.match(out, new RegExp(`(^|[\\s,])${flag}[\\s=<]`, 'm'), `${flag} is not a flag of wgplane daemon`);
    }
    assert.match(out, /NODE_NAME/, 'daemon --help says --node defaults to $NODE_NAME (the DaemonSet relies on it)');
  });
});

// ---------------------------------------------------------------------------------------------------
// The settings ConfigMap

describe('deploy/ manifests: the settings ConfigMap', () => {
  const text = readFileSync(join(DEPLOY, 'configmap.yaml'), 'utf8');
  const cm = find('ConfigMap');

  it('is kube-system/wgplane, decodes, and turns WireGuard on with every other setting at its default', () => {
    const s = decodeSettings(cm.data, 'ConfigMap kube-system/wgplane');
    assert.ok(E.isRight(s), E.isLeft(s) ? s.left.map((e) => `${e.where}: ${e.message}`).join('\n') : '');
    assert.deepEqual(s.right, { ...DEFAULT_SETTINGS, enabled: true });
  });

  it('spells out every other setting with its true default in a comment', () => {
    const commented: Record<string, string> = {};
    for (const m of text.matchAll(/^ {2}# ([A-Za-z]+): "([^"]*)"/gm)) commented[m[1]!] = m[2]!;
    assert.deepEqual(Object.keys(commented).sort(), SETTING_KEYS.filter((k) => k !== 'enabled').sort());
    const s = decodeSettings({ ...commented, enabled: 'false' }, 'configmap.yaml comments');
    assert.ok(E.isRight(s), E.isLeft(s) ? s.left.map((e) => `${e.where}: ${e.message}`).join('\n') : '');
    assert.deepEqual(s.right, DEFAULT_SETTINGS);
  });

  it('would be refused with an unknown key (the check is live)', () => {
    assert.ok(E.isLeft(decodeSettings({ ...cm.data, enable: 'true' }, 'x')));
  });
});

// ---------------------------------------------------------------------------------------------------
// RBAC: exactly what the kube source does

interface Attributes {
  readonly verb: string;
  readonly resource: string;
  readonly namespace: string | null;
  readonly name: string | null;
}

/** The authorization attributes the API server derives from a request (k8s RequestInfo): a list or watch
 *  selected by `fieldSelector=metadata.name=X` carries the name X. */
function attributesOf(r: StandinRequest): Attributes {
  const m = /^\/api\/v1\/(?:namespaces\/([^/]+)\/)?([a-z]+)(?:\/([^/]+))?$/.exec(r.path);
  assert.ok(m, `unexpected API path ${r.path}`);
  const [, namespace, resource, name] = m;
  let verb: string;
  if (r.method === 'GET') verb = name !== undefined ? 'get' : r.query.watch === 'true' || r.query.watch === '1' ? 'watch' : 'list';
  else verb = ({ PATCH: 'patch', POST: 'create', PUT: 'update', DELETE: name !== undefined ? 'delete' : 'deletecollection' } as Record<string, string>)[r.method]!;
  const selected = /(?:^|,)metadata\.name=([^,]+)/.exec(r.query.fieldSelector ?? '');
  return { verb, resource: resource!, namespace: namespace ?? null, name: name ?? (selected ? selected[1]! : null) };
}

/** The rules that apply to the wgplane ServiceAccount: ClusterRoles through ClusterRoleBindings (all
 *  namespaces), Roles through RoleBindings (their namespace). */
function agentRules(): { rule: Obj; namespace: string | null }[] {
  const isAgent = (b: Obj) => (b.subjects as Obj[]).some((s) => s.kind === 'ServiceAccount' && s.name === 'wgplane' && s.namespace === 'kube-system');
  const out: { rule: Obj; namespace: string | null }[] = [];
  for (const { obj: b } of DOCS) {
    if (b.kind !== 'ClusterRoleBinding' && b.kind !== 'RoleBinding') continue;
    if (!isAgent(b)) continue;
    const role = DOCS.find((d) => d.obj.kind === b.roleRef.kind && d.obj.metadata.name === b.roleRef.name && (b.roleRef.kind === 'ClusterRole' || d.obj.metadata.namespace === b.metadata.namespace));
    assert.ok(role, `${b.kind} ${b.metadata.name} refers to a missing ${b.roleRef.kind} ${b.roleRef.name}`);
    const ns = b.kind === 'RoleBinding' ? b.metadata.namespace : null;
    for (const rule of role.obj.rules as Obj[]) out.push({ rule, namespace: ns });
  }
  return out;
}

function allowed(a: Attributes, rules = agentRules()): boolean {
  return rules.some(({ rule, namespace }) => {
    if (namespace !== null && a.namespace !== namespace) return false;
    if (!(rule.apiGroups as string[]).some((g) => g === '' || g === '*')) return false;
    if (!(rule.resources as string[]).some((r) => r === a.resource || r === '*')) return false;
    if (!(rule.verbs as string[]).some((v) => v === a.verb || v === '*')) return false;
    const names = (rule.resourceNames as string[] | undefined) ?? [];
    return names.length === 0 || (a.name !== null && names.includes(a.name));
  });
}

async function until(what: string, pred: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('deploy/ manifests: RBAC', () => {
  it('grants exactly the verbs the kube source uses (recorded by the stand-in API server)', async () => {
    const node = 'n1' as NodeName;
    const server = await StandinApiServer.start({
      objects: [
        { apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1' }, spec: { podCIDR: '10.244.0.0/24' }, status: { addresses: [{ type: 'InternalIP', address: '10.0.0.1' }] } },
        { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'a', namespace: 'default' }, spec: { nodeName: 'n1', containers: [{ name: 'c', image: 'x' }] }, status: { phase: 'Running', podIP: '10.244.0.10', podIPs: [{ ip: '10.244.0.10' }] } },
        { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'wgplane', namespace: 'kube-system' }, data: { enabled: 'true' } },
      ],
    });
    const source = createKubeSource({ kubeconfig: server.kubeconfigPath, node, env: {} });
    const events: ClusterEvent[] = [];
    try {
      await source.start((e) => events.push(e));
      await until('synced', () => events.some((e) => e.kind === 'synced'));
      await until('three watches', () => server.watchCount() === 3);
      // What the daemon does with the API on its own: publish and clear its key and status.
      await source.publishKey(node, generateKey(1));
      await source.publishStatus(node, { time: new Date(0).toISOString(), device: 'wireguard.wgp', mtu: 1420, peers: 0, peersWithHandshake: 0, allowedIPs: 0, pendingOps: 0, lastApply: 'ok', lastError: null });
      await source.publishStatus(node, null);
      await source.publishKey(node, null);
      const agent = server.requests.map(attributesOf);
      assert.ok(agent.length >= 10, `few requests recorded: ${agent.length}`);

      const rules = agentRules();
      for (const a of agent) assert.ok(allowed(a, rules), `the agent's RBAC refuses ${JSON.stringify(a)}`);

      // Exactly: every (resource, verb, resourceNames) the rules grant is used.
      const used = new Set(agent.map((a) => `${a.resource}:${a.verb}`));
      const granted = new Set<string>();
      for (const { rule } of rules) for (const r of rule.resources as string[]) for (const v of rule.verbs as string[]) granted.add(`${r}:${v}`);
      assert.deepEqual([...granted].sort(), [...used].sort());
      for (const { rule } of rules) {
        if (!rule.resourceNames) continue;
        const names = new Set(agent.filter((a) => (rule.resources as string[]).includes(a.resource)).map((a) => a.name));
        assert.deepEqual([...names], rule.resourceNames, 'resourceNames are the names the agent asks for');
      }

      // `wgplane enable` (create or patch the ConfigMap) is the operator's, with the operator's rights.
      const before = server.requests.length;
      await source.patchSettings({ enabled: 'false' });
      const operator = server.requests.slice(before).map(attributesOf);
      assert.ok(operator.length > 0);
      for (const a of operator) assert.equal(allowed(a, rules), false, `the agent may ${JSON.stringify(a)}: that is the operator's right`);
    } finally {
      await source.stop();
      await server.close();
    }
  });

  it('the authorizer refuses what is not granted (the check is live)', () => {
    assert.equal(allowed({ verb: 'get', resource: 'secrets', namespace: 'kube-system', name: 'x' }), false);
    assert.equal(allowed({ verb: 'delete', resource: 'nodes', namespace: null, name: 'n1' }), false);
    assert.equal(allowed({ verb: 'list', resource: 'configmaps', namespace: 'kube-system', name: null }), false);
    assert.equal(allowed({ verb: 'list', resource: 'configmaps', namespace: 'default', name: 'wgplane' }), false);
    assert.equal(allowed({ verb: 'watch', resource: 'configmaps', namespace: 'kube-system', name: 'wgplane' }), true);
    assert.equal(allowed({ verb: 'patch', resource: 'nodes', namespace: null, name: 'n1' }), true);
  });
});
