// The baseline for bench/run.ts: a bare Fastify route that returns a constant
// body shaped and sized like a secret read response. Same Fastify version, a
// response schema like Coffer's routes, no hooks, no logging. Prints
// {"url": "..."} on stdout once listening; exits on SIGTERM/SIGINT.
import Fastify from 'fastify';

const BODY = {
  name: 'bench/r0',
  version: 1,
  value: 'x'.repeat(256),
  created_at: '2025-01-01T00:00:00.000Z',
};

const app = Fastify({ logger: false });
app.get(
  '/bare',
  {
    schema: {
      response: {
        200: {
          type: 'object',
          properties: { name: { type: 'string' }, version: { type: 'integer' }, value: { type: 'string' }, created_at: { type: 'string' } },
        },
      },
    },
  },
  async () => BODY,
);

await app.listen({ host: '127.0.0.1', port: 0 });
const addr = app.server.address();
const port = typeof addr === 'object' && addr ? addr.port : 0;
process.stdout.write(JSON.stringify({ url: `http://127.0.0.1:${port}` }) + '\n');

const stop = () => {
  void app.close().then(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
