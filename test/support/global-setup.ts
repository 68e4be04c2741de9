// Says plainly, before the run, which store suites will be skipped and which variable enables each.
import { SERVICES } from './services.js';

export default function setup(): void {
  const missing = Object.entries(SERVICES).filter(([, s]) => !process.env[s.variable]);
  if (missing.length === 0) return;
  const lines = missing.map(([name, s]) => `  - ${name} store tests: SKIPPED (set ${s.variable}, e.g. ${s.variable}=${s.example})`);
  const tail = process.env.CI === 'true' ? 'CI=true: these suites will FAIL instead of skipping.' : 'Everything else runs.';
  process.stdout.write(`\nkeygate tests: some real-server suites are not enabled:\n${lines.join('\n')}\n${tail}\n\n`);
}
