// Structured JSON logs (pino). Nothing secret is ever logged: the daemon logs public keys at most, and
// fields named like a private key are redacted as a second line of defence.
import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger } from 'pino';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function parseLogLevel(v: string): LogLevel {
  if ((LOG_LEVELS as readonly string[]).includes(v)) return v as LogLevel;
  throw new Error(`--log-level ${JSON.stringify(v)}: want one of ${LOG_LEVELS.join(', ')}`);
}

export function createLogger(opts: { readonly level?: LogLevel; readonly destination?: DestinationStream; readonly base?: Record<string, unknown> } = {}): Logger {
  return pino(
    {
      level: opts.level ?? 'info',
      base: { app: 'wgplane', ...(opts.base ?? {}) },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: ['privateKey', '*.privateKey', 'private_key', '*.private_key'], censor: '[redacted]' },
    },
    opts.destination ?? pino.destination({ fd: 1, sync: true }),
  );
}
