// Test configuration: every test under test/, with a notice of the suites skipped for lack of a server.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'examples/testing/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 20_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // The admin page's styles are served from their `?raw` import: without this, Vitest reads CSS files as empty.
    css: { include: [/src\/admin\/page\/.*\.css/] },
  },
});
