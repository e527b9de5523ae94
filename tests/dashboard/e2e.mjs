// The coordinator dashboard end to end in headless Chromium (Debian's `chromium`, driven by
// playwright-core): a real coordinator (coordinator/examples/dashboard_fixture.rs) with
// runs driven step by step over its WorkService, looked at the way a person does.
//
//   node tests/dashboard/e2e.mjs            (./scripts/test builds the fixture and runs this)
//
// Environment: R1_DASHBOARD_FIXTURE (the fixture binary; default
// $CARGO_TARGET_DIR/debug/examples/dashboard_fixture), CHROMIUM (default /usr/bin/chromium),
// R1_DASHBOARD_OUT (screenshots; default tests/dashboard/out).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const target = process.env.CARGO_TARGET_DIR || path.join(root, 'target');
const fixturePath = process.env.R1_DASHBOARD_FIXTURE || path.join(target, 'debug/examples/dashboard_fixture');
const out = process.env.R1_DASHBOARD_OUT || path.join(here, 'out');
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const STEPS = 3;
const XSS_NAME = "<img src=x onerror=\"window.__xss='name-img'\"><script>window.__xss='name'</script> xss";

fs.mkdirSync(out, { recursive: true });
for (const f of fs.readdirSync(out)) if (f.endsWith('.png')) fs.rmSync(path.join(out, f));

// ---------------------------------------------------------------- the fixture

const data = fs.mkdtempSync(path.join(os.tmpdir(), 'r1-dashboard-'));
const fixture = spawn(fixturePath, [data, String(STEPS)], { stdio: ['pipe', 'pipe', 'inherit'] });
fixture.on('error', (e) => { console.error(`cannot start ${fixturePath}: ${e.message}; build it with cargo build -p r1-coordinator --example dashboard_fixture`); process.exit(1); });
const replies = readline.createInterface({ input: fixture.stdout });
const pending = [];
replies.on('line', (line) => { const next = pending.shift(); if (next) next(JSON.parse(line)); });
const reply = () => new Promise((resolve) => pending.push(resolve));
const command = (line) => { const r = reply(); fixture.stdin.write(line + '\n'); return r; };

const info = await reply();
const { url, token, runs } = info;
const api = async (p) => (await fetch(url + p)).json();

// ---------------------------------------------------------------- the browser

const browser = await chromium.launch({
  executablePath: chromiumPath,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const context = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
const page = await context.newPage();
// Anything a run's text made the page do: a dialog, a script error, a console error (a
// failed image load, a CSP violation).
let problems = [];
page.on('dialog', (d) => { problems.push(`dialog: ${d.message()}`); d.dismiss(); });
page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });

const shot = (name, fullPage = true) => page.screenshot({ path: path.join(out, name), fullPage });
const points = (chart, series) => page.locator(`figure[data-chart="${chart}"] g[data-series="${series}"] circle.pt`).count();

const checks = [];
const check = (name, f) => checks.push([name, f]);

check('the runs page lists every run with its state and filters by state', async () => {
  await page.goto(url + '/');
  await page.waitForSelector('table.runs tr[data-run]');
  assert.equal(await page.locator('tr[data-run]').count(), 3);
  const row = page.locator(`tr[data-run="${runs.demo}"]`);
  assert.equal(await row.locator('td.name a').textContent(), 'gsm-demo');
  assert.equal(await row.locator('.badge').textContent(), 'running');
  assert.match(await row.textContent(), new RegExp(`${STEPS} / 40`));
  assert.equal(await page.locator(`tr[data-run="${runs.xss}"] td.name a`).textContent(), XSS_NAME, 'the name shows as text');
  for (const [state, want] of [['completed', [runs.done]], ['running', [runs.demo, runs.xss]], ['', [runs.demo, runs.xss, runs.done]]]) {
    await page.selectOption('#state-filter', state);
    await page.waitForFunction((n) => document.querySelectorAll('tr[data-run]').length === n, want.length);
    const ids = await page.locator('tr[data-run]').evaluateAll((rows) => rows.map((r) => Number(r.dataset.run)));
    assert.deepEqual(ids.sort(), want.slice().sort(), `filter ${state || 'all'}`);
  }
  await shot('runs.png');
});

check('a run page draws one point per finished step and grows without a reload', async () => {
  await page.goto(`${url}/runs/${runs.demo}`);
  await page.waitForFunction((n) => document.querySelectorAll('figure[data-chart="reward"] g[data-series="reward_mean"] circle.pt').length === n, STEPS);
  for (const [chart, series] of [['reward', 'reward_mean'], ['reward', 'reward/accuracy'], ['accuracy', 'accuracy'], ['accuracy', 'format_rate'],
    ['length', 'response_len_mean'], ['length', 'response_len_max'], ['truncated', 'truncated_frac'], ['kl', 'kl'], ['entropy', 'entropy'],
    ['clip', 'clip_frac'], ['throughput', 'actor_tokens_per_s'], ['throughput', 'learner_tokens_per_s'], ['staleness', 'staleness_mean'],
    ['sync', 'weight_sync_seconds'], ['queues', 'queue_generate']]) {
    assert.equal(await points(chart, series), STEPS, `${chart}/${series}`);
  }
  assert.equal(await points('eval', 'eval_accuracy'), 1, 'the base model is evaluated at step 0');
  assert.equal(await page.locator('figure[data-chart="reward"] polygon.band').count(), 1, 'reward has its ± std band');
  const steps = await page.locator('figure[data-chart="reward"] g[data-series="reward_mean"] circle.pt').evaluateAll((c) => c.map((x) => Number(x.dataset.step)));
  assert.deepEqual(steps, [1, 2, 3]);
  assert.match(await page.locator('#checkpoints').textContent(), /step-2/);
  assert.match(await page.locator('#spec pre').textContent(), /"group_size": 4/);

  await page.evaluate(() => { window.__samePage = true; });
  const { step } = await command(`step ${runs.demo}`);
  assert.equal(step, STEPS + 1);
  await page.waitForFunction((n) => document.querySelectorAll('figure[data-chart="reward"] g[data-series="reward_mean"] circle.pt').length === n, STEPS + 1, { timeout: 15000 });
  assert.equal(await page.evaluate(() => window.__samePage), true, 'the page was not reloaded');
  assert.equal(await points('kl', 'kl'), STEPS + 1);
  assert.match(await page.locator('#run-head').textContent(), new RegExp(`${STEPS + 1} / 40`));
  await shot('run.png');
  await shot('run-top.png', false);
});

check('the samples of a step show their completions with think and answer set apart', async () => {
  await page.click('#samples-link');
  await page.waitForURL(`${url}/runs/${runs.demo}/samples`);
  await page.waitForSelector('section.group .completion');
  assert.equal(await page.locator('#step').inputValue(), String(STEPS + 1), 'the latest step first');
  await page.selectOption('#step', '1');
  await page.waitForFunction(() => [...document.querySelectorAll('.part.think')].some((p) => p.textContent.includes('Step 1,')));
  assert.equal(await page.locator('section.group').count(), 2, 'samples_per_step = 2');
  assert.equal(await page.locator('section.group').first().locator('.completion').count(), 4, 'G = 4 completions');
  const think = await page.locator('.part.think .plain').first().textContent();
  assert.match(think, /^Step 1, group \d+: sample \d works it out/);
  assert.ok(!think.includes('<think>'), 'the tags are not part of the text');
  assert.match(await page.locator('.part.answer .plain').first().textContent(), /^(right|wrong)$/);
  assert.match(await page.locator('section.group').first().textContent(), /What is \d+ \+ \d+\?/);
  const order = (attr) => page.locator('section.group').first().locator('.completion').evaluateAll((cs, a) => cs.map((c) => Number(c.getAttribute(a))), attr);
  const rewards = await order('data-reward');
  assert.deepEqual(rewards, rewards.slice().sort((a, b) => b - a), 'best reward first by default');
  await page.selectOption('#sort', 'length-desc');
  await page.waitForURL(/sort=length-desc/);
  assert.deepEqual(await order('data-tokens'), [9, 7, 5, 3]);
  await page.selectOption('#sort', 'reward-asc');
  await page.waitForURL(/sort=reward-asc/);
  const up = await order('data-reward');
  assert.deepEqual(up, up.slice().sort((a, b) => a - b));
  await page.click('#next');
  await page.waitForFunction(() => document.querySelector('#step').value === '2');
  await page.selectOption('#sort', 'reward-desc');
  await page.waitForFunction(() => document.querySelector('#step').value === '2' && !location.search.includes('sort='));
  await shot('samples.png');
  await shot('samples-top.png', false);
});

check('the fleet page shows every worker of each role and the silent one as gone', async () => {
  await page.goto(`${url}/workers`);
  await page.waitForSelector('tr[data-worker]');
  for (const [role, name, gone] of [['actor', 'actor-0', false], ['actor', 'actor-1', true], ['reward', 'reward-0', false], ['learner', 'learner-0', false]]) {
    const row = page.locator(`section[data-role="${role}"] tr[data-worker="${name}"]`);
    assert.equal(await row.count(), 1, `${role} ${name}`);
    assert.equal(await row.locator('.badge').textContent(), gone ? 'gone' : 'live', `${name}`);
  }
  assert.match(await page.locator('section[data-role="actor"] tr[data-worker="actor-0"]').textContent(), /tokens\/s/);
  await shot('fleet.png');
});

check('a run whose name, prompt and completions hold HTML and script shows them as text', async () => {
  problems = [];
  await page.goto(`${url}/runs/${runs.xss}`);
  await page.waitForSelector('figure[data-chart="reward"] circle.pt');
  assert.equal(await page.locator('#run-name').textContent(), XSS_NAME);
  assert.equal(await page.title(), `r1 · ${XSS_NAME}`);
  await page.goto(`${url}/runs/${runs.xss}/samples`);
  await page.waitForSelector('.completion');
  const text = await page.locator('.completion .body').first().textContent();
  assert.ok(text.includes("<script>window.__xss='completion'</script>"), text);
  assert.ok(await page.locator('.prompt').first().textContent().then((t) => t.includes("<script>window.__xss='prompt'</script>")));
  await page.goto(`${url}/`);
  await page.waitForSelector('tr[data-run]');
  for (const where of ['runs page']) {
    assert.equal(await page.evaluate(() => window.__xss), undefined, `${where}: nothing ran`);
    assert.equal(await page.locator('main script, main img').count(), 0, `${where}: no element made from run text`);
  }
  await page.goto(`${url}/runs/${runs.xss}/samples`);
  await page.waitForSelector('.completion');
  assert.equal(await page.evaluate(() => window.__xss), undefined, 'samples page: nothing ran');
  assert.equal(await page.locator('main script, main img').count(), 0);
  assert.deepEqual(problems, [], 'no dialog, script error or failed load');
  await shot('xss-samples.png');
});

check('cancel is refused without the token and with a wrong one, and works with it', async () => {
  await page.goto(`${url}/runs/${runs.demo}`);
  await page.waitForSelector('#cancel');
  const attempt = async (tokenText) => {
    await page.fill('#token', tokenText);
    await page.click('#cancel');
    assert.match(await page.locator('#cancel').textContent(), /Confirm/);
    await page.click('#cancel');
    await page.waitForFunction(() => document.querySelector('#cancel-result')?.textContent !== '');
    const result = await page.locator('#cancel-result').textContent();
    await page.evaluate(() => { const r = document.querySelector('#cancel-result'); if (r) r.textContent = ''; });
    return result;
  };
  assert.match(await attempt(''), /^Refused \(401\): .*bearer token/);
  assert.equal((await api(`/api/runs/${runs.demo}`)).state, 'running');
  assert.match(await attempt('not-the-token'), /^Refused \(403\): .*wrong/);
  assert.equal((await api(`/api/runs/${runs.demo}`)).state, 'running');
  await shot('cancel-refused.png', false);
  await page.fill('#token', token);
  await page.click('#cancel');
  await page.click('#cancel');
  await page.waitForSelector('#run-head .badge.cancelled');
  assert.equal((await api(`/api/runs/${runs.demo}`)).state, 'cancelled');
  assert.equal(await page.locator('#cancel').count(), 0, 'a finished run has no cancel button');
});

// ---------------------------------------------------------------- run them

let failed = 0;
for (const [name, f] of checks) {
  try {
    await f();
    console.log(`ok   ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}\n     ${String(e.stack || e).split('\n').join('\n     ')}`);
    if (problems.length) console.log(`     page problems: ${problems.join('; ')}`);
    await shot(`failed-${checks.findIndex(([n]) => n === name)}.png`).catch(() => {});
  }
}
await browser.close();
fixture.stdin.end('quit\n');
fs.rmSync(data, { recursive: true, force: true });
console.log(`${checks.length - failed} of ${checks.length} browser checks passed; screenshots in ${out}`);
process.exit(failed ? 1 : 0);
