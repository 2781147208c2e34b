// Test keys (generated with `wg genkey | wg pubkey` for these tests only) and
// a fake host for the agent: an in-memory interface that answers the `ip` and
// `wg` commands the agent runs, the way wireguard-go and iproute2 do.
import type { CommandRunner, RunOptions, RunResult } from '../../../wg-agent/runner.js';
import { CommandError } from '../../../wg-agent/runner.js';

export const KEYS = {
  n1: { priv: 'eIwMUp7NT06DIPNI1dzafLrMXSEH23zg6NykffYkyE8=', pub: '8JOUOnF/vjve6Bjo+1uqh/BxYPw9gWemTKWCBG23mDA=' },
  n2: { priv: '+L+5EG3HldPajWgFAQXK8Q1iIqRAFKWugXDk0CQLgHQ=', pub: 'crvc+a00UNO+ujm2E5zOTMB4YkFC8yoYafsJ7q5V6RM=' },
  n3: { priv: 'iAFTsy8G+3GP+SoBtpd3WY1NKhXUVBAy3iaNHduYyUo=', pub: 'gksi6mtXHj7ZtyEMG3YTtbxRpKyduCKjwZcL5s+7LF0=' },
};

export function peersDoc(overrides: Record<string, unknown> = {}, peers?: unknown[]): Record<string, unknown> {
  return {
    version: 1,
    listenPort: 51820,
    cidr: '10.77.0.0/24',
    peers: peers ?? [
      { name: 'n1', publicKey: KEYS.n1.pub, address: '10.77.0.1', endpoint: 'n1.vault-headless.ns.svc:51820' },
      { name: 'n2', publicKey: KEYS.n2.pub, address: '10.77.0.2', endpoint: 'n2.vault-headless.ns.svc:51820' },
      { name: 'n3', publicKey: KEYS.n3.pub, address: '10.77.0.3', endpoint: '192.0.2.3:51820' },
    ],
    ...overrides,
  };
}

interface FakePeer {
  publicKey: string;
  endpoint: string | null;
  allowedIps: string[];
  keepalive: number;
  latestHandshake: number;
}

/** One wireguard-go interface plus its link, as `ip` and `wg` see them. */
export class FakeHost implements CommandRunner {
  exists = false;
  up = false;
  mtu = 1420;
  addresses: string[] = [];
  privateKey: string | null = null;
  listenPort = 0;
  peers: FakePeer[] = [];
  /** Every command run, as argv (the private key can only arrive on secret stdin). */
  readonly calls: string[][] = [];
  /** Secret stdin seen, as text (to check it was the key and nothing else). */
  readonly secrets: string[] = [];
  /** Maps private key -> public key (the fake cannot do X25519). */
  constructor(private readonly pubOf: (priv: string) => string, private readonly iface = 'wg0') {}

  /** What wireguard-go does on (re)start: a fresh, empty interface. */
  reset(): void {
    this.exists = true;
    this.up = false;
    this.mtu = 1420;
    this.addresses = [];
    this.privateKey = null;
    this.listenPort = 0;
    this.peers = [];
  }

  vanish(): void {
    this.exists = false;
  }

  async run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    this.calls.push([file, ...args]);
    const out = (s: string): RunResult => ({ stdout: Buffer.from(s) });
    const fail = (msg: string) => new CommandError([file, ...args].join(' '), msg, 1);
    if (file === 'ip') {
      if (args.join(' ') === `-j addr show dev ${this.iface}`) {
        if (!this.exists) throw fail(`Device "${this.iface}" does not exist.`);
        const flags = ['POINTOPOINT', 'NOARP', ...(this.up ? ['UP', 'LOWER_UP'] : [])];
        const addr_info = this.addresses.map((a) => ({ family: 'inet', local: a.split('/')[0], prefixlen: Number(a.split('/')[1]) }));
        return out(JSON.stringify([{ ifname: this.iface, flags, mtu: this.mtu, addr_info }]));
      }
      if (!this.exists) throw fail('Cannot find device');
      if (args[0] === 'address' && args[1] === 'add') this.addresses.push(args[2] as string);
      else if (args[0] === 'address' && args[1] === 'del') this.addresses = this.addresses.filter((a) => a !== args[2]);
      else if (args[0] === 'link' && args[1] === 'set') {
        this.mtu = Number(args[args.indexOf('mtu') + 1]);
        this.up = args.includes('up');
      } else throw fail(`fake ip: unexpected ${args.join(' ')}`);
      return out('');
    }
    if (file === 'wg') {
      if (!this.exists) throw fail('Unable to access interface: No such file or directory');
      if (args[0] === 'show' && args[2] === 'dump') {
        const head = [this.privateKey ?? '(none)', this.privateKey ? this.pubOf(this.privateKey) : '(none)', String(this.listenPort), 'off'].join('\t');
        const lines = this.peers.map((p) =>
          [p.publicKey, '(none)', p.endpoint ?? '(none)', p.allowedIps.join(',') || '(none)', String(p.latestHandshake), '0', '0', p.keepalive ? String(p.keepalive) : 'off'].join('\t'),
        );
        return out([head, ...lines].join('\n') + '\n');
      }
      if (args[0] === 'set') {
        let i = 2;
        let peer: FakePeer | null = null;
        while (i < args.length) {
          const word = args[i++] as string;
          const val = args[i] as string;
          if (word === 'private-key') {
            if (val !== '/dev/stdin' || !opts.secretStdin) throw fail('private-key must come from /dev/stdin');
            const text = opts.secretStdin.toString('latin1').trim();
            this.secrets.push(text);
            this.privateKey = text;
            i++;
          } else if (word === 'listen-port') {
            this.listenPort = Number(val);
            i++;
          } else if (word === 'peer') {
            i++;
            if (args[i] === 'remove') {
              this.peers = this.peers.filter((p) => p.publicKey !== val);
              peer = null;
              i++;
            } else {
              peer = this.peers.find((p) => p.publicKey === val) ?? null;
              if (!peer) {
                peer = { publicKey: val, endpoint: null, allowedIps: [], keepalive: 0, latestHandshake: 0 };
                this.peers.push(peer);
              }
            }
          } else if (peer && word === 'allowed-ips') {
            peer.allowedIps = val.split(',');
            i++;
          } else if (peer && word === 'endpoint') {
            peer.endpoint = val;
            i++;
          } else if (peer && word === 'persistent-keepalive') {
            peer.keepalive = Number(val);
            i++;
          } else throw fail(`fake wg: unexpected ${word}`);
        }
        return out('');
      }
    }
    throw fail('fake: unknown command');
  }
}
