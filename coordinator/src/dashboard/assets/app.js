// r1 dashboard: the runs, a run's live curves and samples, and the fleet, from the
// coordinator's JSON API (/api/...). No framework and no build step.
//
// Safety: every string that comes from a run (names, prompts, completions, messages) enters
// the page as a text node or an attribute value through h()/svg() below; nothing is ever
// parsed as HTML. The server also sends a Content-Security-Policy that runs only this file.
'use strict';

const SVG_NS = 'http://www.w3.org/2000/svg';
const TOKEN_KEY = 'r1-token';

// ---------------------------------------------------------------- DOM helpers

function put(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** An HTML element; strings among `children` become text nodes. */
function h(tag, attrs, ...children) {
  return put(document.createElement(tag), attrs, children);
}

/** An SVG element. */
function svg(tag, attrs, ...children) {
  return put(document.createElementNS(SVG_NS, tag), attrs, children);
}

function replace(el, ...children) {
  el.replaceChildren();
  put(el, {}, children);
}

// ---------------------------------------------------------------- formatting

function num(v, digits = 3) {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  if (typeof v !== 'number') return String(v);
  const a = Math.abs(v);
  if (a === 0) return '0';
  if (Number.isInteger(v) && a < 1e7) return v.toLocaleString('en-US');
  if (a >= 1000) return Math.round(v).toLocaleString('en-US');
  if (a < 0.001) return v.toExponential(2);
  return Number(v.toPrecision(digits)).toString();
}

function pct(v) {
  return v === null || v === undefined ? '–' : (v * 100).toFixed(1) + '%';
}

function ago(seconds) {
  if (seconds === null || seconds === undefined) return '–';
  const s = Math.max(0, seconds);
  if (s < 90) return Math.round(s) + 's';
  if (s < 5400) return Math.round(s / 60) + 'm';
  if (s < 172800) return (s / 3600).toFixed(1) + 'h';
  return (s / 86400).toFixed(1) + 'd';
}

function when(ms) {
  return ms ? new Date(ms).toLocaleString() : '–';
}

function badge(text, cls) {
  return h('span', { class: 'badge ' + (cls || text) }, text);
}

function progressBar(step, total) {
  const f = total > 0 ? Math.min(1, step / total) : 0;
  const bar = h('span', { class: 'bar', title: `${step} of ${total} steps` }, h('span'));
  bar.firstChild.style.width = (f * 100).toFixed(1) + '%';
  return h('span', { class: 'progress' }, bar, `${step} / ${total}`);
}

// ---------------------------------------------------------------- API and polling

/** Fetches `path` of the JSON API; the token entered on this page, if any, goes along (a
 * coordinator whose reads are private needs it for every request). */
async function api(path, options) {
  const opts = { ...(options || {}) };
  const stored = sessionStorage.getItem(TOKEN_KEY);
  opts.headers = { ...(opts.headers || {}) };
  if (stored && !opts.headers.authorization) opts.headers.authorization = 'Bearer ' + stored;
  let response;
  try {
    response = await fetch(path, opts);
  } catch (e) {
    throw Object.assign(new Error('the coordinator cannot be reached (' + e.message + ')'), { status: 0 });
  }
  const body = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) {
    throw Object.assign(new Error(body.error || response.statusText), { status: response.status });
  }
  return body;
}

const live = document.getElementById('live');

/** Calls `f` now and then every `ms` after it settles, until `f` returns false. */
function poll(ms, f) {
  let timer = null;
  const tick = async () => {
    let again = true;
    try {
      again = (await f()) !== false;
      live.className = 'muted';
      live.textContent = 'updated ' + new Date().toLocaleTimeString();
    } catch (e) {
      live.className = 'down';
      live.textContent = e.message;
      if (e.status === 401 && !document.getElementById('read-token')) askForToken();
    }
    if (again) timer = setTimeout(tick, ms);
  };
  tick();
  return () => clearTimeout(timer);
}

/** This coordinator's pages need its token: ask for it once, keep it for this tab. */
function askForToken() {
  const input = h('input', { type: 'password', id: 'read-token', placeholder: 'bearer token', size: 40, autocomplete: 'off' });
  const form = h('form', { class: 'panel toolbar' }, h('label', { for: 'read-token' }, 'This coordinator needs its token to show anything:'), input, h('button', { type: 'submit' }, 'Use it'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value);
    location.reload();
  });
  app.prepend(form);
}

const TERMINAL = ['completed', 'failed', 'cancelled'];
const app = document.getElementById('app');

// ---------------------------------------------------------------- runs

function runsPage() {
  document.title = 'r1 · runs';
  const params = new URLSearchParams(location.search);
  const filter = h('select', { id: 'state-filter' },
    ['', 'running', 'pending', 'completed', 'failed', 'cancelled'].map((s) =>
      h('option', { value: s, selected: s === (params.get('state') || '') }, s || 'all states')));
  const body = h('div', { id: 'runs' }, h('p', { class: 'muted' }, 'Loading…'));
  replace(app, h('h1', {}, 'Runs'),
    h('div', { class: 'toolbar' }, h('label', { for: 'state-filter' }, 'Show'), filter), body);
  let refresh = () => {};
  filter.addEventListener('change', () => {
    const q = filter.value ? '?state=' + filter.value : '';
    history.replaceState(null, '', '/' + q);
    refresh();
  });
  const load = async () => {
    const q = filter.value ? '?state=' + encodeURIComponent(filter.value) : '';
    const { runs } = await api('/api/runs' + q);
    if (runs.length === 0) {
      replace(body, h('p', { class: 'muted' }, filter.value
        ? `No ${filter.value} runs.`
        : 'No runs yet. Submit one with `r1ctl submit-run`, or start everything with `r1ctl up`.'));
      return;
    }
    replace(body, h('table', { class: 'runs' },
      h('thead', {}, h('tr', {},
        h('th', { class: 'num' }, 'id'), h('th', {}, 'name'), h('th', {}, 'state'), h('th', {}, 'progress'),
        h('th', { class: 'num' }, 'reward'), h('th', { class: 'num' }, 'accuracy'),
        h('th', { class: 'num' }, 'eval pass@1'), h('th', { class: 'num' }, 'age'), h('th', {}, ''))),
      h('tbody', {}, runs.map((r) => h('tr', { 'data-run': r.id },
        h('td', { class: 'num' }, h('a', { href: `/runs/${r.id}` }, r.id)),
        h('td', { class: 'name' }, h('a', { href: `/runs/${r.id}` }, r.name),
          r.kind === 'sft' ? h('span', { class: 'muted' }, ' · SFT') : null),
        h('td', {}, badge(r.state), r.message ? h('div', { class: 'muted' }, r.message) : null),
        h('td', {}, progressBar(r.step, r.total_steps)),
        h('td', { class: 'num' }, num(r.latest && r.latest.reward_mean)),
        h('td', { class: 'num' }, r.latest && r.latest.accuracy !== undefined ? pct(r.latest.accuracy) : '–'),
        h('td', { class: 'num' }, r.last_eval ? `${pct(r.last_eval.accuracy)} @ ${r.last_eval.step}` : '–'),
        h('td', { class: 'num', title: when(r.created_ms) }, ago(r.age_s)),
        h('td', {}, h('a', { href: `/runs/${r.id}` }, 'curves'), ' · ',
          h('a', { href: `/runs/${r.id}/samples` }, 'samples')))))));
  };
  let stop = poll(3000, load);
  refresh = () => { stop(); stop = poll(3000, load); };
}

// ---------------------------------------------------------------- charts

const PALETTE = ['#2f5fd0', '#d0572f', '#1f8a4c', '#8b5cf6', '#b7791f', '#0891b2', '#db2777', '#525252'];

// The curves of a run page; a series whose key no line holds is left out, a chart with no
// series says so.
const CHARTS = [
  { id: 'reward', title: 'Reward', series: [{ key: 'reward_mean', label: 'mean ± std', band: 'reward_std' }], prefix: 'reward/' },
  { id: 'accuracy', title: 'Accuracy and format', series: [{ key: 'accuracy', label: 'accuracy' }, { key: 'format_rate', label: 'format rate' }] },
  { id: 'eval', title: 'Eval pass@1', series: [{ key: 'eval_accuracy', label: 'pass@1' }] },
  { id: 'length', title: 'Response length (tokens)', series: [{ key: 'response_len_mean', label: 'mean' }, { key: 'response_len_max', label: 'max' }] },
  { id: 'truncated', title: 'Truncated fraction', series: [{ key: 'truncated_frac', label: 'cut by the length limit' }] },
  { id: 'kl', title: 'KL to the reference', series: [{ key: 'kl', label: 'k3' }] },
  { id: 'entropy', title: 'Entropy (nats/token)', series: [{ key: 'entropy', label: 'entropy' }] },
  { id: 'clip', title: 'Clip fraction', series: [{ key: 'clip_frac', label: 'clipped tokens' }] },
  { id: 'throughput', title: 'Tokens per second', series: [
    { key: 'actor_tokens_per_s', label: 'actors' }, { key: 'learner_tokens_per_s', label: 'learner' },
    { key: 'tokens_per_s', label: 'end to end' }] },
  { id: 'staleness', title: 'Staleness (policy versions)', series: [{ key: 'staleness_mean', label: 'mean lag' }] },
  { id: 'sync', title: 'Weight sync (s)', series: [{ key: 'weight_sync_seconds', label: 'seconds' }] },
  { id: 'queues', title: 'Queue depths at step end', series: [
    { key: 'queue_generate', label: 'generate' }, { key: 'queue_score', label: 'score' }, { key: 'queue_train', label: 'train' }] },
  { id: 'loss', title: 'Loss', series: [{ key: 'loss', label: 'loss' }] },
  { id: 'grad_norm', title: 'Gradient norm', series: [{ key: 'grad_norm', label: 'before clipping' }] },
  { id: 'lr', title: 'Learning rate', series: [{ key: 'lr', label: 'lr' }] },
  { id: 'step_seconds', title: 'Learner step (s)', series: [{ key: 'step_seconds', label: 'compute' }] },
];
const NOT_CURVES = new Set(['step', 'tokens', 'groups']);

/** The chart list for `lines`: the fixed charts, reward components, and any other number. */
function chartsFor(lines) {
  const keys = new Set();
  for (const l of lines) for (const [k, v] of Object.entries(l)) if (typeof v === 'number') keys.add(k);
  const charts = CHARTS.map((c) => ({ ...c, series: [...c.series] }));
  const known = new Set(charts.flatMap((c) => c.series.flatMap((s) => (s.band ? [s.key, s.band] : [s.key]))));
  const reward = charts[0];
  for (const k of [...keys].sort()) {
    if (k.startsWith(reward.prefix)) {
      reward.series.push({ key: k, label: k.slice(reward.prefix.length) });
      known.add(k);
    }
  }
  for (const k of [...keys].sort()) {
    if (!known.has(k) && !NOT_CURVES.has(k)) charts.push({ id: 'x-' + k, title: k, series: [{ key: k, label: k }] });
  }
  return charts;
}

function niceTicks(lo, hi, n) {
  const span = hi - lo;
  const raw = span / n;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => span / s <= n) || raw;
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(Number(t.toPrecision(12)));
  return ticks;
}

/** One chart as a <figure>: an SVG line per series, one circle per point. */
function drawChart(def, lines) {
  const W = 420, H = 190, L = 52, R = 10, T = 8, B = 24;
  const series = def.series.map((s, i) => {
    const pts = [];
    for (const l of lines) {
      const y = l[s.key];
      if (typeof y !== 'number' || !Number.isFinite(y)) continue;
      const sd = s.band ? l[s.band] : undefined;
      pts.push({ x: l.step, y, sd: typeof sd === 'number' && Number.isFinite(sd) ? sd : null });
    }
    return { ...s, color: PALETTE[i % PALETTE.length], pts };
  }).filter((s) => s.pts.length > 0);
  const caption = h('figcaption', {}, def.title,
    series.map((s) => h('span', { class: 'legend' },
      h('span', { class: 'swatch', 'data-color': s.color }),
      s.label + ' ', h('b', {}, num(s.pts[s.pts.length - 1].y)))));
  for (const sw of caption.querySelectorAll('.swatch')) sw.style.background = sw.getAttribute('data-color');
  const fig = h('figure', { class: 'chart', 'data-chart': def.id }, caption);
  if (series.length === 0) {
    fig.classList.add('empty');
    fig.appendChild(h('div', { class: 'none' }, 'not reported by this run yet'));
    return fig;
  }
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const s of series) for (const p of s.pts) {
    x0 = Math.min(x0, p.x); x1 = Math.max(x1, p.x);
    y0 = Math.min(y0, p.sd !== null ? p.y - p.sd : p.y); y1 = Math.max(y1, p.sd !== null ? p.y + p.sd : p.y);
  }
  if (x0 === x1) x1 += 1;
  if (y0 === y1) { const d = Math.abs(y0) * 0.1 || 1; y0 -= d; y1 += d; }
  const pad = (y1 - y0) * 0.06; y0 -= pad; y1 += pad;
  const X = (x) => L + (x - x0) / (x1 - x0) * (W - L - R);
  const Y = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  const plot = svg('svg', { class: 'plot', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': def.title });
  for (const t of niceTicks(y0, y1, 4)) {
    plot.appendChild(svg('line', { class: 'grid', x1: L, x2: W - R, y1: Y(t), y2: Y(t) }));
    plot.appendChild(svg('text', { x: L - 6, y: Y(t) + 3, 'text-anchor': 'end' }, num(t)));
  }
  for (const t of niceTicks(x0, x1, 6).filter(Number.isInteger)) {
    plot.appendChild(svg('text', { x: X(t), y: H - 8, 'text-anchor': 'middle' }, String(t)));
  }
  plot.appendChild(svg('line', { class: 'axis', x1: L, x2: W - R, y1: H - B, y2: H - B }));
  for (const s of series) {
    const g = svg('g', { 'data-series': s.key, 'data-points': s.pts.length });
    const banded = s.pts.filter((p) => p.sd !== null);
    if (banded.length > 0) {
      const upper = banded.map((p) => `${X(p.x)},${Y(p.y + p.sd)}`);
      const lower = banded.slice().reverse().map((p) => `${X(p.x)},${Y(p.y - p.sd)}`);
      g.appendChild(svg('polygon', { class: 'band', points: upper.concat(lower).join(' '), fill: s.color, 'fill-opacity': 0.15, stroke: 'none' }));
    }
    g.appendChild(svg('polyline', { points: s.pts.map((p) => `${X(p.x)},${Y(p.y)}`).join(' '), fill: 'none', stroke: s.color, 'stroke-width': 1.8 }));
    for (const p of s.pts) {
      g.appendChild(svg('circle', { class: 'pt', 'data-step': p.x, cx: X(p.x), cy: Y(p.y), r: s.pts.length > 200 ? 1.2 : 2.6, fill: s.color },
        svg('title', {}, `${s.label}: step ${p.x}: ${num(p.y, 4)}` + (p.sd !== null ? ` ± ${num(p.sd, 3)}` : ''))));
    }
    plot.appendChild(g);
  }
  fig.appendChild(plot);
  return fig;
}

// ---------------------------------------------------------------- one run

function stat(k, v, title) {
  return h('div', { class: 'stat', title: title || null }, h('div', { class: 'k' }, k), h('div', { class: 'v' }, v));
}

function cancelBox(run, onDone) {
  const token = h('input', { type: 'password', id: 'token', placeholder: 'bearer token, if the coordinator has one', size: 40, autocomplete: 'off' });
  token.value = sessionStorage.getItem(TOKEN_KEY) || '';
  const result = h('span', { class: 'result', id: 'cancel-result' });
  const button = h('button', { class: 'danger', id: 'cancel' }, 'Cancel run…');
  let armed = false;
  button.addEventListener('click', async () => {
    if (!armed) {
      armed = true;
      button.classList.add('armed');
      button.textContent = 'Confirm: cancel this run';
      return;
    }
    armed = false;
    button.classList.remove('armed');
    button.textContent = 'Cancel run…';
    const headers = { 'content-type': 'application/json' };
    if (token.value) headers.authorization = 'Bearer ' + token.value;
    try {
      await api(`/api/runs/${run}/cancel`, { method: 'POST', headers, body: JSON.stringify({ reason: 'cancelled from the dashboard' }) });
      if (token.value) sessionStorage.setItem(TOKEN_KEY, token.value);
      result.className = 'result ok';
      result.textContent = 'Cancelled.';
      onDone();
    } catch (e) {
      result.className = 'result err';
      result.textContent = `Refused (${e.status}): ${e.message}`;
    }
  });
  return h('div', { class: 'cancel panel' }, button, token, result);
}

function runPage(id) {
  const head = h('div', { id: 'run-head' }, h('p', { class: 'muted' }, 'Loading…'));
  const cancel = h('div', { id: 'run-cancel' });
  const stats = h('div', { class: 'stats', id: 'counters' });
  const charts = h('div', { class: 'charts', id: 'charts' });
  const checkpoints = h('div', { id: 'checkpoints' });
  const spec = h('div', { id: 'spec' });
  replace(app, head, cancel, h('h2', {}, 'Curves ', h('span', { class: 'muted' }, '· by learner step; hover a point for its value')), charts, h('h2', {}, 'Counters'), stats,
    h('h2', {}, 'Checkpoints'), checkpoints, h('h2', {}, 'Spec as submitted'), spec);
  const byStep = new Map();
  let since = null;
  let shownSpec = false;
  let cancelShown = null;
  let lastDrawn = '';

  const showRun = (r) => {
    document.title = `r1 · ${r.name}`;
    replace(head,
      h('h1', {}, h('span', { class: 'muted' }, `run ${r.id} · `), h('span', { id: 'run-name' }, r.name)),
      h('div', { class: 'summary' }, badge(r.state), progressBar(r.step, r.total_steps),
        h('span', {}, `policy v${r.policy_version}`),
        h('span', { class: 'muted' }, `epoch ${r.cursor.epoch}, example ${r.cursor.index}`),
        h('span', { class: 'muted', title: when(r.created_ms) }, `started ${ago(r.age_s)} ago`),
        h('a', { href: `/runs/${r.id}/samples`, id: 'samples-link' }, 'samples →'),
        h('a', { href: `/api/runs/${r.id}` }, 'JSON')),
      r.message ? h('p', { class: 'muted', id: 'run-message' }, r.message) : null);
    const active = !TERMINAL.includes(r.state);
    if (cancelShown !== active) {
      cancelShown = active;
      replace(cancel, active ? cancelBox(r.id, () => refresh()) : null);
    }
    const c = r.counters, q = r.queues;
    replace(stats,
      stat('groups trained', num(c.groups_trained)), stat('dropped stale', num(c.dropped_stale), 'lagged the learner by more than max_policy_lag'),
      stat('dropped equal', num(c.dropped_equal), 'all rewards equal (dynamic sampling)'), stat('leases expired', num(c.leases_expired)),
      stat('rollbacks', num(c.rollbacks)), stat('prompts drawn', num(c.prompts_drawn)), stat('groups generated', num(c.groups_generated)),
      stat('groups scored', num(c.groups_scored)), stat('replays', num(c.replays)), stat('late submissions', num(c.late_submissions)),
      stat('queue: generate', num(q.generate)), stat('queue: score', num(q.score)), stat('queue: train', num(q.train)));
    replace(checkpoints, r.checkpoints.length === 0 ? h('p', { class: 'muted' }, 'No checkpoint recorded yet.') :
      h('table', {}, h('thead', {}, h('tr', {}, h('th', { class: 'num' }, 'step'), h('th', { class: 'num' }, 'policy version'), h('th', {}, 'path'), h('th', {}, 'recorded'))),
        h('tbody', {}, r.checkpoints.map((k) => h('tr', {}, h('td', { class: 'num' }, k.step), h('td', { class: 'num' }, k.policy_version),
          h('td', {}, h('code', {}, k.path)), h('td', {}, when(k.created_ms)))))));
    if (!shownSpec) {
      shownSpec = true;
      replace(spec, h('details', {}, h('summary', {}, 'Show the resolved run spec'), h('pre', { class: 'panel' }, JSON.stringify(r.spec, null, 2))),
        r.run_dir ? h('p', { class: 'muted' }, 'Run folder: ', h('code', {}, r.run_dir)) : null);
    }
    return active;
  };

  const showCurves = () => {
    const lines = [...byStep.values()].sort((a, b) => a.step - b.step);
    const key = JSON.stringify(lines);
    if (key === lastDrawn) return;
    lastDrawn = key;
    replace(charts, chartsFor(lines).map((c) => drawChart(c, lines)));
  };

  const load = async () => {
    const r = await api(`/api/runs/${id}`);
    const active = showRun(r);
    const m = await api(`/api/runs/${id}/metrics` + (since === null ? '' : `?since=${since}`));
    if (since !== null && m.step < since) {
      // Rolled back: start over from the store's lines.
      byStep.clear();
      since = null;
      return true;
    }
    for (const l of m.lines) byStep.set(l.step, { ...(byStep.get(l.step) || {}), ...l });
    for (const e of m.evals) byStep.set(e.step, { ...(byStep.get(e.step) || { step: e.step }), eval_accuracy: e.accuracy });
    for (const l of m.lines) since = Math.max(since === null ? 0 : since, l.step);
    showCurves();
    return active;
  };
  let stop = poll(2000, load);
  const refresh = () => { stop(); stop = poll(2000, load); };
  return refresh;
}

// ---------------------------------------------------------------- samples

/** `text` split into plain, <think> and <answer> parts, the tags themselves left out. */
function parts(text) {
  const out = [];
  const re = /<(think|answer)>([\s\S]*?)(?:<\/\1>|$)/g;
  let at = 0, m;
  while ((m = re.exec(text)) !== null) {
    if (m.index > at) out.push({ kind: 'plain', text: text.slice(at, m.index) });
    out.push({ kind: m[1], text: m[2] });
    at = re.lastIndex;
    if (m[0].length === 0) re.lastIndex++;
  }
  if (at < text.length) out.push({ kind: 'plain', text: text.slice(at) });
  return out.filter((p) => p.kind !== 'plain' || p.text.trim() !== '');
}

function completionView(c, i) {
  const comps = Object.entries(c.components || {});
  return h('div', { class: 'completion', 'data-reward': c.reward, 'data-tokens': c.tokens },
    h('div', { class: 'head' },
      h('span', {}, `#${i + 1}`),
      h('span', {}, 'reward ', h('b', { class: c.advantage > 0 ? 'pos' : c.advantage < 0 ? 'neg' : null }, num(c.reward, 4))),
      h('span', {}, 'advantage ', h('b', {}, num(c.advantage, 3))),
      comps.map(([k, v]) => h('span', {}, k + ' ', h('b', {}, num(v, 3)))),
      h('span', {}, h('b', {}, c.tokens), ' tokens'),
      c.truncated ? h('span', { class: 'neg' }, 'cut by the length limit') : null,
      c.text_cut ? h('span', { class: 'muted' }, 'text shortened for display') : null),
    h('div', { class: 'body' }, parts(c.text).map((p) => p.kind === 'plain'
      ? h('div', { class: 'plain' }, p.text)
      : h('div', { class: 'part ' + p.kind }, h('span', { class: 'tag' }, p.kind), h('div', { class: 'plain' }, p.text)))));
}

function promptView(prompt) {
  if (typeof prompt === 'string') return h('div', { class: 'prompt' }, h('div', { class: 'plain' }, prompt));
  return h('div', { class: 'prompt' }, (prompt || []).map((m) =>
    h('div', {}, h('div', { class: 'role' }, m.role), h('div', { class: 'plain' }, m.content))));
}

const SORTS = {
  'reward-desc': ['reward, best first', (a, b) => b.reward - a.reward],
  'reward-asc': ['reward, worst first', (a, b) => a.reward - b.reward],
  'length-desc': ['length, longest first', (a, b) => b.tokens - a.tokens],
  'length-asc': ['length, shortest first', (a, b) => a.tokens - b.tokens],
  'order': ['as sampled', null],
};

function samplesPage(id) {
  const params = new URLSearchParams(location.search);
  let step = params.has('step') ? Number(params.get('step')) : null;
  let sort = SORTS[params.get('sort')] ? params.get('sort') : 'reward-desc';
  const title = h('h1', {}, h('span', { class: 'muted' }, `run ${id} · samples`));
  const bar = h('div', { class: 'toolbar', id: 'pager' });
  const body = h('div', { id: 'groups' }, h('p', { class: 'muted' }, 'Loading…'));
  replace(app, title, bar, body);
  api(`/api/runs/${id}`).then((r) => {
    document.title = `r1 · samples · ${r.name}`;
    replace(title, h('span', { class: 'muted' }, `run ${id} · samples of `), h('a', { href: `/runs/${id}`, id: 'run-name' }, r.name));
  }).catch(() => {});

  const remember = () => {
    const q = new URLSearchParams();
    if (step !== null) q.set('step', step);
    if (sort !== 'reward-desc') q.set('sort', sort);
    history.replaceState(null, '', `/runs/${id}/samples` + (q.toString() ? '?' + q : ''));
  };
  const go = (s) => {
    step = s;
    remember();
    load();
  };
  let data = null;

  const render = () => {
    const steps = data.steps;
    const i = steps.indexOf(data.step);
    const pick = h('select', { id: 'step' }, steps.map((s) => h('option', { value: s, selected: s === data.step }, `step ${s}`)));
    pick.addEventListener('change', () => go(Number(pick.value)));
    const order = h('select', { id: 'sort' }, Object.entries(SORTS).map(([k, [label]]) => h('option', { value: k, selected: k === sort }, label)));
    order.addEventListener('change', () => { sort = order.value; remember(); render(); });
    const prev = h('button', { id: 'prev', disabled: i <= 0 }, '← earlier');
    prev.addEventListener('click', () => go(steps[i - 1]));
    const next = h('button', { id: 'next', disabled: i < 0 || i >= steps.length - 1 }, 'later →');
    next.addEventListener('click', () => go(steps[i + 1]));
    replace(bar, prev, pick, next, h('label', { for: 'sort' }, 'sort by'), order,
      h('span', { class: 'muted' }, data.step === null ? '' : `${data.groups.length} of the ${data.groups_trained} groups of step ${data.step} kept`));
    if (data.step === null) {
      replace(body, h('p', { class: 'muted' }, 'No samples kept yet: they appear after the first learner step (coordinator config samples_per_step).'));
      return;
    }
    const cmp = SORTS[sort][1];
    replace(body, data.groups.map((g) => {
      const shown = g.completions.map((c, i) => ({ c, i }));
      if (cmp) shown.sort((a, b) => cmp(a.c, b.c));
      return h('section', { class: 'group panel', 'data-group': g.group_id },
        h('div', { class: 'meta' }, `group ${g.group_id} · dataset row ${g.row} · sampled by policy v${g.policy_version} · ${g.completions.length} completions`),
        promptView(g.prompt),
        g.answer !== null && g.answer !== undefined ? h('div', { class: 'meta' }, 'reference answer: ', h('code', {}, g.answer)) : null,
        shown.map(({ c, i }) => completionView(c, i)));
    }));
  };

  const load = async () => {
    try {
      data = await api(`/api/runs/${id}/samples` + (step === null ? '' : `?step=${step}`));
    } catch (e) {
      replace(body, h('p', { class: 'error' }, e.message));
      return;
    }
    render();
  };
  load();
}

// ---------------------------------------------------------------- fleet

const ROLES = [['actor', 'Actors'], ['reward', 'Reward workers'], ['learner', 'Learners']];

function workersPage() {
  document.title = 'r1 · fleet';
  const body = h('div', { id: 'workers' }, h('p', { class: 'muted' }, 'Loading…'));
  replace(app, h('h1', {}, 'Fleet'), body);
  poll(3000, async () => {
    const { workers, now_ms: now, gone_after_ms: goneAfter } = await api('/api/workers');
    if (workers.length === 0) {
      replace(body, h('p', { class: 'muted' }, 'No worker has called in yet: workers appear here at their first lease call.'));
      return;
    }
    replace(body, h('p', { class: 'muted' }, `A worker with no call for ${ago(goneAfter / 1000)} is shown as gone.`),
      ROLES.map(([role, label]) => {
        const mine = workers.filter((w) => w.role === role);
        const up = mine.filter((w) => !w.gone).length;
        return h('section', { 'data-role': role },
          h('h2', {}, `${label} `, h('span', { class: 'muted' }, `${up} live` + (mine.length > up ? `, ${mine.length - up} gone` : ''))),
          mine.length === 0 ? h('p', { class: 'muted' }, 'none') : h('table', {},
            h('thead', {}, h('tr', {}, h('th', {}, 'worker'), h('th', {}, 'status'), h('th', { class: 'num' }, 'run'), h('th', {}, 'lease'),
              h('th', {}, 'last heartbeat'), h('th', { class: 'num' }, 'policy version'), h('th', { class: 'num' }, 'throughput'), h('th', { class: 'num' }, 'done'))),
            h('tbody', {}, mine.map((w) => h('tr', { class: w.gone ? 'gone' : null, 'data-worker': w.name },
              h('td', {}, w.name),
              h('td', { class: 'status' }, badge(w.gone ? 'gone' : 'live')),
              // Run 0: a pool waiting for a run to serve.
              h('td', { class: 'num' }, w.run ? h('a', { href: `/runs/${w.run}` }, w.run) : h('span', { class: 'muted' }, 'waiting')),
              h('td', {}, w.lease ? `#${w.lease}, ` + (w.lease_deadline_ms > now ? `${ago((w.lease_deadline_ms - now) / 1000)} left` : 'expired') : h('span', { class: 'muted' }, 'idle')),
              h('td', { title: when(w.last_seen_ms) }, `${ago((now - w.last_seen_ms) / 1000)} ago`),
              h('td', { class: 'num' }, w.policy_version === null ? '–' : `v${w.policy_version}`),
              h('td', { class: 'num' }, `${num(w.throughput)} ${w.unit}`),
              h('td', { class: 'num' }, num(w.done)))))));
      }));
  });
}

// ---------------------------------------------------------------- routes

function route() {
  const path = location.pathname;
  let m;
  const nav = (name) => {
    for (const a of document.querySelectorAll('header nav a')) a.classList.toggle('active', a.dataset.nav === name);
  };
  if (path === '/') { nav('runs'); runsPage(); }
  else if ((m = path.match(/^\/runs\/(\d+)$/))) { nav('runs'); runPage(Number(m[1])); }
  else if ((m = path.match(/^\/runs\/(\d+)\/samples$/))) { nav('runs'); samplesPage(Number(m[1])); }
  else if (path === '/workers') { nav('workers'); workersPage(); }
  else replace(app, h('p', { class: 'error' }, 'No such page. '), h('a', { href: '/' }, 'All runs'));
}

route();
