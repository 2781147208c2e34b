// The agent's own HTTP endpoints, for the kubelet and for people:
//   GET /health  200 while the agent runs
//   GET /ready   200 {"ready":true} once the overlay is up and the current files are applied,
//                else 503 {"ready":false,"reason":"…"}
//   GET /status  the agent's view: interface, address, own public key, peers (never a private key)
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface StatusSource {
  readonly ready: boolean;
  readonly reason: string | null;
  status(): unknown;
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function createAgentServer(agent: StatusSource): http.Server {
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return send(res, 405, { error: { code: 'method_not_allowed', message: 'only GET' } });
    }
    switch (url) {
      case '/health':
        return send(res, 200, { status: 'ok' });
      case '/ready':
        return agent.ready ? send(res, 200, { ready: true }) : send(res, 503, { ready: false, reason: agent.reason ?? 'not ready' });
      case '/status':
        return send(res, 200, agent.status());
      default:
        return send(res, 404, { error: { code: 'not_found', message: 'routes: /health, /ready, /status' } });
    }
  });
  server.keepAliveTimeout = 5_000;
  server.requestTimeout = 10_000;
  return server;
}

/** Listens; resolves with the bound address. */
export function listen(server: http.Server, host: string, port: number): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}
