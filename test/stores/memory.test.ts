// MemoryStore on the shared contract suite.
import { inspect } from 'node:util';
import { MemoryStore } from '../../adapters/memory/index.js';
import { describeStoreContract } from '../contract/store-contract.js';

describeStoreContract('MemoryStore', async () => {
  const store = new MemoryStore();
  return {
    store,
    dump: async () => inspect(store, { depth: Infinity, maxArrayLength: Infinity, maxStringLength: Infinity, showHidden: true }),
    cleanup: async () => {},
  };
});
