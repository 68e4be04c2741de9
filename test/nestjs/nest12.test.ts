// keygate/nestjs from source on NestJS 12 (the repository's own), Express and Fastify.

import { describeNest } from './suite.js';
import { loadKit } from './v12/kit.js';

describeNest('12', loadKit);
