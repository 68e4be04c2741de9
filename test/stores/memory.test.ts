// MemoryStore on the shared contract suite.
import { inspect } from 'node:util';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { MemoryStore } from '../../adapters/memory/index.js';
import { storeContractSuite } from '../../adapters/testing/index.js';

storeContractSuite(
  { describe, it, beforeAll, afterAll },
  async () => {
    const store = new MemoryStore();
    return {
      store,
      dump: async () => inspect(store, { depth: Infinity, maxArrayLength: Infinity, maxStringLength: Infinity, showHidden: true }),
      cleanup: async () => {},
    };
  },
  { name: 'MemoryStore' },
);
