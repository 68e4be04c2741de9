// The keygate command on MySQL / MariaDB: every command, run by the built binary.
import mysql from 'mysql2/promise';
import { describe } from 'vitest';
import { serviceUrl } from '../support/services.js';
import { randomTable } from '../stores/sql-extras.js';
import { cliStoreSuite, unreachable } from './store-suite.js';

const url = serviceUrl('mysql');

describe.skipIf(!url)('keygate command on MySQL / MariaDB', () => {
  cliStoreSuite({ name: 'MySQL', bus: false }, async () => {
    const table = randomTable('kg_cli');
    return {
      url: url as string,
      args: ['--table', table],
      ...(await unreachable(url as string)),
      cleanup: async () => {
        const connection = await mysql.createConnection({ uri: url as string });
        await connection.query(`DROP TABLE IF EXISTS \`${table}\``);
        await connection.end();
      },
    };
  });
});
