// Packet capture with tcpdump (on the lab bridge, or any interface of a namespace): what really crossed the wire.
import { execa, type ResultPromise } from 'execa';

export interface Packet {
  readonly src: string;
  readonly dst: string;
  readonly proto: string; // 'udp', 'icmp', 'tcp', 'arp', ...
  readonly sport: number | null;
  readonly dport: number | null;
  readonly line: string;
}

/** Parses one line of `tcpdump -n -q -l` output (IPv4 and IPv6). */
export function parseTcpdumpLine(line: string): Packet | null {
  const m = /\b(IP6?) (\S+) > (\S+): (.*)$/.exec(line);
  if (!m) return null;
  const split = (s: string, v6: boolean): [string, number | null] => {
    const t = s.replace(/:$/, '');
    const i = t.lastIndexOf('.');
    const port = i > 0 ? Number(t.slice(i + 1)) : NaN;
    // IPv4 addresses have 3 dots without a port, 4 with; IPv6 ones have no dots unless a port follows.
    const hasPort = Number.isInteger(port) && (v6 ? true : t.split('.').length === 5);
    return hasPort ? [t.slice(0, i), port] : [t, null];
  };
  const v6 = m[1] === 'IP6';
  const [src, sport] = split(m[2]!, v6);
  const [dst, dport] = split(m[3]!, v6);
  const rest = m[4]!.toLowerCase();
  const proto = rest.startsWith('udp') ? 'udp' : rest.startsWith('icmp') ? 'icmp' : rest.startsWith('tcp') ? 'tcp' : rest.split(/[ ,]/)[0] ?? '?';
  return { src, dst, proto, sport: proto === 'icmp' ? null : sport, dport: proto === 'icmp' ? null : dport, line };
}

export class Capture {
  private readonly lines: string[] = [];
  private constructor(private readonly proc: ResultPromise) {}

  /** Starts tcpdump on `iface` in network namespace `ns` and waits until it listens. */
  static async start(ns: string, iface: string, filter: readonly string[] = ['ip', 'or', 'ip6']): Promise<Capture> {
    const proc = execa('ip', ['netns', 'exec', ns, 'tcpdump', '-i', iface, '-n', '-q', '-l', '-U', ...filter], { reject: false, buffer: false, stdin: 'ignore' });
    const c = new Capture(proc);
    let ready: () => void;
    const listening = new Promise<void>((r) => (ready = r));
    proc.stderr?.on('data', (d: Buffer) => { if (d.toString().includes('listening on')) ready(); });
    let partial = '';
    proc.stdout?.on('data', (d: Buffer) => {
      partial += d.toString();
      const parts = partial.split('\n');
      partial = parts.pop() ?? '';
      c.lines.push(...parts);
    });
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        listening,
        proc.then((r) => { throw new Error(`tcpdump exited before listening: ${String(r.stderr ?? '').trim() || `exit ${r.exitCode}`}`); }),
        new Promise((_, rej) => { timer = setTimeout(() => rej(new Error(`tcpdump did not start on ${iface} in ${ns} within 5 s`)), 5000); }),
      ]);
    } catch (err) {
      proc.kill('SIGKILL');
      await proc;
      throw err;
    } finally {
      clearTimeout(timer);
    }
    return c;
  }

  /** Stops the capture and returns the parsed IP packets seen. */
  async stop(): Promise<Packet[]> {
    await new Promise((r) => setTimeout(r, 300)); // let the last packets arrive
    this.proc.kill('SIGINT');
    await this.proc;
    return this.lines.map(parseTcpdumpLine).filter((p): p is Packet => p !== null);
  }
}
