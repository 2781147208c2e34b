// tcpdump on the underlay bridge (inside the switch namespace), writing a pcap
// file: the header summary and the raw bytes of every captured packet are
// both available to assertions.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { sh } from './netns.js';

export interface CaptureResult {
  /** One `tcpdump -n -q` summary per packet, e.g. `IP 10.231.5.1.51820 > 10.231.5.2.51820: UDP, length 148`. */
  lines: string[];
  /** The pcap file's bytes (headers and payloads of every packet). */
  raw: Buffer;
}

export class Capture {
  private constructor(private readonly proc: ChildProcess, private readonly file: string, private readonly exited: Promise<void>) {}

  /** Starts capturing; resolves once tcpdump listens. */
  static async start(ns: string, iface: string, filter: string, file: string): Promise<Capture> {
    const proc = spawn('ip', ['netns', 'exec', ns, 'tcpdump', '-i', iface, '-n', '-U', '-s', '0', '-w', file, filter], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`tcpdump did not start: ${err}`)), 10_000);
      proc.stderr!.on('data', (d: Buffer) => {
        err += d.toString();
        if (/listening on/.test(err)) {
          clearTimeout(timer);
          resolve();
        }
      });
      void exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`tcpdump exited: ${err}`));
      });
    });
    return new Capture(proc, file, exited);
  }

  async stop(): Promise<CaptureResult> {
    if (this.proc.exitCode === null) this.proc.kill('SIGINT'); // tcpdump flushes the file and exits
    const killer = setTimeout(() => this.proc.kill('SIGKILL'), 5_000);
    await this.exited;
    clearTimeout(killer);
    const text = await sh('tcpdump', ['-r', this.file, '-n', '-q', '-t']);
    return { lines: text.split('\n').filter(Boolean), raw: fs.readFileSync(this.file) };
  }
}
