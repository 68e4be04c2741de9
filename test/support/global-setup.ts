// Says plainly, before and after the run, which suites were skipped and what enables each.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { SERVICES } from './services.js';

const ROOT = join(__dirname, '..', '..');

function notice(): string | null {
  const missing = Object.entries(SERVICES).filter(([, s]) => !process.env[s.variable]);
  const lines = missing.map(([name, s]) => `  - ${name} store tests: SKIPPED (set ${s.variable}, e.g. ${s.variable}=${s.example})`);
  // NestJS 11 is a second install of its own (see CONTRIBUTING.md).
  if (!existsSync(join(ROOT, 'test/nestjs/v11/node_modules/@nestjs/core/package.json'))) {
    lines.push('  - keygate/nestjs on NestJS 11: SKIPPED (run npm ci --prefix test/nestjs/v11)');
  }
  if (lines.length === 0) return null;
  const tail = process.env.CI === 'true' ? 'CI=true: these suites FAIL instead of skipping.' : 'Everything else runs.';
  return `\nkeygate tests: some suites are not enabled:\n${lines.join('\n')}\n${tail}\n\n`;
}

export default function setup(): () => void {
  const text = notice();
  if (text) process.stdout.write(text);
  // Again at the end, where the summary is read.
  return () => {
    if (text) process.stdout.write(text);
  };
}
