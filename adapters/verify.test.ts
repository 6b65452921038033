// The judgement of `wgplane verify` on its evidence, and the reading of `wg show dump` (the private key is
// dropped). The end-to-end proof on real packets is in cmd/lab.kernel.test.ts.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { HANDSHAKE_FRESH_S, endpointHost, judgePair, judgePeer, parseWgDump, renderVerifyText, type SideEvidence, type VerifyReport } from './verify.js';

const PRIV = 'yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=';
const PUB1 = 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=';
const PUB2 = 'TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=';
const DUMP = [
  `${PRIV}\tHIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=\t51820\t0x100000`,
  `${PUB1}\t(none)\t10.224.0.5:51820\t10.224.0.5/32,10.224.2.10/32\t1700000000\t476\t532\t0`,
  `${PUB2}\t(none)\t[fd00::2]:51820\t(none)\t0\t0\t0\toff`,
].join('\n') + '\n';

describe('wg show dump', () => {
  it('reads peers and never keeps the private key', () => {
    const peers = parseWgDump(DUMP);
    assert.equal(peers.length, 2);
    assert.deepEqual(peers[0], { publicKey: PUB1, endpoint: '10.224.0.5:51820', allowedIPs: ['10.224.0.5/32', '10.224.2.10/32'], latestHandshake: 1700000000, rx: 476, tx: 532 });
    assert.deepEqual(peers[1]!.allowedIPs, []);
    assert.ok(!JSON.stringify(peers).includes(PRIV));
  });
  it('takes the host out of an endpoint', () => {
    assert.equal(endpointHost('10.224.0.5:51820'), '10.224.0.5');
    assert.equal(endpointHost('[fd00::2]:51820'), 'fd00::2');
    assert.equal(endpointHost(null), null);
  });
});

const side = (node: string, over: Partial<SideEvidence> = {}): SideEvidence => ({ node, peer: PUB1, handshakeAgeS: 1, txDelta: 500, rxDelta: 500, ...over });
const good = { expectEncrypted: true, sent: 3, received: 3, clearPackets: 0, wireguardPackets: 8, sides: [side('a'), side('b')] };

describe('judging a pair', () => {
  it('encrypted: reply, only WireGuard on the wire, fresh handshakes, counters moving on both sides', () => {
    assert.deepEqual(judgePair(good), { verdict: 'encrypted', ok: true, reasons: [] });
  });
  const broken: [string, Partial<typeof good>, RegExp][] = [
    ['probe packets in clear', { clearPackets: 3 }, /3 packets of the probe seen in clear/],
    ['no WireGuard packets', { wireguardPackets: 0 }, /only 0 WireGuard packets/],
    ['no peer on one side', { sides: [side('a', { peer: null }), side('b')] }, /a has no WireGuard peer/],
    ['no handshake', { sides: [side('a'), side('b', { handshakeAgeS: null })] }, /b: no handshake/],
    ['stale handshake', { sides: [side('a', { handshakeAgeS: HANDSHAKE_FRESH_S + 1 }), side('b')] }, /older than 180 s/],
    ['counters still', { sides: [side('a', { txDelta: 0 }), side('b', { rxDelta: 0 })] }, /a: the peer's transmit counter did not move/],
  ];
  for (const [what, over, reason] of broken) {
    it(`not encrypted: ${what}`, () => {
      const j = judgePair({ ...good, ...over });
      assert.equal(j.ok, false);
      assert.equal(j.verdict, 'NOT ENCRYPTED');
      assert.ok(j.reasons.some((r) => reason.test(r)), j.reasons.join('; '));
    });
  }
  it('unreachable when nothing got through and nothing leaked', () => {
    const j = judgePair({ ...good, received: 0, wireguardPackets: 2, sides: [side('a', { peer: null }), side('b')] });
    assert.deepEqual([j.verdict, j.ok], ['UNREACHABLE', false]);
  });
  it('a pair with a plain node is clear (expected) when reachable, a failure when not', () => {
    assert.deepEqual(judgePair({ ...good, expectEncrypted: false, clearPackets: 6, wireguardPackets: 0, sides: [] }).verdict, 'clear (expected)');
    const j = judgePair({ ...good, expectEncrypted: false, received: 0, sides: [] });
    assert.deepEqual([j.verdict, j.ok], ['UNREACHABLE', false]);
  });
});

describe('judging a peer of this node', () => {
  const now = 1700000100;
  const [p] = parseWgDump(DUMP) as [ReturnType<typeof parseWgDump>[0]];
  it('a fresh handshake proves the tunnel; a stale one with traffic does not', () => {
    assert.equal(judgePeer(p, now, null).verdict, 'tunnel works');
    assert.deepEqual(judgePeer(p, p.latestHandshake + 1000, null), { verdict: 'STALE HANDSHAKE', ok: false });
  });
  it('an idle peer (no traffic ever) is unproven, not failed; with a probe it must handshake', () => {
    const idle = { ...p, latestHandshake: 0, rx: 0, tx: 0 };
    assert.deepEqual(judgePeer(idle, now, null), { verdict: 'idle (unproven)', ok: true });
    assert.deepEqual(judgePeer(idle, now, { to: '10.224.0.5', received: 0, txDelta: 0, rxDelta: 0 }), { verdict: 'NO HANDSHAKE', ok: false });
  });
  it('a probe must move both counters', () => {
    assert.equal(judgePeer(p, now, { to: '10.224.0.5', received: 2, txDelta: 200, rxDelta: 200 }).ok, true);
    assert.deepEqual(judgePeer(p, now, { to: '10.224.0.5', received: 2, txDelta: 0, rxDelta: 0 }), { verdict: 'PROBE NOT CARRIED', ok: false });
  });
});

it('the text report says FAILED and why', () => {
  const j = judgePair({ ...good, clearPackets: 3 });
  const r: VerifyReport = {
    scope: 'lab', lab: 'x', time: 't', ok: false, peers: [], notes: [],
    pairs: [{ a: 'n0', b: 'n1', expected: 'encrypted', ...j, probe: { from: '1.1.1.1', to: '2.2.2.2', sent: 3, received: 3 }, sides: good.sides, clearPackets: 3, wireguardPackets: 8 }],
  };
  const text = renderVerifyText(r);
  assert.match(text, /n0 <-> n1 +encrypted +NOT ENCRYPTED/);
  assert.match(text, /n0 <-> n1: 3 packets of the probe seen in clear/);
  assert.match(text, /^FAILED/m);
});
