#!/usr/bin/env node
// The keygate command (`npx keygate --help`): manages and checks API keys in the store a URL names.

import { main } from './main.js';

// `keygate list | head -1` closes the pipe early: stop writing, but still close the store connection.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code !== 'EPIPE') throw error;
});

void main({
  argv: process.argv.slice(2),
  env: process.env,
  cwd: process.cwd(),
  stdin: process.stdin,
  stdout: process.stdout,
  stderr: process.stderr,
  script: process.argv[1],
}).then((code) => {
  // Every connection is closed by now: the process ends as soon as the output is written.
  process.exitCode = code;
});
