// Headless Chromium checks of the report page, written to <out-dir>/check.json with screenshots.
//
//   node tests/browser/check.mjs <page.html> <out-dir> [--permalink ID ...] [--filter name=value ...]
//                               [--timing-runs N] [--skip-axe]
//
// The page is opened as file:// in /usr/bin/chromium (playwright-core drives it; no browser is
// downloaded). Writes desktop.png (1440x900), phone.png (390x844), nojs.png (1440x900, scripts
// off) and check.json: axe (serious/critical violations), contrast, dom_elements, bytes, timing,
// first_screen (#grid), permalinks, permalinks_filtered, links, filters, replace_state_refused, nojs,
// landmarks, page_errors.
// Figures only: tests/test_browser.py asserts on them. Exit 0 when the checks ran, 2 on bad
// arguments, 1 when the browser could not be driven.

import { createRequire } from 'node:module';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');
const AXE = require.resolve('axe-core/axe.min.js');

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const DESKTOP = { width: 1440, height: 900 };
const PHONE = { width: 390, height: 844 };
const GRID = '#grid';
const LOAD_TIMEOUT = 180_000;

function usage(message) {
  console.error(`check.mjs: ${message}`);
  console.error('usage: node tests/browser/check.mjs <page.html> <out-dir> [--permalink ID ...] [--filter name=value ...]');
  process.exit(2);
}

function parseArgs(argv) {
  const positional = [];
  const opts = { permalinks: [], filters: [], timingRuns: 1, axe: true };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${arg} needs a value`);
      return argv[++i];
    };
    if (arg === '--permalink') opts.permalinks.push(value());
    else if (arg === '--filter') {
      const text = value();
      const at = text.indexOf('=');
      if (at <= 0 || at === text.length - 1) usage(`--filter wants name=value, got ${JSON.stringify(text)}`);
      opts.filters.push({ name: text.slice(0, at), value: text.slice(at + 1), text });
    } else if (arg === '--timing-runs') opts.timingRuns = Math.max(1, parseInt(value(), 10) || 1);
    else if (arg === '--skip-axe') opts.axe = false;
    else if (arg.startsWith('--')) usage(`unknown option ${arg}`);
    else positional.push(arg);
  }
  if (positional.length !== 2) usage('wants <page.html> and <out-dir>');
  return { page: resolve(positional[0]), out: resolve(positional[1]), ...opts };
}

const opts = parseArgs(process.argv.slice(2));
let bytes;
try {
  bytes = statSync(opts.page).size;
} catch (e) {
  usage(`cannot read ${opts.page}: ${e.message}`);
}
mkdirSync(opts.out, { recursive: true });
const base = pathToFileURL(opts.page).href;
const withHash = (id) => `${base}#${encodeURIComponent(id)}`;

// ---------------------------------------------------------------- in-page probes

// settle: two animation frames and a short wait, for the script's scrolling and the browser's own
async function settle(page) {
  await page.evaluate(
    () =>
      new Promise((done) => {
        requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(done, 50)));
      }),
  );
}

async function open(context, url, errors) {
  const page = await context.newPage();
  page.on('pageerror', (e) => errors.push({ url, error: String(e.message || e) }));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push({ url, console: m.text() });
  });
  await page.goto(url, { waitUntil: 'load', timeout: LOAD_TIMEOUT });
  return page;
}

function firstScreen(page, selector, screenWidth) {
  return page.evaluate(([selector, screenWidth]) => {
    const el = document.querySelector(selector);
    const vw = window.innerWidth;
    const vh = window.innerHeight;
    if (!el) return { selector, found: false, viewport: { width: vw, height: vh }, fits_width: vw <= screenWidth };
    const r = el.getBoundingClientRect();
    const area = r.width * r.height;
    const w = Math.max(0, Math.min(r.right, vw) - Math.max(r.left, 0));
    const h = Math.max(0, Math.min(r.bottom, vh) - Math.max(r.top, 0));
    return {
      selector,
      found: true,
      viewport: { width: vw, height: vh },
      scale: window.visualViewport ? window.visualViewport.scale : 1,
      scroll: { x: window.scrollX, y: window.scrollY },
      box: { x: r.x + window.scrollX, y: r.y + window.scrollY, width: r.width, height: r.height },
      // a phone zooms a page wider than itself out to fit: the layout viewport is then wider than the screen
      fits_width: vw <= screenWidth && document.documentElement.scrollWidth <= vw + 1,
      top_within_viewport: r.height > 0 && r.top >= 0 && r.top < vh,
      visible_fraction: area > 0 ? Math.round(((w * h) / area) * 10000) / 10000 : 0,
    };
  }, [selector, screenWidth]);
}

// per section[data-filterable]: .fi elements that are not cells, shown = no [hidden] on them or above
function counts(page) {
  return page.evaluate(() => {
    const out = {};
    document.querySelectorAll('section[data-filterable]').forEach((section, i) => {
      const items = [...section.querySelectorAll('.fi')].filter((el) => el.tagName !== 'TD' && el.tagName !== 'TH');
      const cells = [...section.querySelectorAll('td.fi, th.fi')];
      const shown = (el) => !el.closest('[hidden]');
      const fcount = section.querySelector('.fcount');
      const fempty = section.querySelector('.fempty');
      out[section.id || `section-${i}`] = {
        visible: items.filter(shown).length,
        total: items.length,
        cells_visible: cells.filter(shown).length,
        cells_total: cells.length,
        fcount: fcount ? fcount.textContent.trim() : null,
        fempty_shown: fempty ? !fempty.closest('[hidden]') : null,
      };
    });
    return out;
  }, null);
}

function selectValues(page) {
  return page.evaluate(() => {
    const out = {};
    document.querySelectorAll('#filters select[name]').forEach((s) => {
      out[s.name] = s.value;
    });
    return out;
  }, null);
}

function probe(page, id) {
  return page.evaluate((id) => {
    const el = document.getElementById(id);
    if (!el) return { found: false };
    const style = (node) => window.getComputedStyle(node);
    const r = el.getBoundingClientRect();
    const vh = window.innerHeight;
    const vw = window.innerWidth;
    const bar = document.getElementById('filters');
    let filtersBottom = 0;
    let sticky = false;
    if (bar && !bar.closest('[hidden]')) {
      const pos = style(bar).position;
      sticky = pos === 'sticky' || pos === 'fixed';
      if (sticky) filtersBottom = Math.max(0, bar.getBoundingClientRect().bottom);
    }
    const detailsClosed = [];
    for (let node = el; node; node = node.parentElement) {
      if (node.tagName === 'DETAILS' && !node.open) detailsClosed.push(node.id || node.className || 'details');
    }
    const visible = r.width > 0 && r.height > 0 && !el.closest('[hidden]') && style(el).visibility !== 'hidden';
    // a point just inside the element's top-left corner, clipped to the viewport
    const x = Math.min(Math.max(r.left + Math.min(4, r.width / 2), 0), vw - 1);
    const y = Math.min(Math.max(r.top + Math.min(4, r.height / 2), 0), vh - 1);
    const hit = document.elementFromPoint(x, y);
    const name = (node) =>
      node ? node.tagName.toLowerCase() + (node.id ? `#${node.id}` : '') + (node.className && typeof node.className === 'string' ? `.${node.className.trim().split(/\s+/).join('.')}` : '') : null;
    const topWithin = r.top >= 0 && r.top < vh;
    return {
      found: true,
      visible,
      box: { x: r.x, y: r.y, width: r.width, height: r.height },
      viewport: { width: vw, height: vh },
      scroll_y: window.scrollY,
      top_within_viewport: topWithin,
      filters_sticky: sticky,
      filters_bottom: filtersBottom,
      below_filters: r.top >= filtersBottom - 1,
      hit: name(hit),
      not_covered: visible && topWithin && r.left < vw && !!hit && el.contains(hit),
      details_open: detailsClosed.length === 0,
      details_closed: detailsClosed,
      url: location.href,
    };
  }, id);
}

function elementState(page, selector) {
  return page.evaluate((selector) => {
    const el = document.querySelector(selector);
    if (!el) return { present: false, visible: false };
    const r = el.getBoundingClientRect();
    const visible = r.width > 0 && r.height > 0 && !el.closest('[hidden]') && getComputedStyle(el).visibility !== 'hidden';
    return { present: true, visible, box: { x: r.x, y: r.y + window.scrollY, width: r.width, height: r.height } };
  }, selector);
}

async function timing(page) {
  return page.evaluate(
    () =>
      new Promise((done) => {
        const finish = () => {
          const nav = performance.getEntriesByType('navigation')[0];
          const fcp = performance.getEntriesByName('first-contentful-paint')[0];
          const round = (v) => (v == null ? null : Math.round(v * 10) / 10);
          done({
            first_contentful_paint_ms: round(fcp ? fcp.startTime : null),
            dom_content_loaded_ms: round(nav ? nav.domContentLoadedEventEnd : null),
            load_event_end_ms: round(nav ? nav.loadEventEnd : null),
          });
        };
        // the paint entry may be recorded just after load
        if (performance.getEntriesByName('first-contentful-paint').length) finish();
        else {
          try {
            new PerformanceObserver(finish).observe({ type: 'paint', buffered: true });
          } catch (e) {
            /* no observer: report what there is */
          }
          setTimeout(finish, 3000);
        }
      }),
  );
}

function median(values) {
  const v = values.filter((x) => x != null).sort((a, b) => a - b);
  if (!v.length) return null;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : Math.round(((v[m - 1] + v[m]) / 2) * 10) / 10;
}

// ---------------------------------------------------------------- the checks

async function main() {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
  const errors = [];
  const result = {
    page: opts.page,
    url: base,
    browser: browser.version(),
    bytes,
    machine_dependent: ['timing'],
  };
  try {
    // desktop, scripts on: timing, landmarks, first screen, screenshot, axe
    const desktop = await browser.newContext({ viewport: DESKTOP, deviceScaleFactor: 1 });
    const page = await open(desktop, base, errors);
    const runs = [await timing(page)];
    await settle(page);
    result.dom_elements = await page.evaluate(() => document.getElementsByTagName('*').length);
    result.landmarks = await page.evaluate(() => {
      const mains = new Set([...document.querySelectorAll('main, [role="main"]')]);
      return { main: mains.size, exactly_one_main: mains.size === 1 };
    });
    result.first_screen = { desktop: await firstScreen(page, GRID, DESKTOP.width) };
    await page.screenshot({ path: join(opts.out, 'desktop.png') });
    if (opts.axe) {
      await page.addScriptTag({ content: readFileSync(AXE, 'utf8') });
      const axe = await page.evaluate(async () => {
        // eslint-disable-next-line no-undef
        const r = await axe.run(document, { resultTypes: ['violations'] });
        return {
          version: r.testEngine && r.testEngine.version,
          violations: r.violations.map((v) => ({
            id: v.id,
            impact: v.impact,
            nodes: v.nodes.length,
            target: v.nodes.length ? v.nodes[0].target : null,
            help: v.help,
          })),
        };
      });
      const serious = axe.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
      const contrast = axe.violations.find((v) => v.id === 'color-contrast');
      result.axe = {
        version: axe.version,
        viewport: DESKTOP,
        violations: serious,
        serious_or_critical: serious.length,
        other: axe.violations.filter((v) => !serious.includes(v)).map(({ id, impact, nodes }) => ({ id, impact, nodes })),
      };
      result.contrast = {
        violations: contrast ? contrast.nodes : 0,
        impact: contrast ? contrast.impact : null,
        target: contrast ? contrast.target : null,
      };
    } else {
      result.axe = null;
      result.contrast = null;
    }
    await page.close();
    for (let i = 1; i < opts.timingRuns; i++) {
      const again = await open(desktop, base, errors);
      runs.push(await timing(again));
      await again.close();
    }
    result.timing = {
      first_contentful_paint_ms: median(runs.map((r) => r.first_contentful_paint_ms)),
      dom_content_loaded_ms: median(runs.map((r) => r.dom_content_loaded_ms)),
      load_event_end_ms: median(runs.map((r) => r.load_event_end_ms)),
      runs,
      note: 'machine-dependent: milliseconds on this machine, from the Performance API',
    };

    // permalinks: each loaded fresh as page.html#ID
    result.permalinks = {};
    for (const id of opts.permalinks) {
      const p = await open(desktop, withHash(id), errors);
      await settle(p);
      result.permalinks[id] = await probe(p, id);
      await p.close();
    }
    // the same, with the first filter in the query string: a permalink works together with filters
    result.permalinks_filtered = {};
    if (opts.filters.length) {
      const f = opts.filters[0];
      const query = `?${encodeURIComponent(f.name)}=${encodeURIComponent(f.value)}`;
      for (const id of opts.permalinks) {
        const p = await open(desktop, `${base}${query}#${encodeURIComponent(id)}`, errors);
        await settle(p);
        result.permalinks_filtered[id] = { filter: f.text, ...(await probe(p, id)), selects: await selectValues(p) };
        await p.close();
      }
    }

    // filters: before, via the URL, via the form
    result.filters = {};
    for (const f of opts.filters) {
      const entry = { name: f.name, value: f.value };
      const p = await open(desktop, base, errors);
      await settle(p);
      entry.before = await counts(p);
      const select = p.locator(`#filters select[name="${f.name}"]`);
      entry.select_present = (await select.count()) === 1;
      if (entry.select_present) {
        entry.select_visible = await select.isVisible();
        try {
          await select.selectOption(f.value, { timeout: 5000 });
          await settle(p);
          entry.via_form = await counts(p);
          entry.url_after_form = p.url();
          entry.url_has_filter = new URL(p.url()).searchParams.get(f.name) === f.value ||
            decodeURIComponent(new URL(p.url()).hash).includes(`${f.name}=${f.value}`);
          // the reset button shows everything again and takes the filter out of the URL
          const reset = p.locator('#filters [type="reset"]');
          if ((await reset.count()) >= 1) {
            await reset.first().click({ timeout: 5000 });
            await settle(p);
            entry.after_reset = await counts(p);
            entry.url_after_reset = p.url();
          }
        } catch (e) {
          entry.form_error = String(e.message || e).split('\n')[0];
        }
      }
      await p.close();
      // the fallback form of the state: #f:name=value
      const h = await open(desktop, `${base}#f:${encodeURIComponent(f.name)}=${encodeURIComponent(f.value)}`, errors);
      await settle(h);
      entry.via_hash = await counts(h);
      await h.close();
      const q = await open(desktop, `${base}?${encodeURIComponent(f.name)}=${encodeURIComponent(f.value)}`, errors);
      await settle(q);
      entry.via_url = await counts(q);
      entry.selects_after_url = await selectValues(q);
      await q.close();
      const changed = (after) =>
        after
          ? Object.keys(entry.before).filter(
              (s) =>
                after[s] &&
                (after[s].visible !== entry.before[s].visible || after[s].cells_visible !== entry.before[s].cells_visible),
            )
          : [];
      entry.sections_changed_via_url = changed(entry.via_url);
      entry.sections_changed_via_form = changed(entry.via_form);
      entry.sections_changed_via_hash = changed(entry.via_hash);
      result.filters[f.text] = entry;
    }
    // where history.replaceState refuses a query change (some browsers on file://), the state
    // goes to the hash (#f:name=value) and is read back from there on reload
    if (opts.filters.length) {
      const f = opts.filters[0];
      const refusing = await browser.newContext({ viewport: DESKTOP, deviceScaleFactor: 1 });
      await refusing.addInitScript(() => {
        const replace = history.replaceState.bind(history);
        history.replaceState = function (state, title, url) {
          if (url != null && String(url).charAt(0) !== '#') throw new DOMException('refused', 'SecurityError');
          return replace(state, title, url);
        };
      });
      const r = await open(refusing, base, errors);
      await settle(r);
      const entry = { filter: f.text };
      try {
        await r.locator(`#filters select[name="${f.name}"]`).selectOption(f.value, { timeout: 5000 });
        await settle(r);
        entry.url_after_form = r.url();
        entry.after_form = await counts(r);
        await r.reload({ waitUntil: 'load' });
        await settle(r);
        entry.after_reload = await counts(r);
        entry.selects_after_reload = await selectValues(r);
      } catch (e) {
        entry.error = String(e.message || e).split('\n')[0];
      }
      result.replace_state_refused = entry;
      await refusing.close();
    }

    // following a link inside the page (a grid cell's) to each permalink that has one
    result.links = {};
    const linkable = [];
    if (opts.permalinks.length) {
      const p = await open(desktop, base, errors);
      const hrefs = await p.evaluate(() => [...document.querySelectorAll('a[href^="#"]')].map((a) => a.getAttribute('href')));
      linkable.push(...opts.permalinks.filter((id) => hrefs.includes(`#${id}`)));
      await p.close();
    }
    for (const id of linkable) {
      const p = await open(desktop, base, errors);
      await settle(p);
      const link = p.locator(`a[href="#${id.replace(/["\\]/g, '\\$&')}"]`).first();
      if ((await link.count()) && (await link.isVisible())) {
        await link.click({ timeout: 5000 });
        await settle(p);
        result.links[id] = await probe(p, id);
      }
      await p.close();
    }
    await desktop.close();

    // phone
    const phone = await browser.newContext({ viewport: PHONE, deviceScaleFactor: 1, isMobile: true, hasTouch: true });
    const pp = await open(phone, base, errors);
    await settle(pp);
    result.first_screen.phone = await firstScreen(pp, GRID, PHONE.width);
    await pp.screenshot({ path: join(opts.out, 'phone.png') });
    await phone.close();

    // scripts off
    const nojs = await browser.newContext({ viewport: DESKTOP, deviceScaleFactor: 1, javaScriptEnabled: false });
    const np = await open(nojs, base, errors);
    result.nojs = {
      grid: await elementState(np, GRID),
      changes: await elementState(np, '#changes'),
      filters_hidden: await np.evaluate(() => {
        const f = document.getElementById('filters');
        return f ? !!f.closest('[hidden]') : null;
      }),
      main_text_length: await np.evaluate(() => {
        const m = document.querySelector('main');
        return m ? m.innerText.trim().length : 0;
      }),
    };
    await np.screenshot({ path: join(opts.out, 'nojs.png') });
    await nojs.close();
  } finally {
    result.page_errors = errors;
    writeFileSync(join(opts.out, 'check.json'), JSON.stringify(result, null, 1) + '\n');
    await browser.close();
  }
  const brief = {
    bytes: result.bytes,
    dom_elements: result.dom_elements,
    axe_serious_or_critical: result.axe ? result.axe.serious_or_critical : null,
    fcp_ms: result.timing.first_contentful_paint_ms,
    load_ms: result.timing.load_event_end_ms,
  };
  console.log(`check: ${join(opts.out, 'check.json')} ${JSON.stringify(brief)}`);
}

main().catch((e) => {
  console.error(`check.mjs: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});
