// Runs one benchmark case in its own process and sends its rows to the parent.

const [caseName, ...flags] = process.argv.slice(2);
const quick = flags.includes('--quick');
const log = (message) => process.send({ type: 'log', message });

try {
  const { run } = await import(`../cases/${caseName}.mjs`);
  const rows = await run({ quick, log });
  process.send({ type: 'rows', rows }, () => process.exit(0));
} catch (error) {
  process.send({ type: 'error', message: error instanceof Error ? (error.stack ?? error.message) : String(error) }, () => process.exit(1));
}
