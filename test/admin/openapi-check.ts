// Checks real answers (and the requests that got them) against the schemas of the admin's OpenAPI document.

import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { openApiDocument } from '../../src/admin/openapi.js';

const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema(openApiDocument as object, 'openapi');

/** A JSON pointer segment inside a URI fragment. */
function segment(text: string): string {
  return encodeURIComponent(text.replaceAll('~', '~0').replaceAll('/', '~1'));
}

type Operation = {
  requestBody?: { content: Record<string, { schema: object }> };
  responses: Record<string, { content?: Record<string, { schema: object }>; headers?: Record<string, unknown> }>;
};

function operation(method: string, template: string): Operation {
  const item = (openApiDocument.paths as Record<string, Record<string, unknown>>)[template];
  const found = item?.[method.toLowerCase()] as Operation | undefined;
  if (!found) throw new Error(`The OpenAPI document has no ${method} ${template}`);
  return found;
}

function check(pointer: string, value: unknown, what: string): void {
  const validate = ajv.getSchema(`openapi#${pointer}`) ?? ajv.compile({ $ref: `openapi#${pointer}` });
  if (!validate(value)) {
    throw new Error(
      `${what} does not match the OpenAPI schema: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(value).slice(0, 400)}`,
    );
  }
}

/** The route template of an API path inside the mount: `/keys/abc/rotate` → `/keys/{id}/rotate`. */
export function templateOf(path: string): string {
  const parts = path.split('/');
  if (parts[1] === 'keys' && parts.length >= 3) parts[2] = '{id}';
  return parts.join('/');
}

/**
 * Throws unless the answer's status is documented for the operation and its JSON body matches
 * that answer's schema. Returns the number of checks made (for the caller's tally).
 */
export function checkAnswer(method: string, apiPath: string, status: number, body: unknown, contentType: string | null): void {
  const template = templateOf(apiPath);
  const op = operation(method, template);
  const answer = op.responses[String(status)];
  if (!answer) throw new Error(`${method} ${template} answered ${status}, which the OpenAPI document does not list`);
  if (!answer.content) {
    if (body !== null && body !== '') throw new Error(`${method} ${template} ${status} is documented without a body`);
    return;
  }
  if (!contentType?.startsWith('application/json')) throw new Error(`${method} ${template} ${status} answered ${contentType}, not JSON`);
  const method_ = method.toLowerCase();
  check(
    `/paths/${segment(template)}/${method_}/responses/${status}/content/${segment('application/json')}/schema`,
    body,
    `${method} ${template} ${status}`,
  );
}

/** Throws unless a request body matches the operation's documented request schema. */
export function checkRequest(method: string, apiPath: string, body: unknown): void {
  const template = templateOf(apiPath);
  const op = operation(method, template);
  if (!op.requestBody) throw new Error(`${method} ${template} takes no body in the OpenAPI document`);
  check(
    `/paths/${segment(template)}/${method.toLowerCase()}/requestBody/content/${segment('application/json')}/schema`,
    body,
    `${method} ${template} request`,
  );
}
