// keygate/testing: the store contract suite for store authors, and test keys for applications' own tests.

export { storeContractSuite } from './store-contract.js';
export type { StoreFixture, StoreContractOptions } from './store-contract.js';
export type { TestRunner, TestBody } from './runner.js';
export { createTestKeys } from './test-keys.js';
export type { TestKeys, TestKeysOptions, TestClock, MintOptions, MintedKey, DateInput } from './test-keys.js';
export { limiterContractSuite } from './limiter-contract.js';
export type { LimiterFixture, LimiterContractOptions } from './limiter-contract.js';
