// keygate/redis: the Redis key store, the Redis rate limiter and the Redis pub/sub invalidation bus, for ioredis and node-redis.

export { redisStore, RedisKeyStore } from './store.js';
export type { RedisStore, RedisStoreOptions } from './store.js';
export { redisInvalidation } from './invalidation.js';
export type {
  RedisInvalidationOptions,
  IoRedisSubscriberLike,
  NodeRedisSubscriberLike,
  NodeRedisClusterSubscriberLike,
} from './invalidation.js';
export type { RedisClientLike, IoRedisClientLike, NodeRedisClientLike, NodeRedisClusterLike } from './client.js';
export { redisLimiter } from './limiter.js';
export type { RedisLimiter, RedisLimiterOptions } from './limiter.js';
