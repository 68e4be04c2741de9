// Which real servers the store tests may use, from KEYGATE_TEST_* variables; CI=true makes them required.

/** The test servers and the variable that enables each. */
export const SERVICES = {
  postgres: { variable: 'KEYGATE_TEST_POSTGRES_URL', example: 'postgres://postgres@127.0.0.1:5432/test' },
  mysql: { variable: 'KEYGATE_TEST_MYSQL_URL', example: 'mysql://root@127.0.0.1:3306/test' },
  redis: { variable: 'KEYGATE_TEST_REDIS_URL', example: 'redis://127.0.0.1:6379' },
  redisCluster: {
    variable: 'KEYGATE_TEST_REDIS_CLUSTER_URL',
    example: 'redis://127.0.0.1:7301,redis://127.0.0.1:7302,redis://127.0.0.1:7303 after bash .ci/redis-cluster.sh start',
  },
} as const;

export type ServiceName = keyof typeof SERVICES;

/**
 * The URL of a test server, or `undefined` when its variable is unset (the suite then skips).
 * Under CI=true an unset variable is an error: CI must run every store on its real server.
 */
export function serviceUrl(name: ServiceName): string | undefined {
  const { variable, example } = SERVICES[name];
  const url = process.env[variable];
  if (url) return url;
  if (process.env.CI === 'true') {
    throw new Error(`${variable} is not set, and CI=true requires the ${name} tests to run (e.g. ${variable}=${example}).`);
  }
  return undefined;
}
