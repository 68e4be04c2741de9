// Types for the other installed majors of better-sqlite3 (npm aliases), which ship without their own.

declare module 'better-sqlite3-11' {
  import Database = require('better-sqlite3');
  export = Database;
}

declare module 'better-sqlite3-13' {
  import Database = require('better-sqlite3');
  export = Database;
}
