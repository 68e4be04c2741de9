// The package face of keygate: re-exports only.

export { createKeyManager } from './manager.js';
export type { KeyManager, KeyManagerOptions, KeyEvent, KeyChangeEvent } from './manager.js';
export type { BreakerOptions } from './breaker.js';
export type { RateLimitsOptions, RevocationOptions } from './manager.js';
export type { BusStatus } from './presence.js';
export { memoryLimiter, slide, describe as describeWindow, RATE_LIMIT_MAX, RATE_WINDOW_MAX_MS, RATE_PRODUCT_MAX } from './rate-limit.js';
export type {
  RateLimit,
  RateLimiter,
  RateLimitBucket,
  RateLimitStatus,
  LimiterAnswer,
  WindowState,
  MemoryLimiterOptions,
} from './rate-limit.js';
export { spendQuota, QUOTA_MAX } from './quota.js';
export type { QuotaRefill, QuotaState } from './quota.js';
export { b2bWaveScopes, defineScopes } from './scopes.js';
export type { ScopeCatalog, ScopeInfo, DefineScopesOptions, ScopeActionDefinition } from './scopes.js';
export { canonicalIp, parseAllowedIps, isIpAllowed, MAX_ALLOWED_IPS } from './ip.js';
export {
  KeygateError,
  ValidationError,
  KeyNotFoundError,
  VersionConflictError,
  StoreUnavailableError,
  StoreOutcomeUnknownError,
  InvalidationUnconfirmedError,
  StoreConflictError,
  ManagerClosedError,
  isKeygateError,
} from './errors.js';
export type { KeygateErrorCode } from './errors.js';
export { createGuardCore, createOriginCheck } from './http.js';
export type {
  GuardCore,
  GuardOptions,
  GuardRequest,
  GuardOutcome,
  GuardPass,
  FailedAttemptsOptions,
  GuardRejection,
  GuardRejectionReason,
  GuardErrorBody,
  GuardErrorCode,
  TokenCarrier,
  HeaderBag,
  OriginCheck,
  OriginCheckOptions,
  OriginCheckRequest,
} from './http.js';
export type { KeyStore, KeyRecord, StoreListQuery, ListPosition, TouchEntry, SpendResult } from './store.js';
export type { VerifyCacheOptions, InvalidationBus, InvalidationSubscriber } from './cache.js';
export type {
  ApiKey,
  VerifyResult,
  VerifyFailureCode,
  VerifyOptions,
  CreateKeyInput,
  CreateOptions,
  DeactivateAllOptions,
  DeactivateAllResult,
  UpdateKeyInput,
  UpdateOptions,
  WriteOptions,
  ListOptions,
  ListResult,
  RotateOptions,
  KeyWithToken,
  AllowedIpsInput,
  KeyMetadata,
  JsonValue,
} from './types.js';
