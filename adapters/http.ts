// The daemon's one HTTP server: /metrics (Prometheus), /healthz (the process is alive and the loop is not
// stuck), /readyz (200 once the source synced and the first apply succeeded, else 503) and /status (JSON).
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export const DEFAULT_METRICS_ADDR = '0.0.0.0:9476';

export interface Probe {
  readonly ok: boolean;
  readonly detail: string;
}

export interface HttpHandlers {
  readonly metrics: () => Promise<{ readonly contentType: string; readonly body: string }>;
  readonly health: () => Probe;
  readonly ready: () => Probe;
  readonly status: () => unknown;
}

export interface ListenAddr {
  readonly host: string;
  readonly port: number;
}

/** Parses `--metrics-addr`: `HOST:PORT`, `:PORT` (all addresses), `[IPv6]:PORT`, or `off` (null). */
export function parseListenAddr(v: string): ListenAddr | null {
  if (v === 'off') return null;
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(v);
  const port = m ? Number(m[3]) : NaN;
  if (!m || !(port >= 0 && port <= 65535)) throw new Error(`--metrics-addr ${JSON.stringify(v)}: want HOST:PORT, :PORT or off`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

export interface RunningServer {
  readonly port: number;
  readonly url: string;
  close(): Promise<void>;
}

export async function startHttpServer(addr: ListenAddr, h: HttpHandlers): Promise<RunningServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const send = (code: number, type: string, body: string) => {
      res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'text/plain', 'method not allowed\n');
    switch (path) {
      case '/metrics':
        h.metrics().then(
          (m) => send(200, m.contentType, m.body),
          (err: Error) => send(500, 'text/plain', `metrics failed: ${err.message}\n`),
        );
        return;
      case '/healthz':
      case '/readyz': {
        const p = path === '/healthz' ? h.health() : h.ready();
        return send(p.ok ? 200 : 503, 'text/plain', `${p.ok ? 'ok' : 'not ok'}: ${p.detail}\n`);
      }
      case '/status':
        return send(200, 'application/json', JSON.stringify(h.status(), null, 2) + '\n');
      default:
        return send(404, 'text/plain', 'not found: try /metrics, /healthz, /readyz, /status\n');
    }
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(addr.port, addr.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const host = addr.host.includes(':') ? `[${addr.host}]` : addr.host === '0.0.0.0' ? '127.0.0.1' : addr.host;
  return {
    port,
    url: `http://${host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
