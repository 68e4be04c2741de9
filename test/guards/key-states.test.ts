// SECURITY 7: every key state gets the status, body and headers of DESIGN.md's table, in every framework.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FRAMEWORKS, APP_ERROR, type RunningApp } from './apps.js';
import { CARRIERS, carry, createKeyStates, expectOutcome, INVALID_KEY_BODY, KEY_STATE_TABLE, type KeyStates } from './fixtures.js';

describe.each(FRAMEWORKS)('$name guard', (framework) => {
  let states: KeyStates;
  /** All three carriers on, reasons hidden. */
  let app: RunningApp;
  /** Default carriers, reasons exposed. */
  let exposing: RunningApp;
  const hooked: Partial<Record<'edit' | 'replace' | 'throw', RunningApp>> = {};

  beforeAll(async () => {
    states = await createKeyStates();
    app = await framework.start({ keys: states.keys, guard: { carriers: ['bearer', 'x-api-key', 'basic'] } });
    exposing = await framework.start({ keys: states.keys, guard: { exposeReasons: true } });
    for (const hook of ['edit', 'replace', 'throw'] as const) {
      hooked[hook] = await framework.start({ keys: states.keys, onReject: hook });
    }
  });
  afterAll(async () => {
    await Promise.all([app, exposing, ...Object.values(hooked)].map((a) => a?.close()));
  });

  describe.each(CARRIERS)('key in %s', (carrier) => {
    it.each(KEY_STATE_TABLE)('$state -> $expected.status', async (row) => {
      const token = row.token(states.tokens);
      const reply = await app.send({ headers: token === null ? {} : carry(carrier, token) });
      expectOutcome(reply, row.expected, states, false);
      if (token !== null) {
        expect(reply.text).not.toContain(token);
        expect(JSON.stringify(reply.headers)).not.toContain(token);
      }
    });
  });

  it.each(KEY_STATE_TABLE)('with exposeReasons: $state -> $expected.status and its reason', async (row) => {
    const token = row.token(states.tokens);
    const reply = await exposing.send({ headers: token === null ? {} : carry('bearer', token) });
    expectOutcome(reply, row.expected, states, true);
  });

  it('reads Authorization: Basic only when it is enabled', async () => {
    const reply = await exposing.send({ headers: carry('basic-user', states.tokens.valid) });
    expectOutcome(reply, { status: 401, reason: 'MISSING' }, states, true);
  });

  it('never reads the key from the query string', async () => {
    const reply = await exposing.send({
      path: `/orders?api_key=${states.tokens.valid}&apiKey=${states.tokens.valid}&token=${states.tokens.valid}`,
    });
    expectOutcome(reply, { status: 401, reason: 'MISSING' }, states, true);
  });

  it('accepts the same key in two carriers, refuses two different keys as malformed', async () => {
    const { valid, edit } = states.tokens;
    const same = await app.send({ headers: { ...carry('bearer', valid), 'x-api-key': valid } });
    expectOutcome(same, { status: 200, keyId: 'valid' }, states, false);
    const twiceSame = await app.send({ headers: { 'x-api-key': [valid, valid] } });
    expectOutcome(twiceSame, { status: 200, keyId: 'valid' }, states, false);

    const different = await exposing.send({ headers: { ...carry('bearer', valid), 'x-api-key': edit } });
    expectOutcome(different, { status: 401, reason: 'MALFORMED' }, states, true);
    const twiceDifferent = await exposing.send({ headers: { 'x-api-key': [valid, edit] } });
    expectOutcome(twiceDifferent, { status: 401, reason: 'MALFORMED' }, states, true);
    const userAndPassword = await app.send({ headers: { authorization: `Basic ${Buffer.from(`${valid}:${edit}`).toString('base64')}` } });
    expectOutcome(userAndPassword, { status: 401, reason: 'MALFORMED' }, states, false);
  });

  it('takes the Bearer scheme in any case and refuses extra words after the key', async () => {
    const lower = await app.send({ headers: { authorization: `bearer ${states.tokens.valid}` } });
    expectOutcome(lower, { status: 200, keyId: 'valid' }, states, false);
    const extra = await exposing.send({ headers: { authorization: `Bearer ${states.tokens.valid} x` } });
    expectOutcome(extra, { status: 401, reason: 'MALFORMED' }, states, true);
    const empty = await exposing.send({ headers: { authorization: 'Bearer' } });
    expectOutcome(empty, { status: 401, reason: 'MALFORMED' }, states, true);
    const otherScheme = await exposing.send({ headers: { authorization: `Token ${states.tokens.valid}` } });
    expectOutcome(otherScheme, { status: 401, reason: 'MISSING' }, states, true);
  });

  it('reports every decision through onEvent, without the token', async () => {
    const before = states.events.length;
    await app.send({ headers: carry('bearer', states.tokens.expired) });
    await app.send({ headers: carry('x-api-key', states.tokens.valid) });
    await app.send({ headers: { ...carry('bearer', states.tokens.valid), 'x-api-key': states.tokens.edit } });
    const events = states.events.slice(before);
    expect(events.map((e) => (e.type === 'rejected' ? e.code : e.type))).toEqual(['EXPIRED', 'verified', 'MALFORMED']);
    expect(events.map((e) => ('ip' in e ? e.ip : undefined))).toEqual(['127.0.0.1', '127.0.0.1', '127.0.0.1']);
    const logged = JSON.stringify(states.events);
    for (const token of Object.values(states.tokens)) expect(logged).not.toContain(token);
  });

  it('onReject can change the response the guard sends', async () => {
    const reply = await hooked.edit!.send({ headers: carry('bearer', states.tokens.inactive) });
    expect(reply.status).toBe(401);
    expect(reply.headers['x-reject-reason']).toBe('INACTIVE');
    expect(reply.json).toEqual(INVALID_KEY_BODY);
    const scope = await hooked.edit!.send({ headers: carry('bearer', states.tokens.wrongScope) });
    expect(scope.status).toBe(403);
    expect(scope.headers['x-reject-reason']).toBe('INSUFFICIENT_SCOPE');
  });

  it('onReject can send its own response instead', async () => {
    const reply = await hooked.replace!.send({ headers: carry('bearer', states.tokens.expired) });
    expect(reply.status).toBe(418);
    expect(reply.text).toBe('custom:EXPIRED');
    const ok = await hooked.replace!.send({ headers: carry('bearer', states.tokens.valid) });
    expect(ok.status).toBe(200);
  });

  it("a throwing onReject goes to the framework's error handling, never through", async () => {
    const reply = await hooked.throw!.send({ headers: carry('bearer', states.tokens.expired) });
    expect(reply.status).toBe(500);
    expect(reply.json).toEqual({ error: { code: APP_ERROR, detail: 'onReject failed' } });
  });
});
