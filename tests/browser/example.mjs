// Opens the pages of the dashboard example (`cargo run --example dashboard`) in
// Debian's Chromium, as a visitor would: the overview, a workflow's page, a
// scheduled workflow's next fire times, and an execution whose steps were
// retried. Saves a screenshot of each page into the output directory. Prints one
// JSON line; exits 1 on failure.
//
//   node example.mjs <dashboard URL> <output directory> <execution id with retries> <bearer token>

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const [base, out, retried, token] = process.argv.slice(2);
fs.mkdirSync(out, { recursive: true });
const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sagaflow-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1280, height: 900 },
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
const result = { screenshots: [] };
function check(cond, what) {
  if (!cond) throw new Error('expected: ' + what + ' — seen: ' + JSON.stringify(result));
}
async function shot(page, name) {
  const file = path.join(out, name);
  await page.screenshot({ path: file, fullPage: true });
  result.screenshots.push(file);
}
try {
  const page = context.pages()[0] ?? await context.newPage();
  page.setDefaultTimeout(15_000);

  // The dashboard asks for its token once; its cookie keeps the session.
  await page.goto(base);
  await page.fill('#token', token);
  await page.click('#login');

  // The overview lists every workflow of the example.
  await page.locator('#workflows tr[data-workflow="order_processing"]').waitFor();
  result.workflows = await page.locator('#workflows tbody tr').count();
  check(result.workflows === 6, 'the five workflows of SPEC and the stock sync');
  await shot(page, 'overview.png');

  // A workflow's page: its DAG, statistics and recent executions.
  await page.locator('#workflows tr[data-workflow="order_processing"] a').click();
  await page.waitForURL('**/workflows/order_processing');
  await page.locator('#executions tbody tr').first().waitFor();
  result.dagSteps = await page.locator('#dag g.step').count();
  result.stepRows = await page.locator('#step-stats tbody tr').count();
  result.executions = await page.locator('#executions tbody tr').count();
  result.stats = (await page.locator('#stats').textContent()).trim();
  check(result.dagSteps === 10, 'the ten steps of the order workflow drawn');
  check(result.stepRows === 10, 'a statistics row per step');
  check(result.stats.includes('ended'), 'statistics of the ended executions');
  await shot(page, 'workflow.png');

  // A scheduled workflow shows its next fire times, one minute apart.
  await page.goto(base + '/stock_sync');
  await page.locator('#schedules .next-fires .fire').first().waitFor();
  result.nextFires = await page.locator('#schedules .next-fires .fire').count();
  result.schedule = (await page.locator('#schedules tbody td').first().textContent()).trim();
  check(result.nextFires === 5, 'five next fire times');
  check(result.schedule === 'cron * * * * *', 'the every-minute schedule');

  // An execution whose steps were retried.
  await page.goto(base + '/executions/' + retried);
  await page.locator('#dag g.step').first().waitFor();
  await page.locator('#status').filter({ hasText: /\w/ }).waitFor();
  result.retriedStatus = (await page.locator('#status').textContent()).trim();
  result.retriedSteps = await page.locator('#dag g.step').count();
  check(result.retriedSteps > 0, 'the execution\'s DAG drawn');
  // Every attempt is a bar on the timeline: a retried step's row holds several.
  await page.locator('#timeline tbody .lane .bar').first().waitFor();
  result.attemptBars = await page.locator('#timeline tbody tr').evaluateAll(
    (rows) => Math.max(0, ...rows.map((r) => r.querySelectorAll('.lane .bar').length)));
  check(result.attemptBars >= 2, 'a bar per attempt of a retried step');
  await shot(page, 'execution.png');
  console.log(JSON.stringify({ ok: true, ...result }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: String(e.message ?? e), ...result }));
  process.exitCode = 1;
} finally {
  await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
