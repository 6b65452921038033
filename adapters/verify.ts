// `wgplane verify`: proves encryption with evidence instead of asserting it.
//
// In the lab, for each pair of nodes: a probe (ping from a pod of one node to a pod of the other), the
// WireGuard peers' handshake age and transfer counters before and after the probe on both sides, and a
// tcpdump capture on the bridge (the underlay) during the probe. A pair of WireGuard nodes is encrypted
// when the probe got through, its packets crossed the wire only as WireGuard UDP between the two node IPs
// (no packet of the probe's addresses was seen in clear), both peers have a recent handshake and their
// counters moved. Pairs with a node without WireGuard are expected in clear: the probe must get through,
// and the capture shows it in clear.
//
// On a real node (no lab), only this node's kernel is at hand: per peer, the handshake age and counters,
// optionally moved by a probe to one of the peer's /32 allowed IPs. That proves the peer holds the key and
// the tunnel carries traffic, but not that nothing bypasses it: that needs a capture on the underlay.
import { Capture, type Packet } from './lab/capture.js';
import { NetnsHome } from './lab/netns.js';
import { pingCount, pingWith } from './lab/topology.js';
import type { LabNode, LabState } from './lab/state.js';
import { defaultRunner, type Runner } from './run.js';
import { textTable as table } from './text-table.js';
import { parseWgDump as parseObservedDump } from './observer.js';

/** WireGuard rejects a session older than this (REJECT_AFTER_TIME): an older handshake proves nothing now. */
export const HANDSHAKE_FRESH_S = 180;

export interface PeerReading {
  readonly publicKey: string;
  readonly endpoint: string | null;
  readonly allowedIPs: readonly string[];
  readonly latestHandshake: number; // unix seconds, 0 = never
  readonly rx: number;
  readonly tx: number;
}

/** Reads `wg show IFACE dump` with the observer's parser (adapters/observer.ts: the private key and the
 *  preshared keys are dropped, never kept). */
export function parseWgDump(text: string): PeerReading[] {
  return [...parseObservedDump(text, 'wg show dump').peers.values()].map((p) => ({
    publicKey: p.publicKey,
    endpoint: p.endpoint,
    allowedIPs: p.allowedIPs,
    latestHandshake: p.latestHandshake,
    rx: p.rxBytes,
    tx: p.txBytes,
  }));
}

/** The host part of an endpoint `ip:port` / `[ip6]:port`. */
export function endpointHost(ep: string | null): string | null {
  if (!ep) return null;
  const m = /^\[(.*)\]:\d+$/.exec(ep) ?? /^(.*):\d+$/.exec(ep);
  return m ? m[1]! : null;
}

export async function readPeers(run: Runner, iface: string): Promise<PeerReading[] | null> {
  const r = await run('wg', ['show', iface, 'dump']);
  return r.exitCode === 0 ? parseWgDump(r.stdout) : null;
}

/** Seconds since the peer's latest handshake (null: never). */
export const ageOf = (p: PeerReading | undefined, now: number): number | null => (p && p.latestHandshake > 0 ? Math.max(0, Math.round(now - p.latestHandshake)) : null);

// ---------------------------------------------------------------------------------------------------
// Lab: pairs of nodes

export interface SideEvidence {
  readonly node: string;
  /** This node's peer for the other node (matched by endpoint), or null: no peer. */
  readonly peer: string | null;
  readonly handshakeAgeS: number | null;
  readonly txDelta: number;
  readonly rxDelta: number;
}

export type PairVerdict = 'encrypted' | 'clear (expected)' | 'NOT ENCRYPTED' | 'UNREACHABLE';

export interface PairResult {
  readonly a: string;
  readonly b: string;
  readonly expected: 'encrypted' | 'clear';
  readonly verdict: PairVerdict;
  readonly ok: boolean;
  readonly probe: { readonly from: string; readonly to: string; readonly sent: number; readonly received: number };
  readonly sides: readonly SideEvidence[];
  /** Packets of the probe's own addresses seen on the underlay (in clear). */
  readonly clearPackets: number;
  /** WireGuard UDP packets between the two node IPs during the probe. */
  readonly wireguardPackets: number;
  readonly reasons: readonly string[];
}

export interface VerifyReport {
  readonly scope: 'lab' | 'node';
  readonly lab: string | null;
  readonly time: string;
  readonly ok: boolean;
  readonly pairs: readonly PairResult[];
  readonly peers: readonly PeerResult[];
  readonly notes: readonly string[];
}

export interface LabVerifyOptions {
  readonly interfaceName: string;
  readonly listenPort: number;
  /** Pings per probe. */
  readonly count?: number;
}

function probeEnds(a: LabNode, b: LabNode): { from: { ns: string; ip: string }; to: string } {
  const pa = a.pods[0];
  const pb = b.pods[0];
  if (pa && pb) return { from: { ns: pa.ns, ip: pa.ip }, to: pb.ip };
  return { from: { ns: a.ns, ip: a.ip }, to: b.ip };
}

/** Judges one pair from its evidence (pure: the decision is tested on its own). */
export function judgePair(input: {
  readonly expectEncrypted: boolean;
  readonly sent: number;
  readonly received: number;
  readonly clearPackets: number;
  readonly wireguardPackets: number;
  readonly sides: readonly SideEvidence[];
}): { verdict: PairVerdict; ok: boolean; reasons: string[] } {
  const reasons: string[] = [];
  if (!input.expectEncrypted) {
    if (input.received === 0) return { verdict: 'UNREACHABLE', ok: false, reasons: ['the probe got no reply (a node without WireGuard must be reachable in clear)'] };
    if (input.wireguardPackets > 0) reasons.push(`${input.wireguardPackets} WireGuard packets between these nodes (unexpected)`);
    return { verdict: 'clear (expected)', ok: true, reasons: [`${input.clearPackets} probe packets seen in clear on the wire (a node without WireGuard)`, ...reasons] };
  }
  if (input.received === 0) reasons.push(`the probe got no reply (${input.sent} sent)`);
  if (input.clearPackets > 0) reasons.push(`${input.clearPackets} packets of the probe seen in clear on the wire`);
  if (input.wireguardPackets < input.received) reasons.push(`only ${input.wireguardPackets} WireGuard packets between the node IPs for ${input.received} replies`);
  for (const s of input.sides) {
    if (s.peer === null) { reasons.push(`${s.node} has no WireGuard peer for the other node`); continue; }
    if (s.handshakeAgeS === null) reasons.push(`${s.node}: no handshake with the other node`);
    else if (s.handshakeAgeS > HANDSHAKE_FRESH_S) reasons.push(`${s.node}: last handshake ${s.handshakeAgeS} s ago (older than ${HANDSHAKE_FRESH_S} s)`);
    if (s.txDelta <= 0) reasons.push(`${s.node}: the peer's transmit counter did not move under the probe`);
    if (s.rxDelta <= 0) reasons.push(`${s.node}: the peer's receive counter did not move under the probe`);
  }
  if (reasons.length === 0) return { verdict: 'encrypted', ok: true, reasons: [] };
  return { verdict: input.received === 0 && input.clearPackets === 0 ? 'UNREACHABLE' : 'NOT ENCRYPTED', ok: false, reasons };
}

const involves = (p: Packet, ips: readonly string[]) => ips.includes(p.src) || ips.includes(p.dst);

export async function verifyLab(lab: LabState, o: LabVerifyOptions): Promise<VerifyReport> {
  const home = new NetnsHome(lab.paths.runRoot);
  const count = o.count ?? 3;
  const pairs: PairResult[] = [];
  const nodes = [...lab.nodes].sort((x, y) => x.index - y.index);
  for (let i = 0; i < nodes.length; i++) {
    for (let j = i + 1; j < nodes.length; j++) {
      const a = nodes[i]!, b = nodes[j]!;
      const expectEncrypted = !a.plain && !b.plain;
      const ends = probeEnds(a, b);
      const peerOf = (rs: PeerReading[] | null, other: LabNode) => rs?.find((p) => endpointHost(p.endpoint) === other.ip);
      const read = async (n: LabNode) => (n.plain ? null : readPeers(home.runner(n.ns), o.interfaceName));
      const before = [await read(a), await read(b)];
      const cap = await Capture.start(lab.bridge, 'br0');
      let res: { sent: number; received: number };
      let packets: Packet[];
      try {
        res = await pingCount(ends.from.ns, ends.to, count);
      } finally {
        packets = await cap.stop();
      }
      const after = [await read(a), await read(b)];
      const now = Date.now() / 1000;
      const sides: SideEvidence[] = [];
      if (expectEncrypted) {
        for (const [k, n, other] of [[0, a, b], [1, b, a]] as const) {
          const p0 = peerOf(before[k]!, other);
          const p1 = peerOf(after[k]!, other);
          sides.push({
            node: n.name,
            peer: p1?.publicKey ?? null,
            handshakeAgeS: ageOf(p1, now),
            txDelta: p1 ? p1.tx - (p0?.publicKey === p1.publicKey ? p0.tx : 0) : 0,
            rxDelta: p1 ? p1.rx - (p0?.publicKey === p1.publicKey ? p0.rx : 0) : 0,
          });
        }
      }
      const probeIPs = [ends.from.ip, ends.to];
      const clearPackets = packets.filter((p) => involves(p, probeIPs) && !(p.proto === 'udp' && (p.sport === o.listenPort || p.dport === o.listenPort))).length;
      const wireguardPackets = packets.filter((p) => p.proto === 'udp' && (p.sport === o.listenPort || p.dport === o.listenPort) && involves(p, [a.ip]) && involves(p, [b.ip])).length;
      const j0 = judgePair({ expectEncrypted, sent: res.sent, received: res.received, clearPackets, wireguardPackets, sides });
      pairs.push({
        a: a.name, b: b.name, expected: expectEncrypted ? 'encrypted' : 'clear', verdict: j0.verdict, ok: j0.ok,
        probe: { from: ends.from.ip, to: ends.to, sent: res.sent, received: res.received }, sides, clearPackets, wireguardPackets, reasons: j0.reasons,
      });
    }
  }
  return {
    scope: 'lab', lab: lab.name, time: new Date().toISOString(), ok: pairs.every((p) => p.ok), pairs, peers: [],
    notes: [`probe: ${count} pings from a pod of the first node to a pod of the second; capture: tcpdump on ${lab.bridge}/br0 (the underlay)`],
  };
}

// ---------------------------------------------------------------------------------------------------
// A real node: this node's peers

export interface PeerResult {
  readonly publicKey: string;
  readonly node: string | null;
  readonly endpoint: string | null;
  readonly allowedIPs: number;
  readonly handshakeAgeS: number | null;
  readonly rx: number;
  readonly tx: number;
  readonly probe: { readonly to: string; readonly received: number; readonly txDelta: number; readonly rxDelta: number } | null;
  readonly verdict: 'tunnel works' | 'idle (unproven)' | 'NO HANDSHAKE' | 'STALE HANDSHAKE' | 'PROBE NOT CARRIED';
  readonly ok: boolean;
}

export function judgePeer(p: PeerReading, now: number, probe: PeerResult['probe']): Pick<PeerResult, 'verdict' | 'ok'> {
  const age = ageOf(p, now);
  if (probe) {
    if (probe.received > 0 && probe.txDelta > 0 && probe.rxDelta > 0 && age !== null && age <= HANDSHAKE_FRESH_S) return { verdict: 'tunnel works', ok: true };
    if (age === null) return { verdict: 'NO HANDSHAKE', ok: false };
    return { verdict: 'PROBE NOT CARRIED', ok: false };
  }
  if (age !== null && age <= HANDSHAKE_FRESH_S) return { verdict: 'tunnel works', ok: true };
  if (p.tx === 0 && p.rx === 0) return { verdict: 'idle (unproven)', ok: true };
  return age === null ? { verdict: 'NO HANDSHAKE', ok: false } : { verdict: 'STALE HANDSHAKE', ok: false };
}

export interface NodeVerifyOptions {
  readonly interfaceName: string;
  /** Ping one /32 allowed IP of each peer and check the counters move. */
  readonly probe: boolean;
  /** Public key -> node name, from a snapshot (optional). */
  readonly names?: ReadonlyMap<string, string>;
  readonly run?: Runner;
}

export class VerifyError extends Error {
  override readonly name = 'VerifyError';
}

export async function verifyNode(o: NodeVerifyOptions): Promise<VerifyReport> {
  const run = o.run ?? defaultRunner;
  const before = await readPeers(run, o.interfaceName);
  if (before === null) throw new VerifyError(`there is no WireGuard device ${o.interfaceName} here (is wgplane running on this node?)`);
  const probes = new Map<string, { to: string; received: number }>();
  if (o.probe) {
    for (const p of before) {
      const host = p.allowedIPs.find((c) => /\/(32|128)$/.test(c));
      if (!host) continue;
      const to = host.replace(/\/\d+$/, '');
      probes.set(p.publicKey, { to, received: (await pingWith(run, to, 2)).received });
    }
  }
  const after = (await readPeers(run, o.interfaceName)) ?? [];
  const now = Date.now() / 1000;
  const peers: PeerResult[] = after.map((p) => {
    const b = before.find((x) => x.publicKey === p.publicKey);
    const pr = probes.get(p.publicKey);
    const probe = pr ? { to: pr.to, received: pr.received, txDelta: p.tx - (b?.tx ?? 0), rxDelta: p.rx - (b?.rx ?? 0) } : null;
    return {
      publicKey: p.publicKey, node: o.names?.get(p.publicKey) ?? null, endpoint: p.endpoint, allowedIPs: p.allowedIPs.length,
      handshakeAgeS: ageOf(p, now), rx: p.rx, tx: p.tx, probe, ...judgePeer(p, now, probe),
    };
  });
  return {
    scope: 'node', lab: null, time: new Date().toISOString(), ok: peers.every((p) => p.ok), pairs: [], peers,
    notes: [
      `A recent handshake (under ${HANDSHAKE_FRESH_S} s) proves the peer holds the private key of its published public key and the path to it works; counters that move under a probe prove the probe went through the tunnel.`,
      'This does not prove that no traffic bypasses the tunnel: only a capture on the underlay does (see `wgplane verify --lab`, or tcpdump on the node\'s uplink, which should show only UDP to the WireGuard port between node IPs).',
      ...(o.probe ? [] : ['No probe was sent (--probe pings one /32 allowed IP of each peer); idle peers are unproven.']),
    ],
  };
}

// ---------------------------------------------------------------------------------------------------
// Rendering

/** A handshake age for people. */
export const ageText = (s: number | null): string => (s === null ? 'never' : `${s}s`);

export function renderVerifyText(r: VerifyReport): string {
  const lines: string[] = [];
  if (r.scope === 'lab') {
    lines.push(`wgplane verify: lab ${r.lab}, ${r.pairs.length} pairs of nodes`);
    lines.push(...table(
      ['PAIR', 'EXPECTED', 'RESULT', 'PROBE', 'HANDSHAKE', 'COUNTERS (tx/rx bytes)', 'WIRE'],
      r.pairs.map((p) => [
        `${p.a} <-> ${p.b}`, p.expected, p.verdict, `${p.probe.from} -> ${p.probe.to} ${p.probe.received}/${p.probe.sent}`,
        p.sides.length ? p.sides.map((s) => ageText(s.handshakeAgeS)).join(' / ') : '-',
        p.sides.length ? p.sides.map((s) => `+${s.txDelta}/+${s.rxDelta}`).join(' ; ') : '-',
        `${p.wireguardPackets} wg, ${p.clearPackets} clear`,
      ]),
    ));
    for (const p of r.pairs.filter((x) => !x.ok)) lines.push(`  ${p.a} <-> ${p.b}: ${p.reasons.join('; ')}`);
  } else {
    lines.push(`wgplane verify: this node, ${r.peers.length} peers`);
    lines.push(...table(
      ['PEER', 'NODE', 'ENDPOINT', 'ALLOWED', 'HANDSHAKE', 'RX', 'TX', 'PROBE', 'RESULT'],
      r.peers.map((p) => [
        p.publicKey.slice(0, 12) + '...', p.node ?? '?', p.endpoint ?? '-', String(p.allowedIPs), ageText(p.handshakeAgeS), String(p.rx), String(p.tx),
        p.probe ? `${p.probe.to} ${p.probe.received > 0 ? 'ok' : 'no reply'} +${p.probe.txDelta}/+${p.probe.rxDelta}` : '-', p.verdict,
      ]),
    ));
  }
  for (const n of r.notes) lines.push(`note: ${n}`);
  if (r.scope === 'lab') lines.push(r.ok ? 'OK: every pair that should be encrypted is.' : 'FAILED: some traffic that should be encrypted is not (see above).');
  else lines.push(r.ok ? 'OK: no peer shows a broken tunnel.' : 'FAILED: some peers show no working tunnel (see above).');
  return lines.join('\n');
}
