// Says plainly, before and after the run, which store suites were skipped and which variable enables each.
import { SERVICES } from './services.js';

function notice(): string | null {
  const missing = Object.entries(SERVICES).filter(([, s]) => !process.env[s.variable]);
  if (missing.length === 0) return null;
  const lines = missing.map(([name, s]) => `  - ${name} store tests: SKIPPED (set ${s.variable}, e.g. ${s.variable}=${s.example})`);
  const tail = process.env.CI === 'true' ? 'CI=true: these suites FAIL instead of skipping.' : 'Everything else runs.';
  return `\nkeygate tests: some real-server suites are not enabled:\n${lines.join('\n')}\n${tail}\n\n`;
}

export default function setup(): () => void {
  const text = notice();
  if (text) process.stdout.write(text);
  // Again at the end, where the summary is read.
  return () => {
    if (text) process.stdout.write(text);
  };
}
