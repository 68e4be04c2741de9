// Whether a write comes from the page's own origin: the Origin header, required, equal to the request's own origin.

import { ValidationError } from '../errors.js';
import { createOriginCheck, type HeaderBag, type OriginCheckRequest } from '../http.js';

/** Checks a request's `Origin` against its own origin (or the configured public ones). */
export interface AdminOriginCheck {
  /** For Node servers: the request's own origin comes from the socket, `Host` and trusted proxies. */
  node(request: OriginCheckRequest): boolean;
  /** For fetch servers: the request's own origin is its URL's. */
  fetch(headers: HeaderBag, url: string): boolean;
}

/** `scheme://host[:port]` as browsers write it, or `null`. */
function originOf(text: string): string | null {
  try {
    const url = new URL(text);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
    return url.origin;
  } catch {
    return null;
  }
}

/** The one `Origin` header value, or `undefined` when it is missing or repeated. */
function originHeader(headers: HeaderBag): string | undefined {
  const value = headers.origin;
  if (typeof value === 'string') return value;
  return value !== undefined && value.length === 1 ? value[0] : undefined;
}

/** Compiles the origin check of the admin's writes; bad options throw `ValidationError` at startup. */
export function adminOriginCheck(options: {
  trustedProxies?: string | readonly string[] | undefined;
  publicOrigin?: string | readonly string[] | undefined;
}): AdminOriginCheck {
  const { publicOrigin } = options;
  let allowed: ReadonlySet<string> | null = null;
  if (publicOrigin !== undefined) {
    const list = typeof publicOrigin === 'string' ? [publicOrigin] : publicOrigin;
    if (!Array.isArray(list) || list.length === 0) {
      throw new ValidationError('publicOrigin', "must be an origin such as 'https://shop.example', or a non-empty list of them");
    }
    allowed = new Set(
      list.map((entry: unknown, i) => {
        const origin = typeof entry === 'string' && /^https?:\/\/[^/?#]+\/?$/i.test(entry) ? originOf(entry) : null;
        if (origin === null) {
          throw new ValidationError(
            `publicOrigin[${i}]`,
            `must be scheme://host[:port] with http or https and no path, got ${JSON.stringify(entry)}`,
          );
        }
        return origin;
      }),
    );
  }
  const own = createOriginCheck({ trustedProxies: options.trustedProxies });
  const matchesPublic = (headers: HeaderBag): boolean => {
    const header = originHeader(headers);
    const origin = header === undefined ? null : originOf(header);
    return origin !== null && header === origin && (allowed as ReadonlySet<string>).has(origin);
  };
  return {
    node: (request) => (allowed ? matchesPublic(request.headers) : originHeader(request.headers) !== undefined && own(request)),
    fetch: (headers, url) => {
      if (allowed) return matchesPublic(headers);
      const header = originHeader(headers);
      return header !== undefined && header === originOf(url);
    },
  };
}
