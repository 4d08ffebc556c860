// Drives the official mParticle Web SDK (from npm) in headless Chromium against an idgraph server.
//
// Usage: node run.mjs IDENTITY_BASE_URL API_KEY
// Prints one JSON line: {"steps":[{"step":"init","mpid":"...","httpCode":200,...}, ...]}.
// A small static server on another port serves the page and the SDK (so identity calls are
// cross-origin, as in production) and accepts the SDK's event batches.

import http from 'node:http';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const [identityBase, apiKey] = process.argv.slice(2);
if (!identityBase || !apiKey) {
  console.error('usage: node run.mjs IDENTITY_BASE_URL API_KEY');
  process.exit(2);
}
const require = createRequire(import.meta.url);
// The browser build (an IIFE that defines window.mParticle), not the CommonJS `main`.
const sdkPath = require.resolve('@mparticle/web-sdk/package.json').replace(/package\.json$/, 'dist/mparticle.js');
const sdk = readFileSync(sdkPath, 'utf8');
const identityHost = identityBase.replace(/^https?:\/\//, '').replace(/\/$/, '');

const page = (staticHost) => `<!doctype html><html><head><meta charset="utf-8"><title>idgraph web sdk</title></head><body>
<script>window.module = undefined; window.exports = undefined;</script>
<script src="/mparticle.js"></script>
<script>
window.steps = [];
window.record = function (step, result) {
  var user = result && result.getUser && result.getUser();
  window.steps.push({ step: step, httpCode: result ? result.httpCode : null, mpid: user ? user.getMPID() : null,
                      isLoggedIn: user ? user.isLoggedIn() : null, body: result ? result.body : null });
};
window.startSdk = function () {
  return new Promise(function (resolve) {
    mParticle.init(${JSON.stringify(apiKey)}, {
      isDevelopmentMode: true,
      forceHttps: false,
      requestConfig: false,
      identityUrl: ${JSON.stringify(identityHost + '/v1/')},
      v1SecureServiceUrl: ${JSON.stringify(staticHost + '/v1/JS/')},
      v2SecureServiceUrl: ${JSON.stringify(staticHost + '/v2/JS/')},
      v3SecureServiceUrl: ${JSON.stringify(staticHost + '/webevents/v3/JS/')},
      configUrl: ${JSON.stringify(staticHost + '/tags/JS/v2/')},
      aliasUrl: ${JSON.stringify(staticHost + '/webevents/v1/identity/')},
      identityCallback: function (result) { record('init', result); resolve(); }
    });
  });
};
window.call = function (step, method, request) {
  return new Promise(function (resolve) {
    mParticle.Identity[method](request, function (result) { record(step, result); resolve(); });
  });
};
</script></body></html>`;

const server = http.createServer((req, res) => {
  const host = `127.0.0.1:${server.address().port}`;
  res.setHeader('Access-Control-Allow-Origin', '*');
  res.setHeader('Access-Control-Allow-Headers', '*');
  if (req.method === 'OPTIONS') { res.writeHead(204); return res.end(); }
  if (req.url === '/') { res.writeHead(200, { 'content-type': 'text/html' }); return res.end(page(host)); }
  if (req.url === '/mparticle.js') { res.writeHead(200, { 'content-type': 'application/javascript' }); return res.end(sdk); }
  // Event batches and anything else the SDK posts: accept.
  req.resume();
  req.on('end', () => { res.writeHead(202, { 'content-type': 'application/json' }); res.end('{}'); });
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const context = await browser.newContext();
  const tab = await context.newPage();
  tab.on('console', (message) => console.error(`[browser] ${message.text()}`));
  await tab.goto(`http://127.0.0.1:${server.address().port}/`);
  await tab.evaluate(() => window.startSdk());
  await tab.evaluate(() => window.call('login', 'login', { userIdentities: { customerid: 'websdk-customer-1', email: 'websdk@example.com' } }));
  await tab.evaluate(() => window.call('modify', 'modify', { userIdentities: { customerid: 'websdk-customer-1', email: 'websdk-new@example.com' } }));
  await tab.evaluate(() => window.call('logout', 'logout', {}));
  const steps = await tab.evaluate(() => window.steps);
  console.log(JSON.stringify({ steps }));
} finally {
  await browser.close();
  server.close();
}
