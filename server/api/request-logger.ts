// Per-request loggers created on first use. Fastify makes a child logger for
// every request (bound to its request id); with pino that is an object with
// its own formatters and pre-serialized, redacted bindings. Requests are not
// logged (disableRequestLogging) and almost never log anything themselves, so
// building one per request was pure overhead on the read path. The real pino
// child is made, with the same bindings and options, the first time anything
// is logged through it or it is asked for a child.
import type { FastifyBaseLogger } from 'fastify';

type Bindings = Parameters<FastifyBaseLogger['child']>[0];
type ChildOptions = NonNullable<Parameters<FastifyBaseLogger['child']>[1]>;

const LEVEL_METHODS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
type LevelMethod = (typeof LEVEL_METHODS)[number];

// The level methods are put on the prototype below (one function each, not one closure per request).
export interface LazyChildLogger extends Pick<FastifyBaseLogger, LevelMethod> {}

export class LazyChildLogger implements FastifyBaseLogger {
  private real: FastifyBaseLogger | null = null;

  constructor(
    private readonly parent: FastifyBaseLogger,
    private readonly bindings: Bindings,
    private readonly options: ChildOptions | undefined,
  ) {}

  /** The pino child, made on first use. */
  get resolved(): FastifyBaseLogger {
    this.real ??= this.parent.child(this.bindings, this.options);
    return this.real;
  }

  get level(): string {
    return this.real ? this.real.level : (this.options?.level ?? this.parent.level);
  }
  set level(level: string) {
    this.resolved.level = level;
  }

  child(bindings: Bindings, options?: ChildOptions): FastifyBaseLogger {
    return this.resolved.child(bindings, options);
  }
}

for (const method of LEVEL_METHODS) {
  Object.defineProperty(LazyChildLogger.prototype, method, {
    value: function (this: LazyChildLogger, ...args: unknown[]): void {
      const real = this.resolved;
      (real[method] as (...a: unknown[]) => void).apply(real, args);
    },
    writable: true,
    configurable: true,
  });
}

/** For Fastify's `childLoggerFactory`. Fastify passes `{}` for "no options", which pino treats as options given. */
export function lazyChildLogger(parent: FastifyBaseLogger, bindings: Bindings, options: ChildOptions | undefined): FastifyBaseLogger {
  return new LazyChildLogger(parent, bindings, options && hasKeys(options) ? options : undefined);
}

function hasKeys(o: object): boolean {
  for (const k in o) if (Object.hasOwn(o, k)) return true;
  return false;
}
