// Writes the JSON List text of a generated cluster (what the decode-included cases read), in its own
// process so that generating it counts against no case. Usage: bench/prepare.ts FLAVOR NODES PODS SEED PATH.
// Compact JSON: kubectl's 4-space indent would make 5,000 x 110 longer than V8's largest string.
import { writeFileSync } from 'node:fs';
import { generateCluster, toListJson, type Flavor } from '../testing/generate.js';

const [flavor, nodes, pods, seed, path] = process.argv.slice(2);
if (!flavor || !nodes || !pods || !seed || !path || (flavor !== 'aks' && flavor !== 'podcidr')) {
  console.error('usage: bench/prepare.ts aks|podcidr NODES PODS SEED PATH');
  process.exit(2);
}
const { objects } = generateCluster({ flavor: flavor as Flavor, nodes: Number(nodes), podsPerNode: Number(pods), seed: Number(seed) });
writeFileSync(path, toListJson(objects, 0));
