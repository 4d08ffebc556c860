// Drives the audit explorer (GET /explorer/) in headless Chromium against a seeded idgraph server,
// through the steps of issue #17, and checks each; saves a screenshot of each state.
//
// Usage: node run.mjs PLAN_JSON, where the plan (written by crates/cli/tests/explorer.rs) names
// the server, the credentials, the seeded customer and its login's sequence, the big profile, the
// screenshot folder and the server's process id (stopped at the end to check the "server down"
// message). Prints one JSON line: {"checks":[{"name","ok","detail"}], "timings": {...}}.
//
// Uses the packages installed in ../websdk (playwright-core, axe-core): no install of its own.

import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const plan = JSON.parse(process.argv[2] || 'null');
if (!plan) {
  console.error('usage: node run.mjs PLAN_JSON');
  process.exit(2);
}
const require = createRequire(new URL('../websdk/package.json', import.meta.url));
const { chromium } = require('playwright-core');
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const checks = [];
const timings = {};
const problems = []; // console errors that are not a failed HTTP status, page errors, CSP reports

function record(name, ok, detail) {
  checks.push({ name, ok: Boolean(ok), detail: detail === undefined ? null : detail });
  console.error(`${ok ? 'ok  ' : 'FAIL'} ${name}${detail === undefined ? '' : `: ${JSON.stringify(detail)}`}`);
}

async function check(name, work) {
  try {
    const res = await work();
    if (res && typeof res === 'object' && 'ok' in res) record(name, res.ok, res.detail);
    else record(name, true, res);
  } catch (err) {
    record(name, false, String(err && err.stack ? err.stack : err));
  }
}

async function shot(page, file, fullPage) {
  await page.screenshot({ path: join(plan.screenshots, file), fullPage: Boolean(fullPage) });
}

/** Waits until the page has started and finished whatever the last action began. */
async function settle(page) {
  await page.waitForTimeout(60);
  await page.waitForFunction(() => document.body.dataset.busy === 'false', null, { timeout: 20000 });
}

function watch(page, label) {
  page.on('console', (message) => {
    const text = message.text();
    if (message.type() === 'error' && !/Failed to load resource: the server responded with a status of (401|404)/.test(text)
        && !/Failed to load resource: net::ERR_CONNECTION_REFUSED/.test(text)) {
      problems.push(`${label} console: ${text}`);
    }
  });
  page.on('pageerror', (err) => problems.push(`${label} page error: ${err.message}`));
}

/** axe-core over the page (WCAG 2 A and AA rules: labels, names, contrast, …); its violations. */
async function axe(page) {
  // page.evaluate runs through the DevTools protocol: the page's CSP does not apply to it.
  await page.evaluate(axeSource);
  return page.evaluate(async () => {
    const res = await window.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } });
    return res.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5).map((n) => n.target.join(' ') + ' ' + (n.failureSummary || '').replace(/\s+/g, ' ').slice(0, 200)) }));
  });
}

async function signIn(page, secret) {
  await page.getByLabel('API key').fill(plan.key);
  await page.getByLabel('API secret').fill(secret);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await settle(page);
}

async function searchFor(page, text) {
  await page.getByLabel('Search', { exact: true }).fill(text);
  await page.getByRole('button', { name: 'Search', exact: true }).click();
  await settle(page);
}

async function graphIdentities(page) {
  return page.evaluate(() => window.explorer.graphNodes().filter((n) => n.kind === 'identity').map((n) => `${n.type}=${n.value}`));
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const violations = {};
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  watch(page, 'desktop');
  await page.goto(`${plan.base}/explorer/`);
  await page.getByLabel('API key').waitFor();
  await shot(page, '01-sign-in.png');
  violations.signIn = await axe(page);

  await check('wrong secret is shown in words', async () => {
    await signIn(page, 'not-the-secret');
    const status = await page.locator('#status').innerText();
    await shot(page, '02-wrong-secret.png');
    return { ok: /not accepted/.test(status) && await page.getByLabel('API secret').isVisible(), detail: status };
  });

  await check('signed in, secret not in the URL', async () => {
    await signIn(page, plan.secret);
    const stored = await page.evaluate(() => sessionStorage.getItem('idgraph-explorer-credentials'));
    const ok = await page.getByLabel('Search', { exact: true }).isVisible()
      && !page.url().includes(plan.secret) && stored.includes(plan.key)
      && await page.evaluate(() => localStorage.length === 0);
    return { ok, detail: page.url() };
  });

  await check('identity search lists the customer\'s profile', async () => {
    await searchFor(page, `customerid=${plan.customerid}`);
    const text = await page.locator('#identity-view').innerText();
    await shot(page, '03-identity.png');
    return { ok: text.includes(plan.customer_mpid) && /still holds it/.test(text), detail: text.slice(0, 300) };
  });

  await check('timeline lists the login that made it known', async () => {
    const started = Date.now();
    await page.getByRole('button', { name: `Open profile ${plan.customer_mpid}` }).first().click();
    await settle(page);
    timings.customerProfileMs = Number(await page.evaluate(() => document.body.dataset.renderMs));
    timings.customerProfileWallMs = Date.now() - started;
    const row = page.locator(`#entry-${plan.login_seq}`);
    const text = await row.innerText();
    await shot(page, '04-profile.png');
    await shot(page, '04-profile-full.png', true);
    return { ok: text.includes(`#${plan.login_seq}`) && text.includes('login') && text.includes('became known')
      && text.includes(`customerid=${plan.customerid}`), detail: text.replace(/\s+/g, ' ') };
  });

  await check('explanation opens', async () => {
    await page.getByRole('button', { name: `Explain #${plan.login_seq}` }).click();
    await settle(page);
    const text = await page.locator(`#explanation-${plan.login_seq}`).innerText();
    await page.locator(`#explanation-${plan.login_seq}`).scrollIntoViewIfNeeded();
    await shot(page, '05-explanation.png');
    return { ok: /login under profile_conversion/.test(text) && /agrees with what was recorded/.test(text), detail: text };
  });

  await check('customer ID in the graph now', async () => {
    await page.locator('#graph').scrollIntoViewIfNeeded();
    const ids = await graphIdentities(page);
    return { ok: ids.includes(`customerid=${plan.customerid}`), detail: ids };
  });

  await check('customer ID gone before the login', async () => {
    await page.getByLabel('Sequence', { exact: true }).fill(String(plan.login_seq - 1));
    await page.getByRole('button', { name: 'Show then' }).click();
    await settle(page);
    const ids = await graphIdentities(page);
    const note = await page.locator('#as-of-note').innerText();
    await page.locator('#profile-title').scrollIntoViewIfNeeded();
    await shot(page, '06-time-travel.png');
    // The slider: End goes to now, and the customer ID is back.
    await page.getByLabel('As of entry').focus();
    await page.keyboard.press('End');
    await page.waitForTimeout(200);
    await settle(page);
    const idsNow = await graphIdentities(page);
    return {
      ok: !ids.some((id) => id.startsWith('customerid=')) && ids.includes('device_application_stamp=explorer-device-1')
        && note.includes(`sequence ${plan.login_seq - 1}`) && idsNow.includes(`customerid=${plan.customerid}`),
      detail: { before: ids, now: idsNow, note },
    };
  });

  violations.profile = await axe(page);

  await check('what-if counts differences', async () => {
    await page.getByLabel('Strategy').selectOption('profile_link');
    await page.getByLabel('Login IDs').fill('customerid, email');
    await page.getByRole('button', { name: 'Run what-if' }).click();
    await settle(page);
    const result = page.locator('#what-if-result');
    const first = result.locator('details').first();
    await first.locator('summary').click();
    const text = await result.innerText();
    await result.scrollIntoViewIfNeeded();
    await shot(page, '07-what-if.png');
    const counts = /(\d+) of (\d+) requests would get another MPID/.exec(text);
    return { ok: Boolean(counts) && Number(counts[1]) > 0 && /under profile_link/.test(text) && await first.locator('pre').isVisible(),
      detail: text.slice(0, 400) };
  });

  violations.whatIf = await axe(page);

  await check('unknown MPID is shown in words', async () => {
    await searchFor(page, '424242');
    const status = await page.locator('#status').innerText();
    await page.evaluate(() => window.scrollTo(0, 0));
    await shot(page, '08-unknown-mpid.png');
    return { ok: /no entry mentions MPID 424242/i.test(status), detail: status };
  });

  // The 1 s target is a measurement (printed, and recorded in docs/audit.md), not an assertion: a
  // debug-build server on a busy two-core machine varies too much for a timed test. What is
  // asserted is that the page pages and clusters instead of freezing (10 s would mean it froze).
  await check('big profile renders paginated, without freezing', async () => {
    const started = Date.now();
    await searchFor(page, plan.big_mpid);
    const wall = Date.now() - started;
    const ms = Number(await page.evaluate(() => document.body.dataset.renderMs));
    const split = await page.evaluate(() => window.explorer.timings().slice(-1)[0]);
    const identities = await page.locator('#identities-title').innerText();
    const pageLabel = await page.locator('#page-label').innerText();
    await shot(page, '09-big-profile.png');
    // Paging through the timeline and moving in time stay quick too.
    const pageStarted = await page.evaluate(() => performance.now());
    await page.getByRole('button', { name: 'Next page' }).click();
    const pageMs = await page.evaluate((t0) => new Promise((resolve) => requestAnimationFrame(() => resolve(performance.now() - t0))), pageStarted);
    const nGraphNodes = await page.evaluate(() => window.explorer.graphNodes().length);
    await page.getByLabel('Sequence', { exact: true }).fill(String(plan.login_seq + 500));
    await page.getByRole('button', { name: 'Show then' }).click();
    await settle(page);
    const timeTravelMs = Number(await page.evaluate(() => document.body.dataset.renderMs));
    Object.assign(timings, { bigProfileMs: ms, bigProfileFetchMs: split.fetchMs, bigProfileDrawMs: split.drawMs, bigProfileWallMs: wall, bigNextPageMs: Math.round(pageMs), bigTimeTravelMs: timeTravelMs, bigGraphNodes: nGraphNodes });
    return {
      ok: ms < 10000 && pageMs < 10000 && identities.replace(/,/g, '').includes(`(${plan.big_identities})`)
        && Number((/ of (\d+) /.exec(pageLabel.replace(/,/g, '')) || [])[1]) >= plan.big_entries,
      detail: { ms, wall, pageMs, identities, pageLabel, nGraphNodes, timeTravelMs },
    };
  });

  // Phone width.
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
  const small = await phone.newPage();
  watch(small, 'phone');
  await small.goto(`${plan.base}/explorer/`);
  await small.getByLabel('API key').waitFor();
  await shot(small, '10-phone-sign-in.png');
  await check('phone width has no horizontal scroll', async () => {
    await signIn(small, plan.secret);
    await searchFor(small, plan.customer_mpid);
    await shot(small, '10-phone.png');
    await shot(small, '10-phone-full.png', true);
    const widths = await small.evaluate(() => ({ scroll: document.documentElement.scrollWidth, inner: window.innerWidth }));
    return { ok: widths.scroll <= widths.inner + 1, detail: widths };
  });
  violations.phone = await axe(small);

  await check('accessibility: no violations', async () => {
    const all = Object.entries(violations).flatMap(([where, list]) => list.map((v) => ({ where, ...v })));
    return { ok: all.length === 0, detail: all.length ? all : 'axe-core: 0 violations (sign-in, profile, what-if, phone)' };
  });

  await check('no CSP violation or page error', async () => ({ ok: problems.length === 0, detail: problems }));

  await check('server down is shown in words', async () => {
    process.kill(plan.server_pid, 'SIGTERM');
    for (let i = 0; i < 100; i += 1) {
      try {
        await fetch(`${plan.base}/healthz`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      } catch (_) {
        break;
      }
    }
    await searchFor(page, `customerid=${plan.customerid}`);
    const status = await page.locator('#status').innerText();
    await page.evaluate(() => window.scrollTo(0, 0));
    await shot(page, '11-server-down.png');
    return { ok: /Cannot reach the idgraph server/.test(status), detail: status };
  });
} finally {
  await browser.close();
}
console.log(JSON.stringify({ checks, timings, screenshots: plan.screenshots }));
process.exit(checks.every((c) => c.ok) ? 0 : 1);
