// The browser test's operator scenario: the dashboard.

import assert from 'node:assert/strict';
import { inspect } from 'node:util';

import {
  API,
  ADMIN_KEY,
  ROOM_CONFIG,
  log,
  waitFor,
  openPage,
  screenshot,
} from './support.mjs';

/** The operators' dashboard: the key asked for and kept in memory only, every room's numbers
 * and charts, and the controls acting through the admin API. */
export async function scenarioDashboard(target) {
  const room = 'dash';
  await target.admin('PUT', `/rooms/${room}`, { paths: ['/dash'], ...ROOM_CONFIG, max_active: 5 });
  await target.pause(room);
  // The scheduler's first look at the room sets where the report's totals start: the joins
  // come after it.
  const since = Date.now() - 1000;
  await waitFor('the room in the report', async () => (await target.admin('GET', `/rooms/${room}/report?since_ms=${since - since % 60000}`)).minutes.length > 0, { timeout: target.timeout });
  const before = (await target.admin('GET', `/rooms/${room}/report`)).totals.joins;
  const visitors = [];
  for (let i = 0; i < 3; i++) visitors.push(await target.join(room));
  const { context, page } = await openPage({ viewport: { width: 1280, height: 1000 } });
  const step = { timeout: target.timeout };
  try {
    const response = await page.goto(`${target.base}${API}/admin/ui`);
    assert.equal(response.status(), 200);
    assert.match(response.headers()['content-security-policy'], /script-src 'sha256-/);
    // A wrong key is refused with the API's own error.
    await page.fill('#key', 'not-the-admin-key');
    await page.click('#signin button');
    await waitFor('the refusal', async () => (await page.textContent('#signin-message')).startsWith('unauthorized'), step);
    await page.fill('#key', ADMIN_KEY);
    await page.click('#signin button');
    const card = page.locator(`section[data-room="${room}"]`);
    const stat = (name) => card.locator(`[data-stat="${name}"]`).textContent();
    await waitFor('the room with 3 waiting', async () => (await stat('waiting')) === '3', step);
    assert.ok(await card.locator('.badge.paused').isVisible(), 'the room shows it is paused');
    const roomView = () => target.admin('GET', `/rooms/${room}`);

    // Admit 2 by hand, then resume.
    await card.locator('[data-input="count"]').fill('2');
    await card.locator('[data-action="admit"]').click();
    await waitFor('2 admitted by hand', async () => (await roomView()).stats.admitted_total >= 2, step);
    await waitFor('the answer', async () => (await card.locator('.message').textContent()) === 'Admitted 2.', step);
    await card.locator('[data-action="resume"]').click();
    await waitFor('the room resumed', async () => !(await roomView()).paused, step);
    await waitFor('the badge gone', async () => card.locator('.badge.paused').isHidden(), step);

    // The scheduler lets the third in: its time in queue, and the joins, from the room's
    // report (the server's history, not the page's).
    const slow = { timeout: Math.max(target.timeout, 30000) };
    const timeInQueue = await waitFor('the time in queue', async () => {
      const text = await stat('time_in_queue');
      return /^[0-9.,]+ s · [0-9.,]+ s$/.test(text) && text;
    }, slow);
    const report = await target.admin('GET', `/rooms/${room}/report`);
    assert.equal(report.totals.joins - before, 3, inspect(report));
    assert.equal(report.totals.waits_measured, 1, inspect(report));
    const measured = report.minutes.find((m) => m.waits_measured > 0);
    const shown = (s) => (s < 10 ? s.toFixed(1) : String(Math.round(s))) + ' s';
    assert.equal(timeInQueue, `${shown(measured.wait_p50_s)} · ${shown(measured.wait_p90_s)}`);
    for (const chart of ['joins_per_s', 'wait_p90_s']) {
      await waitFor(`the ${chart} chart`, async () => ((await card.locator(`[data-chart="${chart}"] polyline`).first().getAttribute('points')) || '').split(' ').length >= 2, slow);
    }

    // Revoke the third visitor's place.
    await card.locator('[data-input="ticket"]').fill(visitors[2].id);
    await card.locator('[data-action="revoke"]').click();
    await waitFor('the revocation', async () => (await card.locator('.message').textContent()).startsWith(`Revoked ${visitors[2].id}`), step);

    // Edit the room: its settings as JSON, saved with PUT; a bad edit shows the API's error.
    await card.locator('details[data-part="edit"] summary').click();
    const config = JSON.parse(await card.locator('[data-input="config"]').inputValue());
    assert.equal(config.max_active, 5);
    config.max_active = 7;
    await card.locator('[data-input="config"]').fill(JSON.stringify(config, null, 2));
    await card.locator('[data-action="save"]').click();
    await waitFor('max_active 7', async () => (await roomView()).max_active === 7, step);
    await waitFor('the numbers to follow', async () => (await stat('active')).endsWith('/ 7'), step);
    await card.locator('[data-input="config"]').fill('{"max_active": -1}');
    await card.locator('[data-action="save"]').click();
    const refused = await waitFor('the refusal of a bad edit', async () => {
      const text = await card.locator('.message').textContent();
      return /^[a-z_]+: /.test(text) && text;
    }, step);
    assert.equal((await roomView()).max_active, 7, `a refused edit changes nothing (${refused})`);

    // Charts drawn from the readings, and the key in no storage.
    await waitFor('a chart', async () => ((await card.locator('[data-chart="waiting"] polyline').getAttribute('points')) || '').split(' ').length >= 2, step);
    const stored = await page.evaluate(() => JSON.stringify({ local: { ...localStorage }, session: { ...sessionStorage }, cookie: document.cookie }));
    assert.ok(!stored.includes(ADMIN_KEY), 'the admin key is kept in no storage');
    await screenshot(page, target, '12-dashboard', { fullPage: true });
    log(`${target.name}: the dashboard admitted, resumed, revoked and edited; ${await page.evaluate(() => window.queuegateDashboard.polls)} polls`);
  } finally {
    await context.close();
  }
}
