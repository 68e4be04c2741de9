// The keygate command on MySQL / MariaDB: every command, run by the built binary.
import mysql from 'mysql2/promise';
import { describe } from 'vitest';
import { serviceUrl } from '../support/services.js';
import { refusedPort } from '../support/tcp.js';
import { randomTable } from '../stores/sql-extras.js';
import { cliStoreSuite } from './store-suite.js';

const url = serviceUrl('mysql');

describe.skipIf(!url)('keygate command on MySQL / MariaDB', () => {
  cliStoreSuite({ name: 'MySQL', bus: false }, async () => {
    const table = randomTable('kg_cli');
    const down = new URL(url as string);
    down.port = String(await refusedPort());
    down.password = 'down-secret-pw';
    return {
      url: url as string,
      args: ['--table', table],
      downUrl: down.toString(),
      downSecrets: ['down-secret-pw'],
      cleanup: async () => {
        const connection = await mysql.createConnection({ uri: url as string });
        await connection.query(`DROP TABLE IF EXISTS \`${table}\``);
        await connection.end();
      },
    };
  });
});
