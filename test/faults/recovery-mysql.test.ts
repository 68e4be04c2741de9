// MySQL/MariaDB: an outage ends when the network heals (test/support/recovery-suite.ts).
import { recoverySuite } from '../support/recovery-suite.js';

recoverySuite('mysql');
