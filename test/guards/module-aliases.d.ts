// Types for the second installed major of Express and Koa (npm aliases), which ship without their own.

declare module 'express4' {
  import express = require('express');
  export = express;
}

declare module 'koa2' {
  import Koa = require('koa');
  export = Koa;
}
