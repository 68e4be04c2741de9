// The admin API described as OpenAPI 3.1: served by every mount at `openapi.json`, exported as an object.

import { deepFreeze } from '../freeze.js';

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const nullable = (schema: Record<string, unknown>) => ({ oneOf: [schema, { type: 'null' }] });
const dateTime = { type: 'string', format: 'date-time' };
const jsonContent = (schema: Record<string, unknown>) => ({ 'application/json': { schema } });
const errorAnswer = (description: string) => ({ description, content: jsonContent(ref('Error')) });

/** Answers every route may give. */
const COMMON_ERRORS = {
  '400': errorAnswer('`VALIDATION_FAILED`: a bad key id, field, filter or `If-Match` (every one at fault in `fields`); `INVALID_JSON`.'),
  '403': errorAnswer('`FORBIDDEN`: the host said no to this action; `ORIGIN_MISMATCH`: a write without a same-origin `Origin`.'),
  '405': errorAnswer('`METHOD_NOT_ALLOWED`: the route does not take this method (see `Allow`).'),
  '500': errorAnswer('`INTERNAL_ERROR`: an unexpected failure, reported to the server log.'),
  '503': {
    description: '`STORE_UNAVAILABLE` and the other store failures: try again shortly (see `Retry-After`).',
    headers: { 'Retry-After': { schema: { type: 'string' } } },
    content: jsonContent(ref('Error')),
  },
};
const WRITE_ERRORS = {
  '400': errorAnswer('`VALIDATION_FAILED` (every field at fault in `fields`) or `INVALID_JSON`.'),
  '413': errorAnswer('`PAYLOAD_TOO_LARGE`: a body over 32 KiB.'),
  '415': errorAnswer('`UNSUPPORTED_MEDIA_TYPE`: a body without `Content-Type: application/json`.'),
};
const NOT_FOUND = { '404': errorAnswer("`KEY_NOT_FOUND`: no key with this id in this account (another account's key reads the same).") };
const etag = { ETag: { description: "The key's version, for `If-Match`.", schema: { type: 'string' } } };
const keyAnswer = (description: string) => ({ description, headers: etag, content: jsonContent(ref('KeyAnswer')) });
const idParameter = { name: 'id', in: 'path', required: true, schema: { type: 'string', minLength: 1 } };

/**
 * The admin API as an OpenAPI 3.1 document. Paths are relative to the mount's `api/` (each mount
 * serves a copy with its own `servers` entry at `openapi.json`). Frozen.
 *
 * @example
 * import { openApiDocument } from 'keygate/admin'
 * Object.keys(openApiDocument.paths) // ['/config', '/keys', '/keys/{id}', …]
 */
export const openApiDocument = deepFreeze({
  openapi: '3.1.0',
  info: {
    title: 'keygate admin API',
    version: '1',
    description:
      'Manage the API keys of the signed-in account: list, create, edit, activate, deactivate, regenerate, delete, and revoke a leaked token. ' +
      'Writes need `Content-Type: application/json` (with a body) and a same-origin `Origin` header.',
  },
  paths: {
    '/config': {
      get: {
        operationId: 'getConfig',
        summary: 'What the page needs: the scope catalog, the IP rule, limits.',
        responses: { '200': { description: 'The configuration.', content: jsonContent(ref('Config')) }, ...COMMON_ERRORS },
      },
    },
    '/keys': {
      get: {
        operationId: 'listKeys',
        summary: "One page of the account's keys, oldest first.",
        parameters: [
          { name: 'active', in: 'query', schema: { type: 'string', enum: ['true', 'false'] } },
          { name: 'expiringBefore', in: 'query', description: 'Only keys that expire before this instant.', schema: dateTime },
          { name: 'unusedSince', in: 'query', description: 'Only keys never used, or last used before this instant.', schema: dateTime },
          { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 100, default: 50 } },
          { name: 'cursor', in: 'query', description: 'The `nextCursor` of the previous page.', schema: { type: 'string' } },
        ],
        responses: {
          '200': { description: 'A page of keys.', content: jsonContent(ref('KeyPage')) },
          ...COMMON_ERRORS,
          '400': errorAnswer('`VALIDATION_FAILED`: a bad filter (every one at fault in `fields`).'),
        },
      },
      post: {
        operationId: 'createKey',
        summary: 'Creates a key. Its token is in this answer only.',
        requestBody: { required: true, content: jsonContent(ref('CreateKey')) },
        responses: {
          '201': { description: 'The key and its token.', headers: etag, content: jsonContent(ref('KeyWithToken')) },
          '409': errorAnswer(
            '`STORE_CONFLICT`: the store refused the new key as a duplicate (a generated id or token clashed); create it again.',
          ),
          ...WRITE_ERRORS,
          ...COMMON_ERRORS,
        },
      },
    },
    '/keys/{id}': {
      parameters: [idParameter],
      get: {
        operationId: 'getKey',
        summary: 'One key.',
        responses: { '200': keyAnswer('The key.'), ...NOT_FOUND, ...COMMON_ERRORS },
      },
      patch: {
        operationId: 'updateKey',
        summary: 'Edits a key; with `If-Match` (or `version`), only if nobody changed it since.',
        parameters: [{ name: 'If-Match', in: 'header', description: 'The key\'s ETag as read, e.g. `"7"`.', schema: { type: 'string' } }],
        requestBody: { required: true, content: jsonContent(ref('UpdateKey')) },
        responses: {
          '200': keyAnswer('The key as edited.'),
          ...NOT_FOUND,
          '409': errorAnswer("`VERSION_CONFLICT`: the body's `version` is stale; nothing was saved."),
          '412': errorAnswer('`VERSION_CONFLICT`: the `If-Match` version is stale; nothing was saved.'),
          ...WRITE_ERRORS,
          ...COMMON_ERRORS,
        },
      },
      delete: {
        operationId: 'deleteKey',
        summary: 'Deletes a key for good.',
        responses: { '204': { description: 'Deleted.' }, ...NOT_FOUND, ...WRITE_ERRORS, ...COMMON_ERRORS },
      },
    },
    '/keys/{id}/activate': {
      parameters: [idParameter],
      post: {
        operationId: 'activateKey',
        summary: 'Sets Active on.',
        responses: { '200': keyAnswer('The key.'), ...NOT_FOUND, ...WRITE_ERRORS, ...COMMON_ERRORS },
      },
    },
    '/keys/{id}/deactivate': {
      parameters: [idParameter],
      post: {
        operationId: 'deactivateKey',
        summary: 'Sets Active off: every request with the key fails until it is activated.',
        responses: { '200': keyAnswer('The key.'), ...NOT_FOUND, ...WRITE_ERRORS, ...COMMON_ERRORS },
      },
    },
    '/keys/{id}/rotate': {
      parameters: [idParameter],
      post: {
        operationId: 'rotateKey',
        summary: 'Issues a new token; the old one keeps working for the grace period.',
        requestBody: {
          required: false,
          content: jsonContent({
            type: 'object',
            additionalProperties: false,
            properties: { gracePeriodMs: { type: 'integer', minimum: 0, maximum: 2_592_000_000 } },
          }),
        },
        responses: {
          '200': { description: 'The key and its new token.', headers: etag, content: jsonContent(ref('KeyWithToken')) },
          ...NOT_FOUND,
          ...WRITE_ERRORS,
          ...COMMON_ERRORS,
        },
      },
    },
    '/revoke': {
      post: {
        operationId: 'revokeToken',
        summary: 'Deactivates the key a (leaked) token belongs to.',
        requestBody: {
          required: true,
          content: jsonContent({
            type: 'object',
            additionalProperties: false,
            required: ['token'],
            properties: { token: { type: 'string', minLength: 1 } },
          }),
        },
        responses: {
          '200': { description: 'The key, now inactive.', content: jsonContent(ref('KeyAnswer')) },
          '404': errorAnswer('`KEY_NOT_FOUND`: no key of this account has this token.'),
          ...WRITE_ERRORS,
          ...COMMON_ERRORS,
        },
      },
    },
  },
  components: {
    schemas: {
      RateLimit: {
        type: 'object',
        additionalProperties: false,
        required: ['limit', 'windowMs'],
        properties: { limit: { type: 'integer', minimum: 1 }, windowMs: { type: 'integer', minimum: 1 } },
      },
      Refill: {
        type: 'object',
        additionalProperties: false,
        required: ['amount', 'intervalMs'],
        properties: { amount: { type: 'integer', minimum: 1 }, intervalMs: { type: 'integer', minimum: 1 } },
      },
      Key: {
        type: 'object',
        additionalProperties: false,
        required: [
          'id',
          'name',
          'active',
          'scopes',
          'scopeLabels',
          'allowedIps',
          'hint',
          'createdAt',
          'updatedAt',
          'lastUsedAt',
          'lastUsedIp',
          'expiresAt',
          'rateLimit',
          'remaining',
          'refill',
          'version',
        ],
        properties: {
          id: { type: 'string' },
          name: { type: 'string', minLength: 1, maxLength: 100 },
          active: { type: 'boolean' },
          scopes: { type: 'array', items: { type: 'string' } },
          scopeLabels: { type: 'array', items: { type: 'string' } },
          allowedIps: { type: 'array', items: { type: 'string' } },
          hint: { type: 'string', description: 'A display form of the token, not enough to use it.' },
          createdAt: dateTime,
          updatedAt: dateTime,
          lastUsedAt: nullable(dateTime),
          lastUsedIp: nullable({ type: 'string' }),
          expiresAt: nullable(dateTime),
          rateLimit: nullable(ref('RateLimit')),
          remaining: nullable({ type: 'integer', minimum: 0 }),
          refill: nullable(ref('Refill')),
          version: { type: 'integer', minimum: 1 },
        },
      },
      KeyAnswer: { type: 'object', additionalProperties: false, required: ['key'], properties: { key: ref('Key') } },
      KeyWithToken: {
        type: 'object',
        additionalProperties: false,
        required: ['key', 'token'],
        properties: { key: ref('Key'), token: { type: 'string', description: 'The whole token, shown this once.' } },
      },
      KeyPage: {
        type: 'object',
        additionalProperties: false,
        required: ['keys', 'nextCursor'],
        properties: { keys: { type: 'array', items: ref('Key') }, nextCursor: nullable({ type: 'string' }) },
      },
      KeyFields: {
        type: 'object',
        properties: {
          name: { type: 'string', description: '1..100 characters, trimmed.' },
          active: { type: 'boolean' },
          scopes: {
            description: 'Scope names of the catalog (`GET /config`), as a list or comma-separated.',
            oneOf: [
              { type: 'array', items: { type: 'string' }, minItems: 1 },
              { type: 'string', minLength: 1 },
            ],
          },
          allowedIps: {
            description: 'Exact addresses, comma-separated without spaces, or as a list; blank or null for any address.',
            oneOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }, { type: 'null' }],
          },
          expiresAt: nullable(dateTime),
          rateLimit: nullable(ref('RateLimit')),
          remaining: nullable({ type: 'integer', minimum: 0 }),
          refill: nullable(ref('Refill')),
        },
      },
      CreateKey: {
        allOf: [ref('KeyFields'), { type: 'object', required: ['name', 'scopes'] }],
        unevaluatedProperties: false,
      },
      UpdateKey: {
        allOf: [
          ref('KeyFields'),
          {
            type: 'object',
            properties: {
              version: { type: 'integer', minimum: 1, description: 'Save only if the key is at this version (409 otherwise).' },
            },
          },
        ],
        unevaluatedProperties: false,
      },
      ScopeInfo: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'label', 'implies'],
        properties: { name: { type: 'string' }, label: { type: 'string' }, implies: { type: 'array', items: { type: 'string' } } },
      },
      Config: {
        type: 'object',
        additionalProperties: false,
        required: ['scopes', 'ipRule', 'prefix', 'nameMax', 'rotateGraceMs', 'brand'],
        properties: {
          scopes: { type: 'array', items: ref('ScopeInfo') },
          ipRule: { type: 'string' },
          prefix: { type: 'string' },
          nameMax: { type: 'integer' },
          rotateGraceMs: { type: 'integer', minimum: 0 },
          brand: {
            type: 'object',
            additionalProperties: false,
            required: ['name'],
            properties: { name: nullable({ type: 'string' }) },
          },
        },
      },
      Error: {
        type: 'object',
        additionalProperties: false,
        required: ['error'],
        properties: {
          error: {
            type: 'object',
            additionalProperties: false,
            required: ['code', 'message'],
            properties: {
              code: {
                type: 'string',
                enum: [
                  'VALIDATION_FAILED',
                  'INVALID_JSON',
                  'FORBIDDEN',
                  'ORIGIN_MISMATCH',
                  'KEY_NOT_FOUND',
                  'NOT_FOUND',
                  'METHOD_NOT_ALLOWED',
                  'VERSION_CONFLICT',
                  'PAYLOAD_TOO_LARGE',
                  'UNSUPPORTED_MEDIA_TYPE',
                  'STORE_UNAVAILABLE',
                  'STORE_OUTCOME_UNKNOWN',
                  'STORE_CONFLICT',
                  'INVALIDATION_UNCONFIRMED',
                  'MANAGER_CLOSED',
                  'INTERNAL_ERROR',
                ],
              },
              message: { type: 'string' },
              fields: {
                type: 'array',
                items: {
                  type: 'object',
                  additionalProperties: false,
                  required: ['field', 'message'],
                  properties: { field: { type: 'string' }, message: { type: 'string' } },
                },
              },
            },
          },
        },
      },
    },
  },
});
