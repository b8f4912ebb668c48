// The browser test's language scenarios: every language on a narrow phone, and the progress
// bar.

import assert from 'node:assert/strict';
import { inspect } from 'node:util';

import {
  started,
  log,
  waitFor,
  browser,
  openPage,
  screenshot,
  shown,
  waitForPosition,
  waitForApplication,
  assertWaitingDocument,
  assertLandedOnApplication,
} from './support.mjs';

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
export async function scenarioLanguages(target) {
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
      // The script's first answer (pushed at once, or polled) writes the time in the visitor's
      // language, through the page's sentences, over the server's "just now".
      const served = /id="updated">([^<]*)</.exec(await response.text())[1];
      await waitFor(`${locale}: an answer`, async () => (await shown(page))?.updated !== served, { timeout: target.timeout });
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
export async function scenarioJourney(target) {
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
