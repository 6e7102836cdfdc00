// The console, end to end, in a real browser: Playwright (playwright-core, pinned in
// package-lock.json) driving the system Chromium. Run by crates/portcullis/tests/it/browser.rs,
// which starts the gateway, seeds the tenants, holds the calls and computes the TOTP code from
// the gateway's own (manual) clock; everything this script needs comes in the environment:
//
//   E2E_CHROMIUM       the Chromium binary (e.g. /usr/bin/chromium)
//   E2E_BASE_URL       the gateway, as http://localhost:PORT (the session cookie is
//                      `__Host-` and `Secure`: Chromium keeps it on http only for localhost)
//   E2E_NAME, E2E_PASSWORD, E2E_CODE
//                      the approver's sign-in (the code is valid once, for the current step)
//   E2E_APPROVE_ID     a held acme request to approve through the inbox
//   E2E_DENY_ID        a held acme request to deny through the inbox
//   E2E_PENDING_ID     a held acme request that must stay pending (CSRF and bad-input checks)
//   E2E_FOREIGN_ID     a held globex request (another tenant: must be "not found")
//   E2E_TENANT, E2E_FOREIGN_TENANT   acme and globex
//   SCREENSHOTS        the folder for console-inbox.png and console-audit.png
//
// Exits non-zero with the failed expectation on stderr.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

function need(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`console e2e: ${name} is not set`);
    process.exit(2);
  }
  return value;
}

if (Number(process.versions.node.split('.')[0]) < 20) {
  console.error(`console e2e: Node.js >= 20 needed (playwright-core), have ${process.versions.node}`);
  process.exit(2);
}

const env = {
  chromium: need('E2E_CHROMIUM'),
  base: need('E2E_BASE_URL').replace(/\/$/, ''),
  name: need('E2E_NAME'),
  password: need('E2E_PASSWORD'),
  code: need('E2E_CODE'),
  approveId: need('E2E_APPROVE_ID'),
  denyId: need('E2E_DENY_ID'),
  pendingId: need('E2E_PENDING_ID'),
  foreignId: need('E2E_FOREIGN_ID'),
  tenant: need('E2E_TENANT'),
  foreignTenant: need('E2E_FOREIGN_TENANT'),
  screenshots: need('SCREENSHOTS'),
};
const APPROVE_REASON = 'Refund checked against the order: fine';
const DENY_REASON = 'Duplicate of an earlier refund';

let step = 'start';
/** The page under test, for the failure report. */
let current = null;
const log = (text) => console.log(`console e2e: ${text}`);
function at(name) {
  step = name;
  log(name);
}

/** A card of the inbox, by its approval id. */
const card = (page, id) => page.locator(`article[id="${id}"]`);

/** The page's one CSRF token (every signed-in page has the sign-out form's). */
async function csrfOf(page) {
  const values = await page.locator('input[type="hidden"][name="csrf"]').evaluateAll((inputs) =>
    inputs.map((input) => input.value),
  );
  assert.ok(values.length > 0, 'a signed-in page carries a CSRF token');
  assert.equal(new Set(values).size, 1, 'every form of a page carries the same CSRF token');
  assert.match(values[0], /^[0-9a-f]{64}$/);
  return values[0];
}

/** The page fits the viewport's width (no sideways scrolling): long values wrap. */
async function assertFitsWidth(page) {
  const [scroll, client] = await page
    .locator('html')
    .evaluate((html) => [html.scrollWidth, html.clientWidth]);
  assert.ok(scroll <= client, `the page is ${scroll}px wide in a ${client}px viewport`);
}

async function heading(page) {
  return (await page.locator('main h1').innerText()).trim();
}

async function run(browser) {
  // Every page keeps the Content-Security-Policy (no bypass): the console must work without
  // any script of its own, and nothing on it may be blocked.
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  current = page;
  const problems = [];
  page.setDefaultTimeout(15_000);
  page.on('console', (message) => {
    // The refusal pages this script asks for on purpose (400, 403, 404) log "Failed to load
    // resource"; anything else (a blocked style, a CSP violation) is a problem.
    if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) {
      problems.push(`console error: ${message.text()}`);
    }
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('requestfailed', (request) =>
    problems.push(`request failed: ${request.url()} (${request.failure()?.errorText})`),
  );

  at('the console sends a signed-out visitor to sign-in');
  let response = await page.goto(`${env.base}/console`);
  assert.equal(response.status(), 200);
  assert.equal(new URL(page.url()).pathname, '/console/login');
  assert.equal(await heading(page), 'Sign in');
  const csp = response.headers()['content-security-policy'] ?? '';
  assert.match(csp, /default-src 'none'/, `no script allowed: ${csp}`);
  assert.doesNotMatch(csp, /script-src/, `no script source: ${csp}`);
  assert.equal(await page.locator('script').count(), 0, 'the page has no script element');

  at('keyboard: the sign-in form has the focus from the start');
  assert.equal(await page.locator(':focus').getAttribute('id'), 'name', 'the Name field is focused');

  at('sign in with name, password and a code from the authenticator app');
  await page.getByLabel('Name').fill(env.name);
  await page.getByLabel('Password').fill(env.password);
  await page.getByLabel('Code from your authenticator app').fill(env.code);
  await Promise.all([
    page.waitForURL(`**/console/t/${env.tenant}/approvals`),
    page.getByRole('button', { name: 'Sign in' }).click(),
  ]);
  assert.equal(await heading(page), 'Approvals');
  const cookies = await context.cookies(env.base);
  const session = cookies.find((c) => c.name === '__Host-portcullis_session');
  assert.ok(session, `the session cookie is set: ${JSON.stringify(cookies.map((c) => c.name))}`);
  assert.equal(session.secure, true);
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Strict');
  assert.equal(session.path, '/');

  at('the inbox lists every held request with its details and a decision form');
  await page.getByText('3 waiting for a decision.').waitFor();
  for (const id of [env.approveId, env.denyId, env.pendingId]) {
    const c = card(page, id);
    assert.equal(await c.count(), 1, `the inbox shows ${id}`);
    const text = await c.innerText();
    assert.match(text, /pending/);
    assert.match(text, /issue_refund/);
    assert.match(text, /Dollar impact:/);
    assert.match(text, /Approvers: 0 of 1/);
    assert.match(text, /min left|h \d+ min left/);
    assert.equal(await c.getByRole('button', { name: 'Approve' }).count(), 1);
    assert.equal(await c.getByRole('button', { name: 'Deny' }).count(), 1);
    // The table of what the call sets names every argument.
    for (const field of ['customer_id', 'amount_cents', 'reason']) {
      assert.equal(await c.getByRole('rowheader', { name: field }).count(), 1, `${id}: ${field}`);
    }
  }
  assert.match(await card(page, env.approveId).innerText(), /refund-one/);
  assert.match(await card(page, env.denyId).innerText(), /refund-two/);
  assert.equal(await card(page, env.foreignId).count(), 0, "another tenant's request is not shown");
  await assertFitsWidth(page);
  mkdirSync(env.screenshots, { recursive: true });
  await page.screenshot({ path: join(env.screenshots, 'console-inbox.png'), fullPage: true });

  at('keyboard: Tab from the start of the page focuses "Skip to content", which skips to the content');
  await page.reload();
  // The stylesheet (same origin, allowed by the policy) keeps the link off-screen until focused.
  const skip = page.getByRole('link', { name: 'Skip to content' });
  assert.ok((await skip.boundingBox()).x < 0, 'the skip link is off-screen before focus');
  await page.keyboard.press('Tab');
  const focused = page.locator(':focus');
  assert.equal((await focused.innerText()).trim(), 'Skip to content', 'Tab focuses the skip link');
  assert.equal(await focused.getAttribute('href'), '#main');
  assert.ok((await skip.boundingBox()).x >= 0, 'the focused skip link is on screen');
  await page.keyboard.press('Enter');
  assert.equal(new URL(page.url()).hash, '#main');
  // The next Tab goes into the content, past the navigation (Approvals, Audit, Sign out).
  await page.keyboard.press('Tab');
  assert.equal(
    await page.locator(':focus').evaluate((element) => element.closest('main') !== null),
    true,
    'after skipping, Tab lands in the main content',
  );

  at('approve the first request with a reason');
  const first = card(page, env.approveId);
  await first.getByLabel('Reason (needed to deny)').fill(APPROVE_REASON);
  await Promise.all([
    page.waitForURL(`**/console/t/${env.tenant}/approvals`),
    first.getByRole('button', { name: 'Approve' }).click(),
  ]);
  await page.getByText('2 waiting for a decision.').waitFor();
  {
    const text = await card(page, env.approveId).innerText();
    assert.match(text, /^approved · /m, text);
    assert.ok(text.includes(`Decided by ${env.name}: ${APPROVE_REASON}`), text);
    assert.equal(await card(page, env.approveId).locator('form').count(), 0, 'no form once decided');
  }

  at('deny the second request with a reason');
  const second = card(page, env.denyId);
  await second.getByLabel('Reason (needed to deny)').fill(DENY_REASON);
  await Promise.all([
    page.waitForURL(`**/console/t/${env.tenant}/approvals`),
    second.getByRole('button', { name: 'Deny' }).click(),
  ]);
  await page.getByText('1 waiting for a decision.').waitFor();
  {
    const text = await card(page, env.denyId).innerText();
    assert.match(text, /^denied · /m, text);
    assert.ok(text.includes(`Decided by ${env.name}: ${DENY_REASON}`), text);
  }

  at('a denial without a reason is refused, and the request stays pending');
  await Promise.all([
    page.waitForURL(`**/console/t/${env.tenant}/approvals/${env.pendingId}`),
    card(page, env.pendingId).getByRole('button', { name: 'Deny' }).click(),
  ]);
  assert.equal(await heading(page), 'Cannot do that');
  await page.getByText('A denial needs a reason.').waitFor();
  response = await page.goto(`${env.base}/console/t/${env.tenant}/approvals`);
  assert.equal(response.status(), 200);
  assert.match(await card(page, env.pendingId).innerText(), /^pending · /m);

  at('the audit viewer shows both decisions');
  await Promise.all([
    page.waitForURL(`**/console/t/${env.tenant}/audit`),
    page.getByRole('link', { name: 'Audit' }).click(),
  ]);
  assert.equal(await heading(page), 'Audit trail');
  for (const [kind, id] of [
    ['approve', env.approveId],
    ['deny', env.denyId],
  ]) {
    await page.getByLabel('Kind').fill(kind);
    await Promise.all([
      page.waitForURL((url) => url.searchParams.get('kind') === kind),
      page.getByRole('button', { name: 'Filter' }).click(),
    ]);
    const rows = page.locator('tbody tr');
    const count = await rows.count();
    assert.ok(count >= 1, `kind=${kind}: at least one entry`);
    // Columns: #, Time, Actor, Kind, Resource, Decision, Facts.
    const cells = [];
    for (const row of await rows.all()) {
      cells.push((await row.locator('td').allInnerTexts()).map((text) => text.trim()));
    }
    for (const row of cells) {
      assert.equal(row[3], kind, `kind=${kind} shows only ${kind} entries: ${row}`);
    }
    const row = cells.find((row) => row[4] === `approval:${id}`);
    assert.ok(row, `kind=${kind}: an entry for approval:${id} in ${JSON.stringify(cells)}`);
    assert.equal(row[2], `admin:${env.name}`, 'the decider');
    assert.equal(row[5], kind, 'the decision');
  }
  // Back to the whole trail, then verify it.
  await page.getByLabel('Kind').fill('');
  await Promise.all([
    page.waitForURL((url) => url.searchParams.get('kind') === ''),
    page.getByRole('button', { name: 'Filter' }).click(),
  ]);
  const all = await page.locator('tbody').innerText();
  assert.ok(all.includes(`approval:${env.approveId}`) && all.includes(`approval:${env.denyId}`));

  at('verify the chain: intact');
  await Promise.all([
    page.waitForURL((url) => url.searchParams.get('verify') === '1'),
    page.getByRole('button', { name: 'Verify the chain now' }).click(),
  ]);
  const verdict = page.getByRole('status');
  const verdictText = (await verdict.innerText()).trim();
  assert.match(verdictText, /^Intact: \d+ entries/, verdictText);
  assert.equal(await page.getByRole('alert').count(), 0, 'no verification failure');
  await assertFitsWidth(page);
  await page.screenshot({ path: join(env.screenshots, 'console-audit.png'), fullPage: true });

  at('the other pages open by keyboard, fit the window and load nothing else');
  const pages = [
    ['Access', 'Connections and access'],
    ['Agents', 'Agents and tokens'],
    ['Guardrails', 'Guardrails'],
    ['Policy', 'Policy'],
  ];
  for (const [link, title] of pages) {
    const nav = page.getByRole('link', { name: link, exact: true });
    await nav.focus();
    await Promise.all([page.waitForLoadState('load'), page.keyboard.press('Enter')]);
    assert.equal(await heading(page), title, `${link} by keyboard`);
    await assertFitsWidth(page);
    log(`${link}: ${Buffer.byteLength(await page.content())} bytes of HTML`);
  }
  await page.goto(`${env.base}/console/t/${env.tenant}/agents`);
  assert.ok((await page.locator('main').innerText()).includes('Kill switch'));
  await page.screenshot({ path: join(env.screenshots, 'console-agents.png'), fullPage: true });

  at("another tenant's inbox is not found");
  response = await page.goto(`${env.base}/console/t/${env.foreignTenant}/approvals`);
  assert.equal(response.status(), 404);
  assert.equal(await heading(page), 'Not found');
  assert.equal(await page.locator(`[id="${env.foreignId}"]`).count(), 0);
  response = await page.goto(`${env.base}/console/t/${env.foreignTenant}/audit`);
  assert.equal(response.status(), 404);
  assert.equal(await heading(page), 'Not found');

  // The same browser session (its cookies) posts directly, as a forged or replayed form would.
  response = await page.goto(`${env.base}/console/t/${env.tenant}/approvals`);
  assert.equal(response.status(), 200);
  const csrf = await csrfOf(page);
  const post = (path, form) => page.request.post(`${env.base}${path}`, { form, maxRedirects: 0 });

  at("a decision on another tenant's request, under this tenant, is not found");
  let reply = await post(`/console/t/${env.tenant}/approvals/${env.foreignId}`, {
    csrf,
    decision: 'approve',
    reason: 'x',
  });
  assert.equal(reply.status(), 404, await reply.text());
  assert.match(await reply.text(), /Not found/);
  reply = await post(`/console/t/${env.foreignTenant}/approvals/${env.foreignId}`, {
    csrf,
    decision: 'approve',
    reason: 'x',
  });
  assert.equal(reply.status(), 404, await reply.text());

  at('a decision without the CSRF token, or with a wrong one, is refused');
  reply = await post(`/console/t/${env.tenant}/approvals/${env.pendingId}`, {
    decision: 'approve',
    reason: 'x',
  });
  assert.equal(reply.status(), 403, await reply.text());
  assert.match(await reply.text(), /Not allowed/);
  const wrong = (csrf[0] === '0' ? '1' : '0') + csrf.slice(1);
  reply = await post(`/console/t/${env.tenant}/approvals/${env.pendingId}`, {
    csrf: wrong,
    decision: 'approve',
    reason: 'x',
  });
  assert.equal(reply.status(), 403, await reply.text());
  assert.match(await reply.text(), /Not allowed/);
  reply = await post('/console/logout', {});
  assert.equal(reply.status(), 403, 'sign-out without the token is refused too');
  assert.match(await reply.text(), /Not allowed/);

  at('sign out');
  response = await page.goto(`${env.base}/console/t/${env.tenant}/approvals`);
  assert.match(await card(page, env.pendingId).innerText(), /^pending · /m, 'still pending');
  await Promise.all([
    page.waitForURL('**/console/login'),
    page.getByRole('button', { name: 'Sign out' }).click(),
  ]);
  assert.equal(await heading(page), 'Sign in');
  assert.equal(
    (await context.cookies(env.base)).some((c) => c.name === '__Host-portcullis_session'),
    false,
    'the session cookie is gone',
  );
  response = await page.goto(`${env.base}/console/t/${env.tenant}/approvals`);
  assert.equal(new URL(page.url()).pathname, '/console/login', 'signed out: back to sign-in');

  assert.deepEqual(problems, [], 'no console errors, failed requests or CSP violations');
  await context.close();
}

const browser = await chromium.launch({
  executablePath: env.chromium,
  args: ['--no-sandbox'],
  timeout: 60_000,
});
try {
  await run(browser);
  log('all checks passed');
} catch (error) {
  console.error(`console e2e: FAILED at step "${step}":`);
  console.error(error?.stack ?? error);
  if (current && !current.isClosed()) {
    const text = await current.locator('body').innerText({ timeout: 2_000 }).catch(() => '');
    console.error(`the page was ${current.url()}:\n${text}`);
  }
  process.exitCode = 1;
} finally {
  await browser.close();
}
