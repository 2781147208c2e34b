// The fault-injecting TCP proxy the chaos test puts on every Raft link.
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { FaultProxy } from '../helpers/fault-proxy.js';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0)) await f();
});

async function echoServer(): Promise<net.AddressInfo> {
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => s.destroy());
    s.pipe(s);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  cleanup.push(() => new Promise((r) => { sockets.forEach((s) => s.destroy()); srv.close(() => r()); }));
  return srv.address() as net.AddressInfo;
}

/** Connects, sends `msg`, and reports what came back within `ms` (or how the connection ended). */
function exchange(port: number, msg: string, ms = 300): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let got = '';
    const done = (v: string) => {
      clearTimeout(timer);
      s.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(got || 'silence'), ms);
    s.on('data', (d) => {
      got += d.toString();
      if (got === msg) done(got);
    });
    s.on('error', () => done(got || 'error'));
    s.on('close', () => done(got || 'closed'));
    s.write(msg);
  });
}

describe('FaultProxy', () => {
  it('forwards in pass, cuts in drop, swallows in blackhole, and passes again after healing', async () => {
    const target = await echoServer();
    const proxy = await FaultProxy.start('127.0.0.1', '127.0.0.1', target.port);
    cleanup.push(() => proxy.close());
    expect(proxy.address).toBe(`127.0.0.1:${proxy.port}`);
    expect(await exchange(proxy.port, 'hello')).toBe('hello');

    proxy.setMode('drop');
    expect(['error', 'closed']).toContain(await exchange(proxy.port, 'dropped'));

    proxy.setMode('blackhole');
    expect(await exchange(proxy.port, 'swallowed')).toBe('silence');

    proxy.setMode('pass');
    expect(await exchange(proxy.port, 'again')).toBe('again');
    expect(proxy.accepted).toBe(4);
  });

  it('kills connections that were open when the link is cut', async () => {
    const target = await echoServer();
    const proxy = await FaultProxy.start('127.0.0.1', '127.0.0.1', target.port);
    cleanup.push(() => proxy.close());
    const s = net.connect({ host: '127.0.0.1', port: proxy.port });
    const ended = new Promise<string>((resolve) => {
      s.on('error', () => resolve('error'));
      s.on('close', () => resolve('closed'));
    });
    await new Promise<void>((r) => s.once('data', () => r()).write('ping'));
    proxy.setMode('drop');
    expect(['error', 'closed']).toContain(await ended);
  });

  it('stops listening on close', async () => {
    const target = await echoServer();
    const proxy = await FaultProxy.start('127.0.0.1', '127.0.0.1', target.port);
    await proxy.close();
    expect(['error', 'closed']).toContain(await exchange(proxy.port, 'x'));
  });
});
