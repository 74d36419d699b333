// Drives the dashboard in Debian's Chromium, as a user would: reads the overview,
// opens an execution that awaits approval, resumes it and watches the page update
// itself, then retries a dead letter. Prints one JSON line; exits 1 on failure.
//
//   node dashboard.mjs <dashboard URL> <bearer token> <awaiting execution id> <dead letter id>

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const [base, token, awaiting, letter] = process.argv.slice(2);
const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sagaflow-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
const result = {};
function check(cond, what) {
  if (!cond) throw new Error('expected: ' + what + ' — seen: ' + JSON.stringify(result));
}
try {
  const page = context.pages()[0] ?? await context.newPage();
  page.setDefaultTimeout(10_000);

  // Every page needs the token: a wrong one is refused, the right one logs in.
  await page.goto(base);
  await page.fill('#token', 'wrong');
  await page.click('#login');
  await page.locator('#flash', { hasText: 'wrong token' }).waitFor();
  result.loginRefused = true;
  await page.fill('#token', token);
  await page.click('#login');

  // The overview: statistics and the live execution.
  const row = page.locator('#workflows tr[data-workflow="expense"]');
  await row.waitFor();
  result.workflows = await page.locator('#workflows tbody tr').count();
  result.expenseRunning = (await row.locator('.running-count').textContent()).trim();
  result.flakySuccess = (await page.locator('#workflows tr[data-workflow="flaky"] .success').textContent()).trim();
  result.flakyErrors = (await page.locator('#workflows tr[data-workflow="flaky"] .errors').textContent()).trim();
  check(result.expenseRunning === '1', 'one expense execution running');
  check(result.flakySuccess === '0.0 %', 'the flaky workflow never succeeded');
  check(result.flakyErrors.includes('broken'), 'errors listed by kind');

  // One execution: status, coloured DAG, timeline.
  await page.locator(`#running tr[data-execution="${awaiting}"] a`).click();
  await page.waitForURL('**/executions/' + awaiting);
  await page.locator('#status', { hasText: 'awaiting' }).waitFor();
  result.awaitingBoxes = await page.locator('#dag g.step.awaiting').count();
  result.completedBoxes = await page.locator('#dag g.step.completed').count();
  result.timelineRows = await page.locator('#timeline tbody tr').count();
  check(result.awaitingBoxes === 1 && result.completedBoxes === 1, 'the DAG colours one step awaiting, one completed');
  check(result.timelineRows === 3, 'the timeline lists the three steps');

  // Resume it: the page follows without a reload.
  await page.evaluate(() => { window.__notReloaded = true; });
  await page.fill('#resume-context', '{"approved": true, "approver": "browser"}');
  await page.click('#resume');
  await page.locator('#status', { hasText: 'completed' }).waitFor();
  result.notReloaded = await page.evaluate(() => window.__notReloaded === true);
  result.streamOpen = await page.evaluate(() => events.readyState === EventSource.OPEN);
  result.completedAfter = await page.locator('#dag g.step.completed').count();
  check(result.notReloaded, 'the page updated itself, without a reload');
  check(result.streamOpen, 'the page listens to the event stream');
  check(result.completedAfter === 3, 'every step completed in the DAG');

  // Retry the dead letter from the overview.
  await page.goto(base);
  const retry = page.locator(`#letters tr[data-letter="${letter}"] button.retry`);
  await retry.click();
  await page.locator(`#letters tr[data-letter="${letter}"]`).waitFor({ state: 'detached' });
  result.flash = (await page.locator('#flash').textContent()).trim();
  check(result.flash === 'done', 'the retry was accepted');
  console.log(JSON.stringify({ ok: true, ...result }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: String(e.message ?? e), ...result }));
  process.exitCode = 1;
} finally {
  await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
