// One of several processes verifying one token as fast as 50 callers can, against a shared store and
// limiter; reports the admissions per limiter window (rate mode) or in all (quota mode) to its parent.
import { createKeyManager, type KeyStore, type LimiterAnswer, type RateLimiter } from '../../src/index.js';
import { mysqlLimiter, mysqlStore } from '../../adapters/mysql/index.js';
import { postgresLimiter, postgresStore } from '../../adapters/postgres/index.js';
import { redisLimiter, redisStore } from '../../adapters/redis/index.js';
import { sqliteLimiter, sqliteStore } from '../../adapters/sqlite/index.js';
import { connect, type Backend } from './exactness-backends.js';

const env = (name: string): string => {
  const value = process.env[name];
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
};

const backend = env('BACKEND') as Backend;
const mode = env('MODE') as 'rate' | 'quota';
const callers = Number(env('CALLERS'));
const startAt = Number(env('START_AT'));
const durationMs = Number(process.env.DURATION_MS ?? 0);
const attemptsPerCaller = Number(process.env.ATTEMPTS ?? 0);
const token = env('TOKEN');

const conn = await connect(backend, env('TARGET'));
const names = { table: env('TABLE'), limiterTable: env('LIMITER_TABLE'), prefix: env('PREFIX'), limiterPrefix: env('LIMITER_PREFIX') };
let store: KeyStore;
let inner: RateLimiter;
switch (backend) {
  case 'postgres':
    store = postgresStore(conn.pg, { table: names.table });
    inner = postgresLimiter(conn.pg, { table: names.limiterTable });
    break;
  case 'mysql':
    store = mysqlStore(conn.mysql, { table: names.table });
    inner = mysqlLimiter(conn.mysql, { table: names.limiterTable });
    break;
  case 'redis':
    store = redisStore(conn.redis, { prefix: names.prefix });
    inner = redisLimiter(conn.redis, { prefix: names.limiterPrefix });
    break;
  case 'sqlite':
    store = sqliteStore(conn.sqlite, { table: names.table });
    inner = sqliteLimiter(conn.sqlite, { table: names.limiterTable });
    break;
}

// Which window each admission was counted in, as the limiter itself reports it.
const perWindow = new Map<number, number>();
const limiter: RateLimiter = {
  take: async (group, buckets, cost, now) => {
    const answer: LimiterAnswer = await inner.take(group, buckets, cost, now);
    const window = answer.states[0]?.window;
    if (answer.allowed && window !== undefined) perWindow.set(window, (perWindow.get(window) ?? 0) + 1);
    return answer;
  },
};
const keys = createKeyManager({ store, storeTimeoutMs: 10_000, cache: { ttlMs: 600_000 }, rateLimits: { limiter } });

let attempts = 0;
let admitted = 0;
let errors = 0;
let firstError: string | null = null;
const codes: Record<string, number> = {};
await new Promise((resolve) => setTimeout(resolve, Math.max(0, startAt - Date.now())));
const end = startAt + durationMs;
await Promise.all(
  Array.from({ length: callers }, async () => {
    for (let i = 0; mode === 'rate' ? Date.now() < end : i < attemptsPerCaller; i++) {
      attempts++;
      try {
        const result = await keys.verify(token);
        if (result.valid) admitted++;
        else codes[result.code] = (codes[result.code] ?? 0) + 1;
      } catch (error) {
        errors++;
        firstError ??= String((error as Error).message);
      }
    }
  }),
);
await keys.close();
await conn.close();
process.send?.({ attempts, admitted, errors, firstError, codes, windows: [...perWindow] }, () => process.exit(0));
