// Binding a listener, with errors that say which one and why.
import type { FastifyInstance } from 'fastify';

/** Listens, or fails with a message that names the listener and the address (a busy port, a foreign address). */
export async function listenOn(app: FastifyInstance, addr: { host: string; port: number }, what: string): Promise<void> {
  try {
    await app.listen({ host: addr.host, port: addr.port });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'EADDRINUSE' ? 'the address is already in use' : code === 'EADDRNOTAVAIL' ? 'no such local address' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw new Error(`${what} cannot listen on ${addr.host}:${addr.port}: ${why}`, { cause: err });
  }
}

/** The URL the listener answers on (the bound port when the configured one was 0). */
export function listenerUrl(app: FastifyInstance, configured: { host: string; port: number }, tls: boolean): string {
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : configured.port;
  return `${tls ? 'https' : 'http'}://${configured.host === '0.0.0.0' ? '127.0.0.1' : configured.host}:${port}`;
}
