import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../../server/config/config.js';
import { Allowlist, parseCidr } from '../../../common/ipv4.js';

const KEY = Buffer.alloc(32, 7).toString('base64');

describe('loadConfig', () => {
  it('applies the documented defaults', () => {
    const c = loadConfig({ VAULT_NODE_ID: 'n1' });
    expect(c).toMatchObject({
      dataDir: './data',
      apiAddr: { host: '0.0.0.0', port: 8200 },
      raftAddr: { host: '0.0.0.0', port: 8201 },
      nodeId: 'n1',
      kmsMode: 'local',
      dekCacheTtlSecs: 300,
      rewrapEnabled: false,
      rewrapPollSecs: 86400,
      rewrapMaxPerSec: 20,
      trustProxy: false,
      maxValueBytes: 65536,
      bootstrapToken: null,
    });
    expect(c.peers).toEqual([{ id: 'n1', addr: c.raftAdvertise }]);
    expect(c.readAllowlist.entries).toEqual([]);
  });

  it.each([
    ['VAULT_API_ADDR', 'localhost'],
    ['VAULT_API_ADDR', '127.0.0.1:99999'],
    ['VAULT_KMS_MODE', 'gcp'],
    ['VAULT_DEK_CACHE_TTL_SECS', '-1'],
    ['VAULT_DEK_CACHE_TTL_SECS', '5m'],
    ['VAULT_TRUST_PROXY', 'maybe'],
    ['VAULT_READ_ALLOWLIST', '10.0.0.0/33'],
    ['VAULT_READ_ALLOWLIST', '127.0.0.1,bogus'],
    ['VAULT_READ_ALLOWLIST', '256.1.1.1'],
    ['VAULT_MAX_VALUE_BYTES', '0'],
    ['VAULT_PEERS', 'n1=127.0.0.1'],
    ['VAULT_PEERS', 'n1=127.0.0.1:1,n1=127.0.0.1:2'],
    ['VAULT_BOOTSTRAP_TOKEN', 'short'],
    ['VAULT_NODE_ID', 'bad id'],
  ])('names %s when it is malformed (%s)', (name, value) => {
    const env: Record<string, string> = { VAULT_NODE_ID: 'n1', [name]: value };
    expect(() => loadConfig(env)).toThrow(ConfigError);
    try {
      loadConfig(env);
    } catch (err) {
      expect((err as ConfigError).variable).toBe(name);
      expect((err as Error).message.startsWith(name)).toBe(true);
    }
  });

  it('requires a key id in aws mode', () => {
    expect(() => loadConfig({ VAULT_NODE_ID: 'n1', VAULT_KMS_MODE: 'aws' })).toThrow(/VAULT_KMS_KEY_ID/);
    expect(loadConfig({ VAULT_NODE_ID: 'n1', VAULT_KMS_MODE: 'aws', VAULT_KMS_KEY_ID: 'alias/coffer' }).kmsKeyId).toBe('alias/coffer');
  });

  it('needs both TLS files or neither', () => {
    expect(() => loadConfig({ VAULT_NODE_ID: 'n1', VAULT_TLS_CERT_FILE: 'c.pem' })).toThrow(/VAULT_TLS_KEY_FILE/);
  });

  it('parses peers and checks this node is among them', () => {
    const c = loadConfig({ VAULT_NODE_ID: 'b', VAULT_PEERS: 'a=127.0.0.1:1, b=127.0.0.2:2', VAULT_CLUSTER_KEY: KEY });
    expect(c.peers.map((p) => p.id)).toEqual(['a', 'b']);
    expect(c.peers[1]!.addr).toEqual({ host: '127.0.0.2', port: 2 });
    // Advertised as the peers list says; still listening where VAULT_RAFT_ADDR's default says.
    expect(c.raftAdvertise).toEqual({ host: '127.0.0.2', port: 2 });
    expect(c.raftAddr).toEqual({ host: '0.0.0.0', port: 8201 });
  });
});

describe('Allowlist', () => {
  it('is fail-closed when empty', () => {
    expect(Allowlist.parse('').allows('127.0.0.1')).toBe(false);
  });

  it('matches addresses and CIDRs', () => {
    const a = Allowlist.parse('127.0.0.1, 10.0.0.0/8,192.168.1.0/30');
    expect(a.allows('127.0.0.1')).toBe(true);
    expect(a.allows('127.0.0.2')).toBe(false);
    expect(a.allows('10.255.1.2')).toBe(true);
    expect(a.allows('11.0.0.1')).toBe(false);
    expect(a.allows('192.168.1.3')).toBe(true);
    expect(a.allows('192.168.1.4')).toBe(false);
    expect(a.allows(null)).toBe(false);
    expect(a.allows('::1')).toBe(false);
  });

  it('normalizes a CIDR base and accepts /0', () => {
    expect(parseCidr('10.1.2.3/8').network).toBe(parseCidr('10.0.0.0/8').network);
    expect(Allowlist.parse('0.0.0.0/0').allows('8.8.8.8')).toBe(true);
  });

  it('rejects octal-looking and malformed addresses', () => {
    expect(() => parseCidr('010.0.0.1')).toThrow();
    expect(() => parseCidr('1.2.3')).toThrow();
    expect(() => parseCidr('1.2.3.4/')).toThrow();
    expect(() => parseCidr('1.2.3.4/8/8')).toThrow();
  });
});

describe('overlay', () => {
  const base = { VAULT_NODE_ID: 'n1', VAULT_OVERLAY_CIDR: '10.77.0.0/24' };

  it('accepts Raft and management on overlay addresses', () => {
    const c = loadConfig({ ...base, VAULT_RAFT_ADDR: '10.77.0.1:8201', VAULT_MGMT_ADDR: '10.77.0.1:8202' });
    expect(c.overlayCidr).toBe('10.77.0.0/24');
    expect(c.mgmtAddr).toEqual({ host: '10.77.0.1', port: 8202 });
    expect(c.raftAdvertise).toEqual({ host: '10.77.0.1', port: 8201 });
  });

  it('derives the Raft listen and advertise address from this node\'s VAULT_PEERS entry', () => {
    // What the operator gives every pod: one template, per-pod overlay addresses only in VAULT_PEERS.
    const c = loadConfig({
      ...base,
      VAULT_PEERS: 'n0=10.77.0.1:8201,n1=10.77.0.2:8201,n2=10.77.0.3:8201',
      VAULT_MGMT_ADDR: 'overlay:8202',
      VAULT_CLUSTER_KEY: KEY,
    });
    expect(c.raftAdvertise).toEqual({ host: '10.77.0.2', port: 8201 });
    expect(c.raftAddr).toEqual({ host: '10.77.0.2', port: 8201 });
    expect(c.mgmtAddr).toEqual({ host: '10.77.0.2', port: 8202 });
  });

  it('refuses the 0.0.0.0 default when this node has no overlay address, and says how to fix it', () => {
    expect(() => loadConfig({ ...base, VAULT_PEERS: 'n0=10.77.0.1:8201' })).toThrow(/VAULT_RAFT_ADDR: 0\.0\.0\.0 is not inside the overlay.*list this node in VAULT_PEERS/);
  });

  it('takes overlay:PORT for the management listener only with an overlay', () => {
    expect(() => loadConfig({ VAULT_NODE_ID: 'n1', VAULT_MGMT_ADDR: 'overlay:8202' })).toThrow(/VAULT_MGMT_ADDR: overlay:PORT needs VAULT_OVERLAY_CIDR/);
    expect(() => loadConfig({ ...base, VAULT_RAFT_ADDR: '10.77.0.1:8201', VAULT_MGMT_ADDR: 'overlay:99999' })).toThrow(/VAULT_MGMT_ADDR/);
  });

  it.each([
    [{ VAULT_RAFT_ADDR: '0.0.0.0:8201', VAULT_RAFT_ADVERTISE: '10.77.0.1:8201' }, 'VAULT_RAFT_ADDR'],
    [{ VAULT_RAFT_ADDR: '192.168.1.5:8201' }, 'VAULT_RAFT_ADDR'],
    [{ VAULT_RAFT_ADDR: '10.77.0.1:8201', VAULT_RAFT_ADVERTISE: 'vault-0.vault-headless:8201' }, 'VAULT_RAFT_ADVERTISE'],
    [{ VAULT_RAFT_ADDR: '10.77.0.1:8201', VAULT_MGMT_ADDR: '0.0.0.0:8202' }, 'VAULT_MGMT_ADDR'],
    [{ VAULT_RAFT_ADDR: '10.77.0.1:8201', VAULT_OVERLAY_CIDR: '10.77.0.0/40' }, 'VAULT_OVERLAY_CIDR'],
  ])('refuses a Raft or management listener off the overlay (%j)', (env, variable) => {
    try {
      loadConfig({ ...base, ...env });
      expect.unreachable('should have refused');
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).variable).toBe(variable);
    }
  });
});


describe('perimeter settings', () => {
  const peers = { VAULT_NODE_ID: 'a', VAULT_PEERS: 'a=127.0.0.1:1,b=127.0.0.2:2' };

  it('refuses to start a node with other peers without a cluster key', () => {
    expect(() => loadConfig(peers)).toThrow(/VAULT_CLUSTER_KEY: required when VAULT_PEERS lists other nodes/);
  });

  it('lets a lone node run without one (it uses an ephemeral key)', () => {
    expect(loadConfig({ VAULT_NODE_ID: 'a' }).clusterKey).toBeNull();
  });

  it('decodes the current and previous cluster keys', () => {
    const previous = Buffer.alloc(32, 9).toString('base64');
    const c = loadConfig({ ...peers, VAULT_CLUSTER_KEY: KEY, VAULT_CLUSTER_KEY_PREVIOUS: previous });
    expect(Buffer.from(c.clusterKey!)).toEqual(Buffer.alloc(32, 7));
    expect(Buffer.from(c.clusterKeyPrevious!)).toEqual(Buffer.alloc(32, 9));
  });

  it.each([
    [{ VAULT_CLUSTER_KEY: Buffer.alloc(16).toString('base64') }, 'VAULT_CLUSTER_KEY'],
    [{ VAULT_CLUSTER_KEY: 'not base64!' }, 'VAULT_CLUSTER_KEY'],
    [{ VAULT_CLUSTER_KEY: KEY, VAULT_CLUSTER_KEY_PREVIOUS: 'AAAA' }, 'VAULT_CLUSTER_KEY_PREVIOUS'],
    [{ VAULT_CLUSTER_KEY_PREVIOUS: KEY }, 'VAULT_CLUSTER_KEY_PREVIOUS'],
    [{ VAULT_TRUST_PROXY: 'true' }, 'VAULT_TRUSTED_PROXIES'],
    [{ VAULT_TRUST_PROXY: 'true', VAULT_TRUSTED_PROXIES: '10.0.0.0/33' }, 'VAULT_TRUSTED_PROXIES'],
    [{ VAULT_API_HOSTNAMES: 'vault.example.com,bad_name' }, 'VAULT_API_HOSTNAMES'],
    [{ VAULT_MIN_FREE_BYTES: '-5' }, 'VAULT_MIN_FREE_BYTES'],
  ])('names the variable that is wrong (%j)', (env, variable) => {
    try {
      loadConfig({ VAULT_NODE_ID: 'a', ...env });
      expect.unreachable('should have refused');
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).variable).toBe(variable);
    }
  });

  it('reads trusted proxies, API host names and the free-space floor', () => {
    const c = loadConfig({
      VAULT_NODE_ID: 'a',
      VAULT_TRUST_PROXY: 'true',
      VAULT_TRUSTED_PROXIES: '10.0.0.0/8, 192.168.1.5',
      VAULT_API_HOSTNAMES: 'Vault.Coffer.svc, vault.coffer.svc.cluster.local',
      VAULT_MIN_FREE_BYTES: '1048576',
    });
    expect(c.trustedProxies!.allows('10.1.2.3')).toBe(true);
    expect(c.trustedProxies!.allows('192.168.1.6')).toBe(false);
    expect(c.apiHostnames).toEqual(['vault.coffer.svc', 'vault.coffer.svc.cluster.local']);
    expect(c.minFreeBytes).toBe(1048576);
    expect(loadConfig({ VAULT_NODE_ID: 'a' }).minFreeBytes).toBe(67108864);
  });
});
