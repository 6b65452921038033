// Plain-text tables for people (status, verify, lab status): columns padded to their widest cell, two
// spaces apart, no trailing white space.
export function textTable(head: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const fmt = (r: readonly string[]) => r.map((c, i) => c.padEnd(w[i]!)).join('  ').trimEnd();
  return [fmt(head), ...rows.map(fmt)];
}
