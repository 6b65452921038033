// The container image's contents and its two scripts, without building the image (no container runtime
// here): every program the agent runs is installed by deploy/Containerfile (mapped to Debian packages by
// dpkg on this machine, which runs the same Debian release as the image); deploy/sysctl.sh writes through
// the host's /proc/sys/net, driven by the real executor; deploy/entrypoint.sh picks the iptables backend
// the host uses, checked with real iptables (legacy and nf_tables) in throwaway network namespaces.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { execute } from '../adapters/executor.js';
import { defaultRunner, type Runner } from '../adapters/run.js';
import type { Operation } from '../core/model.js';

const DEPLOY = dirname(fileURLToPath(import.meta.url));
const ROOT = join(DEPLOY, '..');
const SYSCTL = join(DEPLOY, 'sysctl.sh');
const ENTRYPOINT = join(DEPLOY, 'entrypoint.sh');
const CONTAINERFILE = readFileSync(join(DEPLOY, 'Containerfile'), 'utf8');

const sh = (cmd: string): { status: number; stdout: string } => {
  const r = spawnSync('sh', ['-c', cmd], { encoding: 'utf8' });
  return { status: r.status ?? -1, stdout: r.stdout };
};

// ---------------------------------------------------------------------------------------------------
// Programs

/** The source files of what runs in the agent's container: the daemon and the commands an operator runs
 *  there (status, verify). The lab (adapters/lab) and graph's optional `dot` are not in the image. */
function agentSources(): string[] {
  const out: string[] = [];
  for (const dir of ['adapters', 'adapters/daemon', 'adapters/sources']) {
    for (const f of readdirSync(join(ROOT, dir))) {
      if (!f.endsWith('.ts') || f.endsWith('.test.ts') || f === 'graph.ts') continue;
      out.push(join(ROOT, dir, f));
    }
  }
  return out;
}

/** Program names in the call positions of the Runner helpers, `command -v X`, and `const cmd = ... 'X'`. */
function programsRun(files: readonly string[]): Set<string> {
  const found = new Set<string>();
  for (const f of files) {
    const text = readFileSync(f, 'utf8');
    for (const m of text.matchAll(/\b(?:run|runChecked|runOrThrow|runPiped|missingTool)\(\s*(?:run\s*,\s*)?'([^' ]+)'/g)) found.add(m[1]!);
    for (const m of text.matchAll(/command -v ([a-z0-9][a-z0-9-]*)/g)) found.add(m[1]!);
    for (const m of text.matchAll(/const cmd = ([^;\n]+)/g)) for (const l of m[1]!.matchAll(/'([a-z0-9-]+)'/g)) found.add(l[1]!);
  }
  return found;
}

/** The Debian package that installs a program on this machine (resolving alternatives and merged /usr). */
function debianPackage(program: string): { pkg: string; essential: boolean } {
  const where = sh(`command -v ${program}`);
  assert.equal(where.status, 0, `${program} is not installed on this machine`);
  const real = realpathSync(where.stdout.trim());
  for (const p of [real, real.replace(/^\/usr/, '')]) {
    const r = sh(`dpkg -S '${p}' 2>/dev/null`);
    if (r.status === 0) {
      const pkg = r.stdout.split(':')[0]!.trim();
      const essential = sh(`dpkg-query -W -f='\${Essential}' ${pkg}`).stdout.trim() === 'yes';
      return { pkg, essential };
    }
  }
  throw new Error(`no Debian package owns ${real} (${program})`);
}

function aptInstalled(): Set<string> {
  const m = /apt-get install -y --no-install-recommends ([^\n&\\]+)/.exec(CONTAINERFILE);
  assert.ok(m, 'the Containerfile installs packages with apt-get');
  return new Set(m[1]!.trim().split(/\s+/));
}

const hasDpkg = sh('command -v dpkg-query').status === 0;

describe('deploy/Containerfile', () => {
  it('finds the programs the agent runs (the scanner sees the known ones)', () => {
    const progs = programsRun(agentSources());
    for (const p of ['ip', 'wg', 'wireguard-go', 'iptables-save', 'ip6tables-save', 'iptables-restore', 'ip6tables-restore', 'sysctl', 'cat', 'sh']) {
      assert.ok(progs.has(p), `${p} not found by the scanner: ${[...progs].join(' ')}`);
    }
  });

  it('installs every program the agent runs (Essential packages are in every Debian image)', { skip: !hasDpkg && 'no dpkg on this machine' }, () => {
    const installed = aptInstalled();
    const progs = [...programsRun(agentSources()), 'xtables-nft-multi', 'xtables-legacy-multi'];
    const missing: string[] = [];
    for (const p of progs) {
      const { pkg, essential } = debianPackage(p);
      if (!essential && !installed.has(pkg)) missing.push(`${p} (${pkg})`);
    }
    assert.deepEqual(missing, [], 'programs the agent runs whose package the Containerfile does not install');
    assert.ok(!installed.has('wireguard'), 'the wireguard meta-package pulls in DKMS');
    // The ENTRYPOINT's init is Debian's tini package (not installed on this machine: checked by name).
    assert.ok(installed.has('tini') && /"\/usr\/bin\/tini", "--"/.test(CONTAINERFILE), 'tini is installed and is PID 1');
  });

  it('builds dist/ in a build stage and installs production dependencies without running prepare', () => {
    assert.match(CONTAINERFILE, /^ARG NODE_IMAGE=node:(22|24)-bookworm-slim$/m);
    assert.match(CONTAINERFILE, /^FROM \$\{NODE_IMAGE\} AS build$/m);
    assert.match(CONTAINERFILE, /^RUN npx tsc -p tsconfig\.json$/m);
    assert.match(CONTAINERFILE, /^RUN npm ci --omit=dev --ignore-scripts\b/m);
    assert.match(CONTAINERFILE, /^COPY --from=build \/src\/dist \.\/dist$/m);
    // Every source folder tsconfig.json compiles is copied into the build stage.
    const tsconfig = JSON.parse(readFileSync(join(ROOT, 'tsconfig.json'), 'utf8')) as { include: string[] };
    for (const dir of tsconfig.include) assert.match(CONTAINERFILE, new RegExp(`^COPY ${dir} \\./${dir}$`, 'm'), `COPY ${dir}`);
    // The scripts it copies exist and are executable shell.
    for (const m of CONTAINERFILE.matchAll(/^COPY (deploy\/\S+) /gm)) assert.equal(sh(`sh -n '${join(ROOT, m[1]!)}'`).status, 0, m[1]);
  });

  it('the build context leaves out node_modules, dist and .git', () => {
    const ignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim());
    for (const p of ['node_modules', 'dist', '.git']) assert.ok(ignore.includes(p), p);
  });
});

// ---------------------------------------------------------------------------------------------------
// sysctl.sh

describe('deploy/sysctl.sh', () => {
  const root = mkdtempSync(join(tmpdir(), 'wgplane-sysctl-'));
  after(() => rmSync(root, { recursive: true, force: true }));
  const file = (rel: string, v: string) => {
    mkdirSync(dirname(join(root, rel)), { recursive: true });
    writeFileSync(join(root, rel), v);
  };
  file('net/ipv4/conf/all/src_valid_mark', '0\n');
  file('net/ipv4/conf/eth0.100/rp_filter', '2\n');
  file('kernel/hostname', 'x\n');
  const read = (rel: string) => readFileSync(join(root, rel), 'utf8');
  const shim: Runner = (cmd, args, opts) =>
    cmd === 'sysctl' ? defaultRunner('env', [`WGPLANE_SYSCTL_ROOT=${root}`, SYSCTL, ...args], opts) : Promise.resolve({ stdout: '', stderr: `unexpected ${cmd}`, exitCode: 127 });

  it('the executor sets a sysctl through it, under WGPLANE_SYSCTL_ROOT', async () => {
    const ops: Operation[] = [
      { kind: 'sysctl-set', key: 'net.ipv4.conf.all.src_valid_mark', value: '1', from: '0', origin: { kind: 'setting', setting: 'hostEncryption' } },
    ];
    const r = await execute(ops, { backend: 'kernel', privateKey: async () => '', run: shim });
    assert.equal(r.kind, 'ok', JSON.stringify(r));
    assert.equal(read('net/ipv4/conf/all/src_valid_mark'), '1\n');
  });

  it('takes slash-separated keys whose names hold dots, and prints what procps prints', async () => {
    const r = await shim('sysctl', ['-w', 'net/ipv4/conf/eth0.100/rp_filter=1']);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout, 'net/ipv4/conf/eth0.100/rp_filter = 1\n');
    assert.equal(read('net/ipv4/conf/eth0.100/rp_filter'), '1\n');
  });

  it('refuses keys outside net.*, paths that climb, and keys that do not exist, naming the key', async () => {
    for (const [arg, msg] of [
      ['kernel.hostname=y', /kernel\.hostname.*only net\.\*/],
      ['net/../kernel/hostname=y', /not a sysctl name/],
      ['net.ipv4.conf.nope.rp_filter=1', /net\.ipv4\.conf\.nope\.rp_filter/],
      ['net.ipv4.ip_forward', /name=value/],
    ] as const) {
      const r = await shim('sysctl', ['-w', arg]);
      assert.notEqual(r.exitCode, 0, arg);
      assert.match(r.stderr, msg, arg);
    }
    assert.equal(read('kernel/hostname'), 'x\n');
  });

  it('is procps sysctl when WGPLANE_SYSCTL_ROOT is unset, or for reads', () => {
    assert.equal(execFileSync(SYSCTL, ['-n', 'kernel.ostype'], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } }), 'Linux\n');
    assert.equal(execFileSync(SYSCTL, ['-n', 'kernel.ostype'], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '', WGPLANE_SYSCTL_ROOT: root } }), 'Linux\n');
  });
});

// ---------------------------------------------------------------------------------------------------
// entrypoint.sh

const isRoot = process.getuid?.() === 0;
const canNetns = isRoot && sh('command -v ip && command -v xtables-legacy-multi && command -v xtables-nft-multi').status === 0;

describe('deploy/entrypoint.sh picks the host\'s iptables backend', { skip: !canNetns && 'needs root, ip netns and both iptables backends' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'wgplane-entry-'));
  // A stand-in for `wgplane` (only the entry point is under test): prints the backend `iptables-save`
  // now runs, and its arguments.
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  writeFileSync(join(bin, 'wgplane'), '#!/bin/sh\necho "$(readlink "$(command -v iptables-save)") $WGPLANE_IPTABLES_MODE $*"\n');
  chmodSync(join(bin, 'wgplane'), 0o755);
  const ns = `wgpentry${process.pid}`;
  after(() => {
    sh(`ip netns del ${ns} 2>/dev/null`);
    rmSync(dir, { recursive: true, force: true });
  });

  /** Fresh namespace, plant `setup` (shell, run inside it), run the entry point there. */
  function run(setup: string, env: Record<string, string> = {}): { status: number; out: string } {
    sh(`ip netns del ${ns} 2>/dev/null`);
    assert.equal(sh(`ip netns add ${ns}`).status, 0);
    if (setup) assert.equal(sh(`ip netns exec ${ns} sh -ec '${setup}'`).status, 0, setup);
    const envs = Object.entries({ WGPLANE_RUN_DIR: join(dir, `run-${Math.random().toString(36).slice(2)}`), PATH: `${bin}:${process.env.PATH}`, ...env }).map(([k, v]) => `${k}=${v}`);
    const r = spawnSync('ip', ['netns', 'exec', ns, 'env', ...envs, ENTRYPOINT, 'daemon', '--log-level=info'], { encoding: 'utf8' });
    return { status: r.status ?? -1, out: `${r.stdout}${r.stderr}`.trim() };
  }
  const multi = (mode: string) => realpathSync(sh(`command -v xtables-${mode}-multi`).stdout.trim());

  it('nothing anywhere: nf_tables; and it runs wgplane with the arguments', () => {
    assert.deepEqual(run(''), { status: 0, out: `${multi('nft')} nft daemon --log-level=info` });
  });

  it('the kubelet canary in legacy: legacy', () => {
    assert.equal(run('xtables-legacy-multi iptables -t mangle -N KUBE-KUBELET-CANARY').out, `${multi('legacy')} legacy daemon --log-level=info`);
  });

  it('the kubelet hint in nf_tables wins over more legacy rules', () => {
    const setup = 'xtables-nft-multi iptables -t mangle -N KUBE-IPTABLES-HINT; for p in 1 2 3; do xtables-legacy-multi iptables -A INPUT -p tcp --dport 1$p -j ACCEPT; done';
    assert.equal(run(setup).out, `${multi('nft')} nft daemon --log-level=info`);
  });

  it('no markers: the backend with more rules (IPv6 counted too)', () => {
    const setup = 'xtables-nft-multi iptables -A INPUT -p tcp --dport 1 -j ACCEPT; for p in 1 2; do xtables-legacy-multi ip6tables -A INPUT -p tcp --dport 1$p -j ACCEPT; done';
    assert.equal(run(setup).out, `${multi('legacy')} legacy daemon --log-level=info`);
  });

  it('WGPLANE_IPTABLES_MODE overrides, and a wrong value is refused', () => {
    assert.equal(run('xtables-legacy-multi iptables -t mangle -N KUBE-KUBELET-CANARY', { WGPLANE_IPTABLES_MODE: 'nft' }).out, `${multi('nft')} nft daemon --log-level=info`);
    const bad = run('', { WGPLANE_IPTABLES_MODE: 'bogus' });
    assert.equal(bad.status, 1);
    assert.match(bad.out, /WGPLANE_IPTABLES_MODE=bogus: want auto, nft or legacy/);
  });
});
