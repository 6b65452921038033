#!/usr/bin/env node
// The CLI entry point: the compiled TypeScript lives in dist/ (built by `npm ci` through `prepare`).
import('../dist/cmd/main.js').catch((err) => {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/cmd/main.js')) {
    process.stderr.write('wgplane: dist/ is missing; run `npm ci` (or `npm run build`) first\n');
    process.exit(1);
  }
  throw err;
});
