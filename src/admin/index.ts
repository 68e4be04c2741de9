// keygate/admin: the "API Keys" admin page and its JSON API, framework-neutral. The mounts live beside each
// framework's guard: adminRouter (keygate/express), adminMiddleware (keygate/koa), adminPlugin (keygate/fastify),
// adminHandler (keygate/fetch).

export { createAdmin, IP_RULE, ADMIN_BODY_MAX } from './core.js';
export type { Admin } from './core.js';
export { openApiDocument } from './openapi.js';
export { adminOriginCheck } from './origin.js';
export type { AdminOriginCheck } from './origin.js';
export { ADMIN_ACTIONS } from './types.js';
export type {
  AdminAction,
  AdminBody,
  AdminBrand,
  AdminErrorBody,
  AdminErrorCode,
  AdminKey,
  AdminOptions,
  AdminRequest,
  AdminResponse,
} from './types.js';
