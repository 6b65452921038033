// Printing plans and results.
import { Option } from 'commander';
import type { DesiredDataplane, Plan } from '../core/model.js';
import { renderPlanJson, renderPlanText } from '../planner/render.js';
import { describeDesired } from './common.js';

export type Output = 'text' | 'json';

export const outputOption = () => new Option('-o, --output <format>', 'text or json').choices(['text', 'json']).default('text');
export const backendOption = () =>
  new Option('--wireguard <mode>', 'WireGuard implementation: kernel module, userspace wireguard-go, or auto').choices(['auto', 'kernel', 'userspace']).default('auto');

export function print(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : text + '\n');
}

export function showPlan(p: Plan, d: DesiredDataplane | null, output: Output, backend: string | null, maxLines?: number): void {
  if (output === 'json') {
    print(JSON.stringify(renderPlanJson(p), null, 2));
  } else {
    print(renderPlanText(p, { ...(d ? { header: describeDesired(d, backend) } : {}), ...(maxLines ? { maxPerGroup: maxLines } : {}) }));
  }
}
