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
//
// The scenarios are in visitors.mjs, languages.mjs and dashboard.mjs; what they share (the
// targets, the HTTP API, the browser) in support.mjs.

import { after, before, describe, test } from 'node:test';

import {
  edgeReady,
  originBase,
  setUp,
  tearDown,
  Target,
  TARGETS,
} from './support.mjs';
import {
  scenarioAccessibility,
  scenarioPrequeue,
  scenarioProofOfWork,
  scenarioStream,
  scenarioWithScript,
  scenarioWithoutScript,
} from './visitors.mjs';
import { scenarioLanguages, scenarioJourney } from './languages.mjs';
import { scenarioDashboard } from './dashboard.mjs';

// It may build the origin and the worker.
before(setUp, { timeout: 600_000 });
after(tearDown, { timeout: 600_000 });

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
