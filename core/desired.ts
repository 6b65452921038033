// desired(snapshot, node, host): the dataplane this node must have. Pure. Built on the per-node
// contributions and IP-claims index of desired-index.ts, which the daemon updates incrementally.
import * as E from 'fp-ts/lib/Either.js';
import type { ClusterSnapshot, DesiredDataplane, HostFacts, NodeName } from './model.js';
import { buildDesiredIndex, desiredOf, type DesiredError } from './desired-index.js';

export type { DesiredError } from './desired-index.js';

export function desired(snapshot: ClusterSnapshot, nodeName: NodeName, host: HostFacts): E.Either<DesiredError, DesiredDataplane> {
  const r = buildDesiredIndex(snapshot, nodeName, host);
  if (E.isLeft(r)) return r;
  return E.right(r.right.kind === 'disabled' ? r.right : desiredOf(r.right));
}
