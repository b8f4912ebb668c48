// The browser test's visitor scenarios: the waiting page moving up and letting the visitor in
// (with and without JavaScript, pushed or polled), a pre-queue's countdown, a proof-of-work
// room, and the page's accessibility.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { inspect } from 'node:util';

import {
  LOG_DIR,
  API,
  TITLE_WAITING,
  ROOM_CONFIG,
  sleep,
  log,
  waitFor,
  browser,
  DESKTOP,
  PHONE,
  openPage,
  screenshot,
  shown,
  WAIT_IN_WORDS,
  waitForPosition,
  waitForApplication,
  assertWaitingDocument,
  assertLandedOnApplication,
  auditPage,
  assertAccessible,
} from './support.mjs';

/** Two visitors ahead in a paused room; the page moves up by itself and lets the visitor in. */
export async function scenarioWithScript(target) {
  const room = 'shop';
  await target.createRoom(room, ['/shop']);
  await target.pause(room);
  const a = await target.join(room);
  const b = await target.join(room);
  await target.waitStats(room, 'two waiting', (s) => s.waiting === 2);
  log(`${target.name}: room ${room} paused, ${a.id} and ${b.id} waiting`);

  const { context, page, documents } = await openPage();
  try {
    const response = await page.goto(`${target.base}/shop/`);
    assertWaitingDocument(response, documents);
    assert.equal(await page.title(), TITLE_WAITING);
    const first = await shown(page);
    log(`${target.name}: the waiting page first showed position ${first.position}, wait "${first.eta}"`);
    const seen = [first.position];
    const at3 = await waitForPosition(page, target, 3, seen);
    // The room is paused: nobody is being let in, and the page says the wait is unknown.
    assert.match(at3.eta, WAIT_IN_WORDS, 'an estimated wait in words');
    await screenshot(page, target, '1-waiting-position-3');

    await target.resume(room);
    await target.arrive(a);
    log(`${target.name}: resumed; ${a.id} admitted and arrived`);
    const at2 = await waitForPosition(page, target, 2, seen);
    // The room's one slot is held and none has freed yet: how fast slots free is unknown, and
    // so is the wait (the configured rate would say a fraction of a second).
    assert.equal(at2.eta, 'unknown', 'a full room where no slot has freed yet: no estimate');
    await screenshot(page, target, '2-position-2');

    await target.leave(a);
    await target.arrive(b);
    log(`${target.name}: ${a.id} left; ${b.id} admitted and arrived`);
    const at1 = await waitForPosition(page, target, 1, seen);
    // One slot has freed a moment ago: too little to measure how fast they free, so the page
    // may still say unknown; either way, a wait in words.
    assert.match(at1.eta, WAIT_IN_WORDS, 'a wait in words');
    assert.notEqual(at1.updated, first.updated, 'the page says when it last updated');
    await screenshot(page, target, '3-position-1');
    assert.equal(documents.length, 1, 'the page moved up in place (by script), without reloading');

    await target.leave(b);
    log(`${target.name}: ${b.id} left`);
    await waitForApplication(page, target.timeout);
    assertLandedOnApplication(documents);
    await screenshot(page, target, '4-admitted');
    log(`${target.name}: positions shown ${seen.join(' -> ')}, then in; documents: ${documents.map((d) => `${d.status} ${d.queuegate ?? 'app'}`).join(', ')}`);
    const numbers = seen.map(Number);
    assert.deepEqual(numbers, [...numbers].sort((x, y) => y - x), `positions never rise: ${seen.join(' -> ')}`);
    const stats = (await target.admin('GET', `/rooms/${room}`)).stats;
    assert.equal(stats.active, 1, `the browser holds the room's one slot: ${inspect(stats)}`);
    assert.equal(stats.waiting, 0);
  } finally {
    await context.close();
  }
}

/** Without JavaScript: the page's own refresh (<noscript> meta refresh) lets the visitor in. */
export async function scenarioWithoutScript(target) {
  const room = 'noscript';
  await target.createRoom(room, ['/noscript']);
  await target.pause(room);
  const a = await target.join(room);
  await target.waitStats(room, 'one waiting', (s) => s.waiting === 1);

  const { context, page, documents } = await openPage({ javaScriptEnabled: false });
  try {
    const response = await page.goto(`${target.base}/noscript/`);
    assertWaitingDocument(response, documents);
    assert.equal(await page.title(), TITLE_WAITING);
    const html = await response.text();
    const refresh = html.match(/<noscript><meta http-equiv="refresh" content="(\d+)"><\/noscript>/);
    assert.ok(refresh, 'the page refreshes itself without JavaScript (<noscript> meta refresh)');
    const seconds = Number(refresh[1]);
    assert.ok(seconds >= 1 && seconds <= 30, `the refresh interval ${seconds} s is within 1-30 s`);
    // One visitor ahead (at the edge a position can lag a scheduler tick: the page's own refresh
    // then shows it).
    const first = await waitFor('the page to show position 2', async () => {
      const now = await shown(page);
      return now?.position === '2' && now;
    }, { timeout: target.timeout });
    assert.match(first.eta, WAIT_IN_WORDS);
    await screenshot(page, target, '5-noscript-waiting-position-2');
    log(`${target.name}: without JavaScript, position ${first.position}, refreshing every ${seconds} s`);

    await target.resume(room);
    await target.arrive(a);
    await target.leave(a);
    log(`${target.name}: ${a.id} came in and left`);
    const startedWaiting = Date.now();
    await waitForApplication(page, target.landTimeout);
    assertLandedOnApplication(documents);
    assert.ok(documents.length >= 2, 'the page got there by refreshing itself');
    log(`${target.name}: without JavaScript, in after ${((Date.now() - startedWaiting) / 1000).toFixed(1)} s and ${documents.length} page loads`);
    await screenshot(page, target, '6-noscript-admitted');
  } finally {
    await context.close();
  }
}

/** A scheduled event: the page counts down to the opening, then lets the visitor in. */
export async function scenarioPrequeue(target) {
  const room = 'launch';
  await target.createRoom(room, ['/launch']);
  const now = Date.now();
  // The opening, far enough ahead to see the countdown tick on a loaded machine.
  const opensAt = now + 12_000;
  await target.admin('PUT', `/rooms/${room}/events/opening`, {
    prequeue_at: now, start_at: opensAt, end_at: opensAt + 600_000,
  });
  await target.waitStats(room, 'no slot open for direct entry', (s) => s.entry_credit === 0);
  const { context, page, documents } = await openPage();
  try {
    const response = await page.goto(`${target.base}/launch/`);
    assertWaitingDocument(response, documents);
    const html = await response.text();
    assert.ok(html.includes(`data-opens-at="${opensAt}"`), 'the page knows when the sale opens');
    const COUNTDOWN = /^opens in \d+:\d\d$/;
    const first = await waitFor('the countdown', async () => {
      const shownNow = await shown(page);
      return COUNTDOWN.test(shownNow?.eta ?? '') && shownNow;
    }, { timeout: target.timeout });
    assert.equal(first.position, 'kept until the opening');
    await screenshot(page, target, '9-prequeue-countdown');
    const later = await waitFor('the countdown to move', async () => {
      const shownNow = await shown(page);
      return COUNTDOWN.test(shownNow?.eta ?? '') && shownNow.eta !== first.eta && shownNow;
    }, { timeout: 5_000 });
    log(`${target.name}: pre-queue page counting down: "${first.eta}", then "${later.eta}"`);
    assert.ok(Date.now() < opensAt, 'still before the opening');
    await waitForApplication(page, target.landTimeout);
    assertLandedOnApplication(documents);
    assert.ok(Date.now() >= opensAt - 1_000, 'in at the opening, not before (the clocks agree within a second)');
    log(`${target.name}: in ${((Date.now() - opensAt) / 1000).toFixed(1)} s after the opening`);
  } finally {
    await context.close();
  }
}

/** Accessibility on a desktop and on a phone, and the phone layout. */
export async function scenarioAccessibility(target) {
  const room = 'phone';
  await target.createRoom(room, ['/phone']);
  await target.pause(room);
  for (let i = 0; i < 3; i++) await target.join(room);

  for (const [name, options] of [['desktop', DESKTOP], ['phone', PHONE]]) {
    const { context, page, documents } = await openPage(options);
    try {
      const response = await page.goto(`${target.base}/phone/`);
      assertWaitingDocument(response, documents);
      const audit = await page.evaluate(auditPage);
      const ratios = audit.texts.map((t) => `${t.element} ${t.ratio}`).join(', ');
      log(`${target.name} ${name}: lang=${audit.lang}, live region ${audit.live?.role}/${audit.live?.ariaLive}; contrast ${ratios}`);
      assertAccessible(audit);
      if (name === 'phone') {
        // A mobile browser zooms out to fit content wider than the screen, widening the layout
        // viewport: so the page fits only if innerWidth stays the screen's width, too.
        assert.equal(audit.innerWidth, 375,
          `the page fits the phone's width (innerWidth ${audit.innerWidth}, scrollWidth ${audit.scrollWidth})`);
        assert.ok(audit.scrollWidth <= audit.innerWidth,
          `no horizontal scrolling on a phone: scrollWidth ${audit.scrollWidth} > innerWidth ${audit.innerWidth}`);
        const position = page.locator('#position');
        assert.ok(await position.isVisible(), 'the position is visible');
        const box = await position.boundingBox();
        assert.ok(box && box.x >= 0 && box.x + box.width <= 375 && box.y >= 0 && box.y + box.height <= 667,
          `the position is on the first screen: ${inspect(box)}`);
        assert.match((await position.textContent()).trim(), /^\d+$/);
        await screenshot(page, target, '7-phone', { fullPage: true });
      }
    } finally {
      await context.close();
    }
  }
}

/** A room with a proof-of-work challenge: the browser gets the page that solves it (in a Web
 * Worker), joins with the answer and lands in line; then it is let in. Records how long solving
 * took, for each difficulty in POW_BITS (default 16), in target/browser-test/pow-<target>.json. */
export async function scenarioProofOfWork(target) {
  const solves = [];
  for (const bits of (process.env.POW_BITS || '16').split(/[\s,]+/).filter(Boolean).map(Number)) {
    const room = `pow${bits}`;
    await target.admin('PUT', `/rooms/${room}`, {
      paths: [`/${room}`], ...ROOM_CONFIG, challenge: { kind: 'pow', difficulty: bits },
    });
    await target.pause(room);
    const { context, page, documents } = await openPage();
    const solved = new Promise((resolve) => {
      page.on('console', (message) => {
        const m = message.text().match(/^queuegate challenge solved (.*)$/);
        if (m) resolve(JSON.parse(m[1]));
      });
    });
    let keepBody;
    const firstBody = new Promise((resolve) => { keepBody = resolve; });
    await page.route(`${target.base}/${room}/`, async (route) => {
      const passed = await route.fetch();
      keepBody(await passed.text());
      await route.fulfill({ response: passed });
    }, { times: 1 });
    try {
      const response = await page.goto(`${target.base}/${room}/`);
      assert.equal(response.status(), 200);
      assert.equal(response.headers()['x-queuegate-status'], 'challenge', 'the first answer is the challenge page');
      // Read as it passed (the route above): the page may have solved and moved on by now, and the
      // browser then no longer has the body.
      const body = await firstBody;
      assert.match(body, /<progress/, 'the page shows its progress');
      await screenshot(page, target, `8-challenge-${bits}`);
      const solve = await solved;
      assert.equal(solve.difficulty, bits);
      log(`${target.name}: Chromium solved a ${bits}-bit challenge in ${solve.ms} ms (${solve.tried} hashes)`);
      solves.push({ difficulty: bits, ms: solve.ms, hashes: solve.tried, chromium: browser.version() });
      // Joined with the answer, the page loads again and shows its place in line.
      const first = await waitFor('the waiting page after the challenge', async () => {
        const now = await shown(page);
        return now?.title === TITLE_WAITING && now.position === '1' && now;
      }, { timeout: target.timeout });
      assert.equal(first.position, '1');
      assert.equal((await target.admin('GET', `/rooms/${room}`)).stats.waiting, 1, 'one place, taken by the browser');
      await target.resume(room);
      await waitForApplication(page, target.timeout);
      assertLandedOnApplication(documents);
      assert.deepEqual(documents.map((d) => d.queuegate ?? 'app').slice(0, 2), ['challenge', 'waiting'],
        `challenge page, then the waiting page, then in: ${inspect(documents)}`);
    } finally {
      await context.close();
    }
  }
  fs.mkdirSync(LOG_DIR, { recursive: true });
  fs.writeFileSync(path.join(LOG_DIR, `pow-${target.name}.json`), JSON.stringify(solves, null, 2));
}

/** Pushed updates: the page listens to the room's stream and moves up when the one ahead leaves,
 * without a single status poll (it polls only when the stream cannot be had). */
export async function scenarioStream(target) {
  const room = 'pushed';
  await target.createRoom(room, ['/pushed']);
  await target.pause(room);
  const a = await target.join(room);
  const { context, page, documents } = await openPage();
  const asked = [];
  page.on('request', (req) => asked.push(new URL(req.url()).pathname));
  try {
    const response = await page.goto(`${target.base}/pushed/`);
    assertWaitingDocument(response, documents);
    await waitForPosition(page, target, 2, []);
    await waitFor('the page to open its stream', async () => asked.includes(`${API}/rooms/${room}/stream`),
      { timeout: target.timeout });
    const left = Date.now();
    await target.leave(a);
    await waitForPosition(page, target, 1, []);
    log(`${target.name}: the page showed place 1 ${Date.now() - left} ms after the one ahead left`);
    // Long enough for a few polls, had the page polled.
    await sleep(4_000);
    assert.ok(!asked.includes(`${API}/rooms/${room}/status`), `no status poll: ${asked.join(', ')}`);
    assert.equal(documents.length, 1, 'moved up in place');
    await target.resume(room);
    await waitForApplication(page, target.landTimeout);
    assertLandedOnApplication(documents);
  } finally {
    await context.close();
  }
}
