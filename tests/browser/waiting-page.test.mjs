// The waiting page in a real browser (Debian's Chromium, headless, driven by playwright-core),
// against the origin (`queuegate-origin serve`) and against the edge (the worker under real
// `wrangler dev`, with the origin's scheduler driving it). Both are started here on free
// loopback ports and stopped at the end, also on failure.
//
// Run it with scripts/browser-test.sh (which installs and builds what it needs), or
// `node --test tests/browser/` once Chromium, node_modules and the builds are there.
//
// Environment:
//   SCREENSHOT_DIR        where the screenshots go (default target/browser-screenshots)
//   CHROMIUM              the browser (default /usr/bin/chromium)
//   BROWSER_TEST_TARGETS  which targets to run (default "origin edge")

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { inspect } from 'node:util';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const SCREENSHOT_DIR = path.resolve(ROOT, process.env.SCREENSHOT_DIR || 'target/browser-screenshots');
const LOG_DIR = path.join(ROOT, 'target', 'browser-test');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TARGETS = (process.env.BROWSER_TEST_TARGETS || 'origin edge').split(/[\s,]+/).filter(Boolean);
const ORIGIN_BIN = path.join(ROOT, 'target', 'debug', 'queuegate-origin');
const API = '/_qg/v1';
const ADMIN_KEY = randomBytes(18).toString('hex');
const SIGNING_KEYS = `k1:${randomBytes(16).toString('hex')}`;
const TICK_MS = 200;
const TITLE_WAITING = 'You are in line';
const TITLE_IN = 'You are in: queuegate demo';
// A room of one slot, admitting fast. While a room is paused the server recommends polling at a
// quarter of the claim window (here 3 s), and an admitted visitor must arrive within it.
const ROOM_CONFIG = {
  max_active: 1,
  admit_per_minute: 600,
  session_ttl_s: 600,
  claim_window_s: 12,
  shards: 1,
};

const started = Date.now();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const log = (...args) => console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s]`, ...args);

// ---- processes ---------------------------------------------------------------------------------

const running = new Set();
let persistDir; // the Durable Object storage of the edge's `wrangler dev`, removed at the end

/** A process started in its own process group, stopped with all its children. */
class Group {
  constructor(name, command, args, env) {
    fs.mkdirSync(LOG_DIR, { recursive: true });
    this.name = name;
    this.logPath = path.join(LOG_DIR, `${name}.log`);
    const out = fs.openSync(this.logPath, 'w');
    this.child = spawn(command, args, {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', out, out],
      detached: true,
    });
    fs.closeSync(out);
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal })));
    this.alive = true;
    this.exited.then(() => { this.alive = false; });
    running.add(this);
  }

  signal(name) {
    const pid = this.child.pid;
    if (!pid || pid <= 1) return;
    try { process.kill(-pid, name); } catch { /* already gone */ }
  }

  async stop() {
    if (!running.delete(this)) return;
    this.signal('SIGTERM');
    let timer;
    const gone = await Promise.race([
      this.exited.then(() => true),
      new Promise((resolve) => { timer = setTimeout(resolve, 10_000, false); }),
    ]);
    clearTimeout(timer);
    // Children of the group (workerd) may outlive the leader: make sure of them too.
    this.signal('SIGKILL');
    if (!gone) await this.exited;
  }

  tail(lines = 40) {
    try { return fs.readFileSync(this.logPath, 'utf8').split('\n').slice(-lines).join('\n'); } catch { return ''; }
  }
}

function killAllNow() {
  for (const group of running) group.signal('SIGKILL');
  running.clear();
}
process.on('exit', killAllNow);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    killAllNow();
    if (persistDir) fs.rmSync(persistDir, { recursive: true, force: true, maxRetries: 3 });
    process.exit(130);
  });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function run(command, args) {
  log(`running ${command} ${args.join(' ')}`);
  const result = spawnSync(command, args, { cwd: ROOT, stdio: 'inherit' });
  assert.equal(result.status, 0, `${command} ${args.join(' ')} failed`);
}

function ensureBuilt() {
  if (!fs.existsSync(ORIGIN_BIN)) run('cargo', ['build', '--locked', '-p', 'queuegate-origin']);
  if (TARGETS.includes('edge') && !fs.existsSync(path.join(ROOT, 'build', 'index.js'))) {
    run('bash', ['scripts/edge.sh', 'build']);
  }
}

/** Polls `fn` until it returns something truthy; fails with what it last saw. */
async function waitFor(what, fn, { timeout, interval = 200 }) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const value = await fn();
      if (value) return value;
      last = value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout / 1000} s waiting for ${what}; last: ${inspect(last)}`);
    }
    await sleep(interval);
  }
}

/** Waits until `base` answers 200 on healthz; fails at once if `group` exits first. */
async function waitForHealth(base, timeout, group) {
  const deadline = Date.now() + timeout;
  for (;;) {
    if (!group.alive) {
      const error = new Error(`${group.name} exited before ${base} came up:\n${group.tail()}`);
      error.exited = true;
      throw error;
    }
    try {
      const response = await fetch(`${base}${API}/healthz`, { signal: AbortSignal.timeout(2000) });
      if (response.status === 200) return;
    } catch { /* not up yet */ }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout / 1000} s waiting for ${base}${API}/healthz:\n${group.tail()}`);
    }
    await sleep(250);
  }
}

/** Starts a server on free ports (`start(port, attempt)` spawns it) and waits until it is up.
 * A free port is only free until someone binds it, and wrangler picks more ports of its own: a
 * server that exits before it comes up (a port taken meanwhile) is started again on others. */
async function startServer(start, timeout) {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const group = await start(port, attempt);
    const base = `http://127.0.0.1:${port}`;
    try {
      await waitForHealth(base, timeout, group);
      return base;
    } catch (error) {
      await group.stop();
      if (!error.exited || attempt === 3) throw error;
      log(`${group.name} exited before it came up; starting it again on other ports`);
    }
  }
}

// ---- the HTTP API ------------------------------------------------------------------------------

class Target {
  constructor(name, base, timeouts) {
    this.name = name;
    this.base = base;
    this.timeout = timeouts.step; // for anything that needs a scheduler tick or a page poll
    this.landTimeout = timeouts.land; // for a page without JavaScript to land by refreshes
  }

  async call(method, route, { bearer, body } = {}) {
    const headers = { accept: 'application/json' };
    if (bearer) headers.authorization = `Bearer ${bearer}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const response = await fetch(`${this.base}${API}${route}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(15_000),
    });
    const text = await response.text();
    let json;
    try { json = JSON.parse(text); } catch { json = text; }
    return { status: response.status, body: json };
  }

  async admin(method, route, body) {
    const reply = await this.call(method, `/admin${route}`, { bearer: ADMIN_KEY, body });
    assert.ok(reply.status >= 200 && reply.status < 300, `${method} /admin${route}: ${reply.status} ${inspect(reply.body)}`);
    return reply.body;
  }

  async createRoom(room, paths) {
    await this.admin('PUT', `/rooms/${room}`, { paths, ...ROOM_CONFIG });
  }

  async pause(room) { await this.admin('POST', `/rooms/${room}/pause`); }
  async resume(room) { await this.admin('POST', `/rooms/${room}/resume`); }

  /** Joins through the API; answers the visitor (its ticket kept for later calls). */
  async join(room) {
    const reply = await this.call('POST', `/rooms/${room}/join`, { body: {} });
    assert.equal(reply.status, 200, `join: ${inspect(reply.body)}`);
    assert.equal(reply.body.status, 'waiting', `a visitor joining a paused room waits: ${inspect(reply.body)}`);
    return { room, ticket: reply.body.ticket, id: reply.body.ticket_id };
  }

  async status(visitor) {
    const reply = await this.call('GET', `/rooms/${visitor.room}/status`, { bearer: visitor.ticket });
    assert.equal(reply.status, 200, `status: ${inspect(reply.body)}`);
    return reply.body;
  }

  /** Waits until the visitor's turn comes; the status call that finds it admitted starts the
   * visitor's session (it takes the slot). */
  async arrive(visitor) {
    const body = await waitFor(`${visitor.id} to be admitted`, async () => {
      const b = await this.status(visitor);
      assert.ok(b.status === 'waiting' || b.status === 'admitted', `unexpected status ${inspect(b)}`);
      return b.status === 'admitted' && b;
    }, { timeout: this.timeout, interval: 150 });
    assert.ok(body.pass, 'an admitted visitor gets a pass');
    visitor.pass = body.pass;
  }

  async leave(visitor) {
    const reply = await this.call('POST', `/rooms/${visitor.room}/leave`, { bearer: visitor.pass || visitor.ticket });
    assert.equal(reply.status, 200, `leave: ${inspect(reply.body)}`);
    assert.equal(reply.body.status, 'left');
  }

  /** Waits until the room's view shows `fn(stats)` (the scheduler saw the change). */
  async waitStats(room, what, fn) {
    return waitFor(`room ${room}: ${what}`, async () => {
      const view = await this.admin('GET', `/rooms/${room}`);
      return fn(view.stats, view) && view;
    }, { timeout: this.timeout, interval: 150 });
  }
}

// ---- the browser -------------------------------------------------------------------------------

let browser;

async function launchBrowser() {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing (apt-get install chromium)`);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  log(`Chromium ${browser.version()}`);
}

const DESKTOP = { viewport: { width: 1024, height: 768 } };
const PHONE = { viewport: { width: 375, height: 667 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 };

/** A fresh context (its own cookie jar: a new visitor) and page, which records the responses
 * of its top-level navigations. */
async function openPage(options = {}) {
  const context = await browser.newContext({ ...DESKTOP, ...options });
  const page = await context.newPage();
  const documents = [];
  page.on('response', (response) => {
    if (response.request().isNavigationRequest() && response.frame() === page.mainFrame()) {
      documents.push({ url: response.url(), status: response.status(), queuegate: response.headers()['x-queuegate-status'] });
    }
  });
  page.on('pageerror', (error) => log(`page error: ${error.message}`));
  return { context, page, documents };
}

async function screenshot(page, target, name, options = {}) {
  fs.mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const file = path.join(SCREENSHOT_DIR, `${target.name}-${name}.png`);
  await page.screenshot({ path: file, ...options });
  log(`screenshot ${path.relative(ROOT, file)}`);
}

/** What the page shows now (null while it navigates). */
async function shown(page) {
  return page.evaluate(() => {
    const text = (id) => document.getElementById(id)?.textContent.trim() ?? null;
    return {
      title: document.title,
      h1: document.querySelector('h1')?.textContent.trim() ?? null,
      position: text('position'),
      eta: text('eta'),
      updated: text('updated'),
    };
  }).catch(() => null);
}

const WAIT_IN_WORDS = /^(unknown|under a minute|about \d+ minutes?|about \d+ h \d+ min)$/;

/** Waits until the waiting page shows `position`, recording every position it showed. */
async function waitForPosition(page, target, position, seen) {
  return waitFor(`the page to show position ${position}`, async () => {
    const now = await shown(page);
    if (now?.position && seen.at(-1) !== now.position) seen.push(now.position);
    return now?.position === String(position) && now;
  }, { timeout: target.timeout, interval: 100 });
}

/** Waits until the page is the application behind the gate (the built-in demo page). */
async function waitForApplication(page, timeout) {
  return waitFor('the page to land on the protected page ("You are in")', async () => {
    const now = await shown(page);
    return now?.title === TITLE_IN && now.h1 === 'You are in' && now;
  }, { timeout, interval: 200 });
}

function assertWaitingDocument(response, documents) {
  assert.ok(response, 'the navigation has a response');
  assert.equal(response.status(), 200);
  assert.equal(response.headers()['x-queuegate-status'], 'waiting', 'X-Queuegate-Status: waiting');
  assert.equal(documents.length, 1);
}

function assertLandedOnApplication(documents) {
  const last = documents.at(-1);
  assert.equal(last.status, 200, `the protected page answers 200: ${inspect(documents)}`);
  assert.equal(last.queuegate, undefined, `the protected page is not a waiting page: ${inspect(documents)}`);
}

// ---- accessibility -----------------------------------------------------------------------------

/** Runs in the page: the accessibility facts the test asserts. */
function auditPage() {
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = 1;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  // Any CSS color to [r, g, b, a] (0-255, alpha 0-1), through a canvas.
  const rgba = (css) => {
    ctx.clearRect(0, 0, 1, 1);
    ctx.fillStyle = 'rgba(0, 0, 0, 0)';
    ctx.fillStyle = css;
    ctx.fillRect(0, 0, 1, 1);
    const [r, g, b, a] = ctx.getImageData(0, 0, 1, 1).data;
    return [r, g, b, a / 255];
  };
  const over = (top, bottom) => [0, 1, 2].map((i) => top[i] * top[3] + bottom[i] * (1 - top[3])).concat(1);
  // The background the element's text is drawn on: every ancestor's background color, from the
  // root (over the white canvas) down to the element.
  const background = (el) => {
    const layers = [];
    const images = [];
    for (let node = el; node; node = node.parentElement) {
      const style = getComputedStyle(node);
      layers.push(rgba(style.backgroundColor));
      if (style.backgroundImage !== 'none') images.push(node.tagName);
    }
    let color = [255, 255, 255, 1];
    for (const layer of layers.reverse()) color = over(layer, color);
    return { color, images };
  };
  const luminance = ([r, g, b]) => {
    const lin = (c) => { c /= 255; return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
  };
  const contrast = (a, b) => {
    const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
    return (hi + 0.05) / (lo + 0.05);
  };
  const describe = (el) => el.tagName.toLowerCase() + (el.id ? `#${el.id}` : '') + (el.className ? `.${el.className}` : '');

  // Every element that draws text of its own.
  const texts = [];
  for (const el of document.body.querySelectorAll('*')) {
    if (['SCRIPT', 'STYLE', 'NOSCRIPT'].includes(el.tagName)) continue;
    const own = [...el.childNodes].filter((n) => n.nodeType === Node.TEXT_NODE).map((n) => n.textContent).join('').trim();
    if (!own || !el.getClientRects().length) continue;
    const style = getComputedStyle(el);
    if (style.visibility !== 'visible' || Number(style.opacity) === 0) continue;
    const bg = background(el);
    const fg = over(rgba(style.color), bg.color);
    texts.push({
      element: describe(el),
      text: own.slice(0, 40),
      color: style.color,
      background: `rgb(${bg.color.slice(0, 3).map(Math.round).join(', ')})`,
      backgroundImages: bg.images,
      ratio: Math.round(contrast(fg, bg.color) * 100) / 100,
    });
  }

  const live = document.querySelector('[role="status"], [aria-live="polite"], [aria-live="assertive"]');
  const position = document.getElementById('position');
  const labels = [...document.querySelectorAll('dd')].map((dd) => {
    const ids = (dd.getAttribute('aria-labelledby') || '').split(/\s+/).filter(Boolean);
    const targets = ids.map((id) => document.getElementById(id));
    return {
      dd: describe(dd),
      labelledby: ids,
      labels: targets.map((t) => (t ? { tag: t.tagName.toLowerCase(), text: t.textContent.trim() } : null)),
    };
  });
  const viewport = document.querySelector('meta[name="viewport"]');
  return {
    lang: document.documentElement.getAttribute('lang'),
    title: document.title,
    viewport: viewport && viewport.getAttribute('content'),
    live: live && {
      role: live.getAttribute('role'),
      ariaLive: live.getAttribute('aria-live'),
      containsPosition: !!position && live.contains(position),
    },
    labels,
    texts,
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
  };
}

function assertAccessible(audit) {
  assert.match(audit.lang || '', /^[a-z]{2,3}(-[A-Za-z0-9]+)*$/, '<html lang> is set');
  assert.equal(audit.title, TITLE_WAITING, 'the page has a <title>');
  assert.match(audit.viewport || '', /width=device-width/, 'a viewport meta with width=device-width');
  assert.ok(audit.live, 'a live region (role="status" or aria-live)');
  assert.ok(audit.live.role === 'status' || ['polite', 'assertive'].includes(audit.live.ariaLive), inspect(audit.live));
  assert.ok(audit.live.containsPosition, 'the live region contains the position');
  assert.ok(audit.labels.length >= 2, 'the position and the wait are labelled values (dd)');
  for (const label of audit.labels) {
    assert.ok(label.labelledby.length > 0, `${label.dd} has aria-labelledby`);
    for (const target of label.labels) {
      assert.ok(target, `${label.dd}: aria-labelledby points at existing elements: ${inspect(label)}`);
      assert.equal(target.tag, 'dt', `${label.dd} is labelled by a dt: ${inspect(label)}`);
      assert.ok(target.text, `${label.dd}'s label has text`);
    }
  }
  const drawn = audit.texts.map((t) => t.element);
  for (const needed of ['h1#title', 'dd#position', 'dd#eta']) {
    assert.ok(drawn.includes(needed), `${needed} is drawn: ${inspect(drawn)}`);
  }
  assert.ok(audit.texts.some((t) => t.element === 'p'), 'the main text (p) is drawn');
  for (const t of audit.texts) {
    assert.deepEqual(t.backgroundImages, [], `${t.element}: no background image under the text (its contrast cannot be computed)`);
    assert.ok(t.ratio >= 4.5, `${t.element} "${t.text}": contrast ${t.ratio}:1 (${t.color} on ${t.background}) is under 4.5:1`);
  }
}

// ---- the scenarios -----------------------------------------------------------------------------

/** Two visitors ahead in a paused room; the page moves up by itself and lets the visitor in. */
async function scenarioWithScript(target) {
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
async function scenarioWithoutScript(target) {
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
async function scenarioPrequeue(target) {
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
async function scenarioAccessibility(target) {
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

// The languages the pages speak: the browser's locale (sent as Accept-Language), the page's
// `lang` and its title.
const LANGUAGES = [
  ['en-US', 'en', 'You are in line'],
  ['ko-KR', 'ko', '대기열에 들어와 있습니다'],
  ['ja-JP', 'ja', '順番待ちの列に並んでいます'],
  ['zh-CN', 'zh-Hans', '您正在排队'],
  ['zh-TW', 'zh-Hant', '您正在排隊'],
  ['es-ES', 'es', 'Estás en la fila'],
  ['fr-FR', 'fr', 'Vous êtes dans la file'],
  ['de-DE', 'de', 'Sie sind in der Warteschlange'],
  ['pt-BR', 'pt-BR', 'Você está na fila'],
];
// The phone the issue measured on: 420 px wide.
const NARROW_PHONE = { viewport: { width: 420, height: 860 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 };

/** Runs in the page: how many lines each phrase the page can show takes in each box, with the
 * page's own sentences (its data-text) in the longest forms they take. */
function phraseLines() {
  const t = JSON.parse(document.querySelector('.card').getAttribute('data-text'));
  const fill = (s, v) => s.replace(/\{(\w)\}/g, (all, k) => (v[k] !== undefined ? v[k] : all));
  const phrases = [
    t.wait_unknown, t.wait_under_minute, t.wait_one_minute, fill(t.wait_minutes, { n: 59 }),
    fill(t.wait_hours, { h: 23, m: 59 }), fill(t.opens_in, { t: '59:59' }), t.opens_soon,
    t.random_position, t.prequeue_position, new Intl.NumberFormat(document.documentElement.lang).format(123456),
  ];
  const lines = [];
  for (const id of ['position', 'eta']) {
    const el = document.getElementById(id);
    const saved = el.textContent;
    const lineHeight = parseFloat(getComputedStyle(el).lineHeight);
    for (const phrase of phrases) {
      el.textContent = phrase;
      lines.push({ id, phrase, lines: Math.round(el.getBoundingClientRect().height / lineHeight) });
    }
    el.textContent = saved;
  }
  return { lines, scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth };
}

/** The page in every language, chosen by the browser's own Accept-Language, by `?lang=` and by
 * the page's language links; each phrase on one line on a 420 px phone; the progress bar. */
async function scenarioLanguages(target) {
  const room = 'langs';
  await target.createRoom(room, ['/langs']);
  await target.pause(room);
  await target.join(room);
  for (const [locale, tag, title] of LANGUAGES) {
    const { context, page, documents } = await openPage({ ...NARROW_PHONE, locale });
    try {
      const response = await page.goto(`${target.base}/langs/`);
      assertWaitingDocument(response, documents);
      assert.equal(response.headers()['content-language'], tag, `${locale}: Content-Language`);
      const now = await shown(page);
      assert.equal(now.title, title, `${locale}: the page's title`);
      assert.equal(await page.evaluate(() => document.documentElement.lang), tag);
      const layout = await page.evaluate(phraseLines);
      const wrapped = layout.lines.filter((l) => l.lines !== 1);
      assert.deepEqual(wrapped, [], `${locale}: every phrase on one line at 420 px`);
      assert.ok(layout.scrollWidth <= layout.innerWidth, `${locale}: no horizontal scrolling (${layout.scrollWidth} > ${layout.innerWidth})`);
      // The script's first poll writes the time in the visitor's language, through the page's sentences.
      await waitFor(`${locale}: a poll`, async () => (await shown(page))?.updated !== now.updated, { timeout: target.timeout });
      assert.ok(!(await page.locator('#journey').isHidden()), `${locale}: the progress bar is shown once the page knows where it started`);
      await screenshot(page, target, `10-lang-${tag}`, { fullPage: true });
    } finally {
      await context.close();
    }
  }
  log(`${target.name}: the page in ${LANGUAGES.length} languages, every phrase on one line at 420 px`);

  // `?lang=` wins over the browser's language, and the language links keep the place.
  const { context, page } = await openPage({ ...NARROW_PHONE, locale: 'de-DE' });
  try {
    await page.goto(`${target.base}/langs/?lang=ja&from=mail`);
    assert.equal((await shown(page)).title, '順番待ちの列に並んでいます');
    const position = (await shown(page)).position;
    const link = page.locator('nav a[lang="fr"]');
    assert.equal(await link.getAttribute('href'), '/langs/?lang=fr&from=mail', 'the link keeps the rest of the address');
    await Promise.all([page.waitForURL(/lang=fr/), link.click()]);
    const french = await waitFor('the page in French', async () => {
      const now = await shown(page);
      return now?.title === 'Vous êtes dans la file' && now;
    }, { timeout: target.timeout });
    assert.equal(french.position, position, 'the same place, in another language');
  } finally {
    await context.close();
  }
}

/** The progress bar: how far the visitor has come since joining, from the first place the tab
 * saw. */
async function scenarioJourney(target) {
  const room = 'journey';
  await target.createRoom(room, ['/journey']);
  await target.pause(room);
  const a = await target.join(room);
  const b = await target.join(room);
  const { context, page, documents } = await openPage({ ...NARROW_PHONE, locale: 'ko-KR' });
  try {
    const response = await page.goto(`${target.base}/journey/`);
    assertWaitingDocument(response, documents);
    await waitForPosition(page, target, 3, []);
    const progress = () => page.evaluate(() => ({
      hidden: document.getElementById('journey').hidden,
      value: document.getElementById('progress').value,
      text: document.getElementById('progress-text').textContent,
      position: document.getElementById('position').textContent,
    }));
    const start = await waitFor('the progress bar at its start', async () => {
      const p = await progress();
      return !p.hidden && p.position === '3' && p;
    }, { timeout: target.timeout });
    assert.equal(start.value, 0);
    assert.equal(start.text, '0% 진행');
    await target.resume(room);
    await target.arrive(a);
    await target.leave(a);
    const moved = await waitFor('the progress bar to move', async () => {
      const p = await progress();
      return !p.hidden && p.position !== '3' && p;
    }, { timeout: target.timeout });
    const expected = Math.round(100 * (3 - Number(moved.position)) / 3);
    assert.equal(moved.value, expected, inspect(moved));
    assert.equal(moved.text, `${expected}% 진행`);
    await screenshot(page, target, '11-progress-ko', { fullPage: true });
    log(`${target.name}: progress ${moved.value} % at place ${moved.position} (joined at 3)`);
    await target.arrive(b);
    await target.leave(b);
    await waitForApplication(page, target.landTimeout);
    assertLandedOnApplication(documents);
  } finally {
    await context.close();
  }
}

/** Pushed updates: the page listens to the room's stream and moves up when the one ahead leaves,
 * without a single status poll (it polls only when the stream cannot be had). */
async function scenarioStream(target) {
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

/** The operators' dashboard: the key asked for and kept in memory only, every room's numbers
 * and charts, and the controls acting through the admin API. */
async function scenarioDashboard(target) {
  const room = 'dash';
  await target.admin('PUT', `/rooms/${room}`, { paths: ['/dash'], ...ROOM_CONFIG, max_active: 5 });
  await target.pause(room);
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

/** A room with a proof-of-work challenge: the browser gets the page that solves it (in a Web
 * Worker), joins with the answer and lands in line; then it is let in. Records how long solving
 * took, for each difficulty in POW_BITS (default 16), in target/browser-test/pow-<target>.json. */
async function scenarioProofOfWork(target) {
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

// ---- the runs ----------------------------------------------------------------------------------

let originBase; // the origin, started before wrangler picks its ports
let edgeReady; // the edge's base URL once `wrangler dev` is up and the scheduler started

function startOrigin(port) {
  return new Group('origin', ORIGIN_BIN, [
    'serve', '--listen', `127.0.0.1:${port}`, '--tick-ms', String(TICK_MS),
  ], { QUEUEGATE_ADMIN_KEY: ADMIN_KEY, QUEUEGATE_SIGNING_KEYS: SIGNING_KEYS, QUEUEGATE_LOG: 'warn' });
}

async function startWrangler(port, attempt) {
  if (persistDir) fs.rmSync(persistDir, { recursive: true, force: true });
  persistDir = fs.mkdtempSync(path.join(os.tmpdir(), 'queuegate-browser-'));
  const name = attempt === 1 ? 'wrangler-dev' : `wrangler-dev-${attempt}`;
  const group = new Group(name, path.join(ROOT, 'node_modules/.bin/wrangler'), [
    'dev', '--ip', '127.0.0.1', '--port', String(port), '--inspector-port', String(await freePort()),
    '--persist-to', persistDir,
    '--var', `QUEUEGATE_ADMIN_KEY:${ADMIN_KEY}`,
    '--var', `QUEUEGATE_SIGNING_KEYS:${SIGNING_KEYS}`,
    '--var', 'QUEUEGATE_UPSTREAM:',
  ], { WRANGLER_SEND_METRICS: 'false', CI: '1' });
  log(`starting wrangler dev on 127.0.0.1:${port} (log ${path.relative(ROOT, group.logPath)})`);
  return group;
}

async function startEdge() {
  const base = await startServer(startWrangler, 120_000);
  log(`wrangler dev serving on ${base}; starting the origin's scheduler`);
  new Group('edge-scheduler', ORIGIN_BIN, ['schedule', '--edge', base, '--tick-ms', String(TICK_MS)],
    { QUEUEGATE_ADMIN_KEY: ADMIN_KEY, QUEUEGATE_LOG: 'warn' });
  return base;
}

before(async () => {
  ensureBuilt();
  for (const file of fs.existsSync(SCREENSHOT_DIR) ? fs.readdirSync(SCREENSHOT_DIR) : []) {
    if (TARGETS.some((t) => file.startsWith(`${t}-`)) && file.endsWith('.png')) fs.rmSync(path.join(SCREENSHOT_DIR, file));
  }
  if (TARGETS.includes('origin')) {
    originBase = await startServer(startOrigin, 30_000);
    log(`origin serving on ${originBase}`);
  }
  if (TARGETS.includes('edge')) {
    // wrangler dev takes a while to come up: start it now, wait for it when the edge's turn comes.
    edgeReady = startEdge();
    edgeReady.catch(() => {}); // awaited (and reported) by the edge's tests
  }
  await launchBrowser();
}, { timeout: 600_000 }); // it may build the origin and the worker

after(async () => {
  if (browser) await browser.close().catch(() => {});
  await edgeReady?.catch(() => {});
  await Promise.all([...running].map((group) => group.stop()));
  if (persistDir) fs.rmSync(persistDir, { recursive: true, force: true });
  log(`screenshots in ${SCREENSHOT_DIR}`);
}, { timeout: 600_000 });

const SCENARIOS = [
  ['the waiting page moves up by itself and lets the visitor in', scenarioWithScript],
  ['without JavaScript, the page refreshes itself and lets the visitor in', scenarioWithoutScript],
  ['accessibility, and the page on a phone', scenarioAccessibility],
  ['a proof-of-work room: the page solves the challenge in a Web Worker and joins', scenarioProofOfWork],
  ['a scheduled event: the page counts down to the opening, then lets the visitor in', scenarioPrequeue],
  ['the page in every language, each phrase on one line on a 420 px phone', scenarioLanguages],
  ['the progress bar shows how far the visitor has come', scenarioJourney],
  ['pushed updates: the page moves up as soon as the one ahead leaves', scenarioStream],
  ['the operators\' dashboard: live numbers and the controls', scenarioDashboard],
];

if (TARGETS.includes('origin')) {
  describe('origin (queuegate-origin serve)', () => {
    const target = () => new Target('origin', originBase, { step: 20_000, land: 45_000 });
    for (const [name, scenario] of SCENARIOS) test(name, { timeout: 150_000 }, () => scenario(target()));
  });
}

if (TARGETS.includes('edge')) {
  describe('edge (the worker under wrangler dev, the origin scheduling)', () => {
    let target;
    before(async () => {
      target = new Target('edge', await edgeReady, { step: 60_000, land: 90_000 });
    }, { timeout: 400_000 });
    for (const [name, scenario] of SCENARIOS) test(name, { timeout: 150_000 }, () => scenario(target));
  });
}
