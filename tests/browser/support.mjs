// What the browser test's scenarios share: the targets (the origin and the edge under
// `wrangler dev`, started on free loopback ports and stopped at the end, also on failure), the
// HTTP API, the browser and its pages, the accessibility audit.

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

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const SCREENSHOT_DIR = path.resolve(ROOT, process.env.SCREENSHOT_DIR || 'target/browser-screenshots');
export const LOG_DIR = path.join(ROOT, 'target', 'browser-test');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const TARGETS = (process.env.BROWSER_TEST_TARGETS || 'origin edge').split(/[\s,]+/).filter(Boolean);
export const ORIGIN_BIN = path.join(ROOT, 'target', 'debug', 'queuegate-origin');
export const API = '/_qg/v1';
export const ADMIN_KEY = randomBytes(18).toString('hex');
export const SIGNING_KEYS = `k1:${randomBytes(16).toString('hex')}`;
export const TICK_MS = 200;
export const TITLE_WAITING = 'You are in line';
export const TITLE_IN = 'You are in: queuegate demo';
// A room of one slot, admitting fast. While a room is paused the server recommends polling at a
// quarter of the claim window (here 3 s), and an admitted visitor must arrive within it.
export const ROOM_CONFIG = {
  max_active: 1,
  admit_per_minute: 600,
  session_ttl_s: 600,
  claim_window_s: 12,
  shards: 1,
};

export const started = Date.now();
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
export const log = (...args) => console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s]`, ...args);

// ---- processes ---------------------------------------------------------------------------------

export const running = new Set();
export let persistDir; // the Durable Object storage of the edge's `wrangler dev`, removed at the end

/** A process started in its own process group, stopped with all its children. */
export class Group {
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

export function killAllNow() {
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

export function freePort() {
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

export function run(command, args) {
  log(`running ${command} ${args.join(' ')}`);
  const result = spawnSync(command, args, { cwd: ROOT, stdio: 'inherit' });
  assert.equal(result.status, 0, `${command} ${args.join(' ')} failed`);
}

export function ensureBuilt() {
  if (!fs.existsSync(ORIGIN_BIN)) run('cargo', ['build', '--locked', '-p', 'queuegate-origin']);
  if (TARGETS.includes('edge') && !fs.existsSync(path.join(ROOT, 'build', 'index.js'))) {
    run('bash', ['scripts/edge.sh', 'build']);
  }
}

/** Polls `fn` until it returns something truthy; fails with what it last saw. */
export async function waitFor(what, fn, { timeout, interval = 200 }) {
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
export async function waitForHealth(base, timeout, group) {
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
export async function startServer(start, timeout) {
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

export class Target {
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

export let browser;

export async function launchBrowser() {
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

export const DESKTOP = { viewport: { width: 1024, height: 768 } };
export const PHONE = { viewport: { width: 375, height: 667 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 };

/** A fresh context (its own cookie jar: a new visitor) and page, which records the responses
 * of its top-level navigations. */
export async function openPage(options = {}) {
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

export async function screenshot(page, target, name, options = {}) {
  fs.mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const file = path.join(SCREENSHOT_DIR, `${target.name}-${name}.png`);
  await page.screenshot({ path: file, ...options });
  log(`screenshot ${path.relative(ROOT, file)}`);
}

/** What the page shows now (null while it navigates). */
export async function shown(page) {
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

export const WAIT_IN_WORDS = /^(unknown|under a minute|about \d+ minutes?|about \d+ h \d+ min)$/;

/** Waits until the waiting page shows `position`, recording every position it showed. */
export async function waitForPosition(page, target, position, seen) {
  return waitFor(`the page to show position ${position}`, async () => {
    const now = await shown(page);
    if (now?.position && seen.at(-1) !== now.position) seen.push(now.position);
    return now?.position === String(position) && now;
  }, { timeout: target.timeout, interval: 100 });
}

/** Waits until the page is the application behind the gate (the built-in demo page). */
export async function waitForApplication(page, timeout) {
  return waitFor('the page to land on the protected page ("You are in")', async () => {
    const now = await shown(page);
    return now?.title === TITLE_IN && now.h1 === 'You are in' && now;
  }, { timeout, interval: 200 });
}

export function assertWaitingDocument(response, documents) {
  assert.ok(response, 'the navigation has a response');
  assert.equal(response.status(), 200);
  assert.equal(response.headers()['x-queuegate-status'], 'waiting', 'X-Queuegate-Status: waiting');
  assert.equal(documents.length, 1);
}

export function assertLandedOnApplication(documents) {
  const last = documents.at(-1);
  assert.equal(last.status, 200, `the protected page answers 200: ${inspect(documents)}`);
  assert.equal(last.queuegate, undefined, `the protected page is not a waiting page: ${inspect(documents)}`);
}

// ---- accessibility -----------------------------------------------------------------------------

/** Runs in the page: the accessibility facts the test asserts. */
export function auditPage() {
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

export function assertAccessible(audit) {
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

// ---- starting the targets ----------------------------------------------------------------------------------

export let originBase; // the origin, started before wrangler picks its ports
export let edgeReady; // the edge's base URL once `wrangler dev` is up and the scheduler started

export function startOrigin(port) {
  return new Group('origin', ORIGIN_BIN, [
    'serve', '--listen', `127.0.0.1:${port}`, '--tick-ms', String(TICK_MS),
  ], { QUEUEGATE_ADMIN_KEY: ADMIN_KEY, QUEUEGATE_SIGNING_KEYS: SIGNING_KEYS, QUEUEGATE_LOG: 'warn' });
}

export async function startWrangler(port, attempt) {
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

export async function startEdge() {
  const base = await startServer(startWrangler, 120_000);
  log(`wrangler dev serving on ${base}; starting the origin's scheduler`);
  new Group('edge-scheduler', ORIGIN_BIN, ['schedule', '--edge', base, '--tick-ms', String(TICK_MS)],
    { QUEUEGATE_ADMIN_KEY: ADMIN_KEY, QUEUEGATE_LOG: 'warn' });
  return base;
}

export async function setUp() {
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
}

export async function tearDown() {
  if (browser) await browser.close().catch(() => {});
  await edgeReady?.catch(() => {});
  await Promise.all([...running].map((group) => group.stop()));
  if (persistDir) fs.rmSync(persistDir, { recursive: true, force: true });
  log(`screenshots in ${SCREENSHOT_DIR}`);
}
