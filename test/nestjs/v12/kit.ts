// NestJS 12, from the repository's node_modules, with keygate/nestjs from source.

import * as common from '@nestjs/common';
import * as core from '@nestjs/core';
import * as express from '@nestjs/platform-express';
import * as fastify from '@nestjs/platform-fastify';
import * as keygate from '../../../adapters/nestjs/index.js';
import { ValidationError } from '../../../src/errors.js';
import { checkedKit, type NestKit } from '../kit.js';

export function loadKit(): Promise<NestKit> {
  return checkedKit(import.meta.url, { common, core, express, fastify, keygate, ValidationError });
}
