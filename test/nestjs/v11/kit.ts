// NestJS 11, from test/nestjs/v11/node_modules, with keygate/nestjs from the built package copied in there.
//
// Imported only once that install and the copy exist (see ../nest11.test.ts): without them these
// imports would quietly resolve the repository's NestJS 12.

import * as common from '@nestjs/common';
import * as core from '@nestjs/core';
import * as express from '@nestjs/platform-express';
import * as fastify from '@nestjs/platform-fastify';
import { checkedKit, type NestKit } from '../kit.js';

/** The copy of the package a user's install would have: package.json and dist/, under this directory's node_modules. */
export const INSTALLED_KEYGATE = new URL('./node_modules/keygate/', import.meta.url);

export async function loadKit(): Promise<NestKit> {
  // The file `keygate/nestjs` names in the package's exports; it resolves @nestjs/* from where it lies.
  const keygate = (await import(new URL('dist/nestjs.js', INSTALLED_KEYGATE).href)) as NestKit['keygate'];
  const { ValidationError } = (await import(new URL('dist/index.js', INSTALLED_KEYGATE).href)) as typeof import('../../../src/index.js');
  // Typed as NestJS 12 (when this install is there, TypeScript sees NestJS 11's types here).
  const nest = { common, core, express, fastify } as unknown as Pick<NestKit, 'common' | 'core' | 'express' | 'fastify'>;
  return checkedKit(import.meta.url, { ...nest, keygate, ValidationError });
}
