// steplog's web view: one page, no build step. Routes (after #): / the runs table,
// /run/REF a run or version page, /compare?r=A&r=B charts of several runs. Every piece of
// stored data is put in the page as text (never as HTML). docs/API.md describes the API.
"use strict";

const TOKEN = document.querySelector('meta[name="steplog-token"]').content;
const WRITE = document.querySelector('meta[name="steplog-write"]').content === "1";
const COLORS = ["#2f6fdf", "#e4572e", "#17a589", "#a64ac9", "#f0a202", "#5c6b73", "#d81e5b",
                "#3b8ea5", "#7cb518", "#b5651d", "#4a4e69", "#ff7f11"];
const MAX_LINES = 12;        // lines per chart, at most
const POLL_MS = 2000;        // live poll period
const PAGE = 50;             // rows of the runs table per page

// ---------- small helpers ----------
function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "class") e.className = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids.flat()) {
    if (k === null || k === undefined || k === false) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}
const fmtInt = (n) => (n === null || n === undefined) ? "—" : Number(n).toLocaleString("en-US");
function fmtVal(v) {
  if (v === null || v === undefined) return "—";
  if (typeof v === "number") {
    if (Number.isInteger(v)) return v.toLocaleString("en-US");
    const a = Math.abs(v);
    return (a !== 0 && (a < 1e-3 || a >= 1e7)) ? v.toExponential(4) : String(+v.toPrecision(6));
  }
  return String(v);
}
const runHref = (ref) => "#/run/" + encodeURIComponent(ref);
function badge(status) { return h("span", { class: "badge " + status, "data-status": status }, status); }
function copyButton(text) {
  return h("button", { class: "copy", title: "copy " + text, onclick: (ev) => {
    ev.preventDefault();
    const done = () => { ev.target.textContent = "copied"; setTimeout(() => ev.target.textContent = "copy", 1200); };
    if (navigator.clipboard) navigator.clipboard.writeText(text).then(done, done); else done();
  } }, "copy");
}
// Every view has a generation: a response that arrives after the view changed is dropped
// (`Stale`), so a slow request never writes into the page that replaced its own.
let generation = 0;
class Stale extends Error {}
function current(gen) { if (gen !== generation) throw new Stale("left the page"); }
async function api(path, params) {
  const gen = generation;
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (Array.isArray(v)) v.forEach((x) => q.append(k, x));
    else if (v !== null && v !== undefined && v !== "") q.append(k, v);
  }
  const r = await fetch("/api/" + path + (q.toString() ? "?" + q : ""));
  const body = await r.json();
  current(gen);
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}
// An error handler that ignores a dropped response.
const shown = (f) => (e) => { if (!(e instanceof Stale)) f(e); };
async function post(path, body) {
  const r = await fetch("/api/" + path, { method: "POST", body: JSON.stringify(body),
    headers: { "Content-Type": "application/json", "X-Steplog-Token": TOKEN } });
  const out = await r.json();
  if (!r.ok) throw new Error(out.error || r.statusText);
  return out;
}
function sparkSvg(values) {
  const pts = values.map((v, i) => [i, v]).filter(([, v]) => typeof v === "number");
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "spark"); svg.setAttribute("width", "80"); svg.setAttribute("height", "18");
  if (pts.length < 2) return svg;
  const ys = pts.map((p) => p[1]); const lo = Math.min(...ys), hi = Math.max(...ys);
  const n = values.length - 1 || 1;
  const d = pts.map(([i, v], j) => (j ? "L" : "M") + (i / n * 78 + 1).toFixed(1) + "," +
    (hi === lo ? 9 : 16 - (v - lo) / (hi - lo) * 14).toFixed(1)).join("");
  const p = document.createElementNS("http://www.w3.org/2000/svg", "path");
  p.setAttribute("d", d); p.setAttribute("fill", "none"); p.setAttribute("stroke", "#2f6fdf");
  svg.append(p);
  return svg;
}
function flatten(obj, prefix, out) {
  for (const [k, v] of Object.entries(obj || {})) {
    if (v && typeof v === "object" && !Array.isArray(v)) flatten(v, prefix + k + "/", out);
    else out.push([prefix + k, v]);
  }
  return out;
}

// ---------- routing ----------
let teardown = [];           // timers and charts of the current view
function leave() { generation++; teardown.forEach((f) => f()); teardown = []; }
function route() {
  leave();
  const hash = location.hash.slice(1) || "/";
  const [path, query] = hash.split("?");
  const params = new URLSearchParams(query || "");
  const main = document.getElementById("main");
  main.replaceChildren();
  document.getElementById("mode").textContent = WRITE ? "rewind and fork allowed" : "read-only";
  const crumbs = document.getElementById("crumbs");
  crumbs.replaceChildren(h("a", { href: "#/" }, "runs"));
  let view;
  if (path.startsWith("/run/")) {
    let ref;
    try { ref = decodeURIComponent(path.slice(5)); } catch (e) { ref = path.slice(5); }
    crumbs.append(" / ", ref);
    view = runPage(main, ref);
  } else if (path === "/compare") {
    crumbs.append(" / compare");
    view = comparePage(main, params.getAll("r"));
  } else {
    view = runsPage(main, params);
  }
  view.catch(shown((e) => main.append(h("p", { class: "error" }, String(e.message || e)))));
}
window.addEventListener("hashchange", route);

// ---------- runs table ----------
const table = { sort: "name", order: "asc", offset: 0, filter: "", config: "", metric: "",
                keys: null, configCols: null, selected: new Set() };

async function runsPage(main, params) {
  const status = h("span", { class: "muted", id: "runs-status" });
  const body = h("div", { id: "runs" });
  const input = (name, placeholder, title) => h("input", { type: "text", id: "f-" + name,
    placeholder, title, value: table[name], onchange: (e) => { table[name] = e.target.value; table.offset = 0; load(); } });
  const compare = h("button", { id: "compare", onclick: () => {
    const q = new URLSearchParams(); [...table.selected].forEach((r) => q.append("r", r));
    location.hash = "#/compare?" + q;
  } }, "Compare selected");
  main.append(h("div", { class: "toolbar" },
    input("filter", "filter by name", "runs whose name contains this"),
    input("config", "config: lr=0.1", "config PATH=VALUE (nested keys joined with /); several with ;"),
    input("metric", "metric: loss<0.5", "last value of a metric: KEY<X, <=, >, >=, = ; several with ;"),
    compare, status), body);
  let timer = null;
  teardown.push(() => clearTimeout(timer));
  async function load() {
    clearTimeout(timer);
    const split = (s) => s.split(";").map((x) => x.trim()).filter(Boolean);
    let data;
    try {
      data = await api("runs", { offset: table.offset, limit: PAGE, sort: table.sort, order: table.order,
        filter: table.filter, config: split(table.config), metric: split(table.metric), keys: table.keys || [] });
    } catch (e) {
      if (e instanceof Stale) return;
      body.replaceChildren(h("p", { class: "error" }, e.message)); return;
    }
    if (table.keys === null) {
      // First load: the first few metrics (not _-prefixed) become columns; ask again for them.
      table.keys = data.keys.filter((k) => !k.startsWith("_")).slice(0, 3);
      table.configCols = data.config_keys.slice(0, 3);
      if (table.keys.length) return load();
    }
    render(data);
    // A page showing a live run refreshes itself (one request per period).
    if (data.runs.some((r) => r.status === "running")) timer = setTimeout(load, POLL_MS * 2);
  }
  function sortBy(s) {
    if (table.sort === s) table.order = table.order === "asc" ? "desc" : "asc";
    else { table.sort = s; table.order = s === "name" ? "asc" : "desc"; }
    table.offset = 0; load();
  }
  function th(label, s) {
    return h("th", { class: "sortable" + (table.sort === s ? " sorted" : ""),
      "data-dir": table.order === "asc" ? " ▲" : " ▼", onclick: () => sortBy(s) }, label);
  }
  function render(data) {
    status.textContent = data.total ? `${fmtInt(data.offset + 1)}–${fmtInt(data.offset + data.runs.length)} of ${fmtInt(data.total)} runs` : "no runs";
    const head = h("tr", {}, h("th", {}, ""), th("run", "name"), th("status", "status"), h("th", {}, "head"),
      th("last step", "last_step"), th("rows", "rows"),
      table.keys.map((k) => th(k, "metric:" + k)), table.configCols.map((k) => h("th", {}, k)));
    const rows = data.runs.map((r) => {
      const config = Object.fromEntries(flatten(r.config, "", []));
      return h("tr", { "data-run": r.name },
        h("td", {}, h("input", { type: "checkbox", checked: table.selected.has(r.name), onchange: (e) => {
          e.target.checked ? table.selected.add(r.name) : table.selected.delete(r.name); } })),
        h("td", {}, h("a", { href: runHref(r.name) }, r.name), r.damage ? h("div", { class: "error" }, r.damage) : null),
        h("td", {}, badge(r.status)), h("td", { class: "mono" }, r.head),
        h("td", { class: "num" }, fmtInt(r.last_step)), h("td", { class: "num" }, fmtInt(r.rows)),
        table.keys.map((k) => { const m = Object.hasOwn(r.metrics, k) ? r.metrics[k] : null;
          return h("td", { class: "num" }, m ? [sparkSvg(m.spark), " ", fmtVal(m.last)] : "—"); }),
        table.configCols.map((k) => h("td", {}, fmtVal(config[k]))));
    });
    const pager = h("div", { class: "pager" },
      h("button", { disabled: table.offset === 0, onclick: () => { table.offset = Math.max(0, table.offset - PAGE); load(); } }, "‹ previous"),
      h("button", { disabled: data.offset + data.runs.length >= data.total, onclick: () => { table.offset += PAGE; load(); } }, "next ›"));
    const chooser = (title, all, chosen, set) => h("details", {}, h("summary", {}, title),
      h("div", { class: "chooser" }, all.map((k) => h("label", {}, h("input", { type: "checkbox", checked: chosen.includes(k),
        onchange: (e) => { set(e.target.checked ? [...chosen, k] : chosen.filter((x) => x !== k)); load(); } }), k, h("br")))));
    body.replaceChildren(h("table", { id: "runs-table" }, h("thead", {}, head), h("tbody", {}, rows)), pager,
      h("div", { class: "cols" },
        chooser("metric columns", data.keys, table.keys, (v) => { table.keys = v.slice(0, 20); }),
        chooser("config columns", data.config_keys, table.configCols, (v) => { table.configCols = v; })));
  }
  await load();
}

// ---------- lineage: which versions a line is drawn from ----------
// A version reads its own rows after its parent's step and its parent's up to that step:
// `chain` lists, from step 0, which version each step range comes from.
function chainOf(byId, id) {
  const out = [];
  let v = byId.get(id), hi = Infinity;
  while (v) {
    const lo = v.parent ? v.parent_step + 1 : 0;
    if (lo <= hi) out.push({ id: v.id, lo, hi });
    if (!v.parent) break;
    hi = Math.min(hi, v.parent_step);
    v = byId.get(v.parent);
  }
  return out.reverse();
}
// The first step at which two versions' rows can differ (Infinity: they read the same).
function divergence(a, b) {
  let i = 0, j = 0, pos = 0;
  while (i < a.length && j < b.length) {
    if (a[i].hi < pos) { i++; continue; }
    if (b[j].hi < pos) { j++; continue; }
    if (a[i].id !== b[j].id) return pos;
    pos = Math.min(a[i].hi, b[j].hi) + 1;
    if (pos === Infinity) return Infinity;  // both read the same version to the end
  }
  return (i < a.length) !== (j < b.length) ? pos : Infinity;
}

// ---------- charts ----------
// One panel per key; every panel shares the x range (steps) and re-fetches exact M4 for it
// at its pixel width whenever the range changes (drag to zoom, double-click to reset).
function charts(container, lines, keys, opts) {
  const state = { from: null, to: null, smoothing: 0, xmode: "step", log: false, panels: [] };
  const hint = h("span", { class: "chart-hint" }, "drag to zoom, double-click to reset");
  const smooth = h("input", { type: "range", min: "0", max: "0.99", step: "0.01", value: "0", id: "smoothing",
    oninput: (e) => { state.smoothing = +e.target.value; smoothLabel.textContent = state.smoothing.toFixed(2); redrawAll(); } });
  const smoothLabel = h("span", {}, "0.00");
  const xmode = h("select", { id: "xmode", onchange: (e) => { state.xmode = e.target.value; state.from = state.to = null; state.ranges = null; refetchAll(); } },
    h("option", { value: "step" }, "step"), h("option", { value: "wall" }, "wall time"),
    h("option", { value: "relative" }, "relative time"));
  const log = h("input", { type: "checkbox", id: "logscale", onchange: (e) => { state.log = e.target.checked; redrawAll(); } });
  const reset = h("button", { id: "reset-zoom", onclick: () => { state.from = state.to = null; state.ranges = null; refetchAll(); } }, "reset zoom");
  const grid = h("div", { class: "grid", id: "charts" });
  container.append(h("div", { class: "toolbar" }, "smoothing ", smooth, smoothLabel, " x axis ", xmode,
    h("label", {}, log, " log scale"), reset, hint), grid);
  state.refetch = () => Promise.resolve();
  if (!keys.length) { grid.append(h("p", { class: "muted" }, "no numeric metric to chart yet")); return state; }
  for (const key of keys) {
    const el = h("div", { class: "panel", "data-key": key, "data-fetches": "0" }, h("h4", {}, key));
    const plotEl = h("div", {});
    el.append(plotEl);
    grid.append(el);
    state.panels.push({ key, el, plotEl, plot: null, data: null });
  }
  teardown.push(() => state.panels.forEach((p) => p.plot && p.plot.destroy()));

  // Wall time of a line's steps, from its logged `_timestamp` (W&B's convention).
  async function timesOf(line, from, to, width) {
    try {
      const s = await api("series", { ref: line.ref, key: "_timestamp", from, to, width });
      return s.steps.map((st, i) => [st, s.values[i]]).filter(([, t]) => t !== null);
    } catch (e) { return null; }
  }
  function interp(pairs, step) {
    if (!pairs || !pairs.length) return null;
    let lo = 0, hi = pairs.length - 1;
    if (step <= pairs[0][0]) return pairs[0][1];
    if (step >= pairs[hi][0]) return pairs[hi][1];
    while (hi - lo > 1) { const m = (lo + hi) >> 1; if (pairs[m][0] <= step) lo = m; else hi = m; }
    const [s0, t0] = pairs[lo], [s1, t1] = pairs[hi];
    return t0 + (t1 - t0) * (step - s0) / (s1 - s0);
  }

  // Fetches the panel's lines (`only`: just these refs, the others kept) for the zoom.
  async function fetchPanel(p, only) {
    const width = Math.max(100, Math.floor(p.el.clientWidth - 20));
    const seq = (p.seq = (p.seq || 0) + 1);
    const fetched = await Promise.all(lines.map(async (line, li) => {
      if (only && !only.has(line.ref) && p.data) return p.data[li];
      const range = (state.ranges && state.ranges.get(line.ref)) || [state.from, state.to];
      const from = Math.max(line.from, range[0] ?? 0);
      const to = range[1] ?? undefined;
      if (to !== undefined && from > to) return { line, steps: [], values: [], times: null };
      try {
        const s = await api("series", { ref: line.ref, key: p.key, from, to, width });
        let times = null;
        if (state.xmode !== "step") times = await timesOf(line, from, to, width);
        return { line, steps: s.steps, values: s.values, times };
      } catch (e) {
        if (e instanceof Stale) throw e;
        return { line, steps: [], values: [], error: e.message };
      }
    }));
    if (seq !== p.seq) return;  // a newer zoom's answer is (or will be) drawn instead
    p.el.dataset.fetches = String(+p.el.dataset.fetches + 1);
    p.el.dataset.from = state.from ?? "";
    p.el.dataset.to = state.to ?? "";
    p.el.dataset.points = String(fetched.reduce((n, f) => n + f.steps.length, 0));
    const ys = fetched.flatMap((f) => f.values).filter((y) => typeof y === "number");
    p.el.dataset.max = ys.length ? String(ys.reduce((a, b) => Math.max(a, b))) : "";
    p.data = fetched;
    build(p);
  }
  function xOf(f, step) {
    if (state.xmode === "step") return step;
    const t = interp(f.times, step);
    if (t === null) return null;
    return state.xmode === "wall" ? t : t - interp(f.times, 0);
  }
  function ema(values, w) {
    if (w <= 0) return values;
    let last = 0, n = 0;
    return values.map((y) => {
      if (y === null || !isFinite(y)) return y;
      last = last * w + (1 - w) * y; n++;
      return last / (1 - Math.pow(w, n));
    });
  }
  // uPlot wants one sorted x array: the union of every line's x, each line null elsewhere.
  function aligned(p) {
    const xs = new Set();
    const per = p.data.map((f) => {
      const pts = new Map();
      const sm = ema(f.values, state.smoothing);
      f.steps.forEach((s, i) => { const x = xOf(f, s); if (x !== null) { xs.add(x); pts.set(x, [f.values[i], sm[i], s]); } });
      return pts;
    });
    const x = [...xs].sort((a, b) => a - b);
    const data = [x];
    const series = [{ label: state.xmode === "step" ? "step" : "time",
      value: (u, v) => v === null ? "—" : state.xmode === "wall" ? new Date(v * 1000).toLocaleString() : fmtVal(v) }];
    const stepsAt = [];
    // uPlot draws series in order: the first line (the version the page is about) goes
    // last, on top of the lines it shares steps with.
    [...per.keys()].reverse().forEach((li) => {
      const pts = per[li];
      const line = p.data[li].line;
      const raw = x.map((xx) => { const v = pts.get(xx); return v ? ok(v[0]) : null; });
      const smooth = x.map((xx) => { const v = pts.get(xx); return v ? ok(v[1]) : null; });
      stepsAt.push(x.map((xx) => { const v = pts.get(xx); return v ? v[2] : null; }));
      if (state.smoothing > 0) {
        data.push(raw);
        series.push({ label: line.label + " (raw)", stroke: line.color + "40", width: 1, spanGaps: true,
          dash: line.dashed ? [6, 4] : undefined, points: { show: false }, value: hover(stepsAt, stepsAt.length - 1) });
        stepsAt.push(stepsAt[stepsAt.length - 1]);
      }
      data.push(state.smoothing > 0 ? smooth : raw);
      series.push({ label: line.label, stroke: line.color, width: line.dashed ? 1.5 : 2, spanGaps: true,
        dash: line.dashed ? [6, 4] : undefined, points: { show: false }, value: hover(stepsAt, stepsAt.length - 1) });
    });
    return { data, series };
  }
  function ok(v) { return (v === null || (state.log && v <= 0)) ? null : v; }
  // Hover shows each line's exact point nearest the cursor, and its step.
  function hover(stepsAt, si) {
    return (u, v, seriesIdx, idx) => {
      if (idx === null || idx === undefined) return "—";
      const ys = u.data[seriesIdx];
      for (let d = 0; d < 64; d++) {
        for (const j of [idx - d, idx + d]) {
          if (j >= 0 && j < ys.length && ys[j] !== null && ys[j] !== undefined)
            return fmtVal(ys[j]) + " @" + fmtInt(stepsAt[si][j]);
        }
      }
      return "—";
    };
  }
  function markersPlugin() {
    return { hooks: { draw: (u) => {
      const ctx = u.ctx; const byX = new Map();
      for (const m of opts.markers || []) {
        const f = state.panels.length && state.panels[0].data ? state.panels[0].data[0] : null;
        const x = state.xmode === "step" ? m.step : (f ? xOf(f, m.step) : null);
        if (x === null || x < u.scales.x.min || x > u.scales.x.max) continue;
        byX.set(x, [...(byX.get(x) || []), m.label]);
      }
      ctx.save();
      for (const [x, labels] of byX) {
        const px = u.valToPos(x, "x", true);
        ctx.strokeStyle = "#8a6d00"; ctx.setLineDash([3, 3]); ctx.lineWidth = 1;
        ctx.beginPath(); ctx.moveTo(px, u.bbox.top); ctx.lineTo(px, u.bbox.top + u.bbox.height); ctx.stroke();
        ctx.fillStyle = "#8a6d00"; ctx.font = `${11 * devicePixelRatio}px sans-serif`;
        labels.forEach((l, i) => ctx.fillText(l, px + 4, u.bbox.top + (12 + 13 * i) * devicePixelRatio));
      }
      ctx.restore();
    } } };
  }
  function build(p) {
    if (p.plot) { p.plot.destroy(); p.plot = null; }
    const { data, series } = aligned(p);
    const width = Math.max(200, p.el.clientWidth - 16);
    const errors = p.data.filter((f) => f.error).map((f) => f.line.label + ": " + f.error);
    p.el.querySelectorAll(".error").forEach((e) => e.remove());
    if (errors.length && p.data.every((f) => f.error)) p.el.append(h("div", { class: "error" }, errors.join("\n")));
    p.plot = new uPlot({
      width, height: 240, series, plugins: [markersPlugin()],
      scales: { x: { time: state.xmode === "wall" }, y: { distr: state.log ? 3 : 1 } },
      cursor: { drag: { x: true, y: false }, sync: { key: "steplog" } },
      legend: { live: true },
      hooks: { setSelect: [(u) => {
        if (u.select.width < 3) return;
        const a = u.posToVal(u.select.left, "x"), b = u.posToVal(u.select.left + u.select.width, "x");
        u.setSelect({ left: 0, width: 0 }, false);
        zoomTo(a, b);
      }] },
    }, data, p.plotEl);
    p.plot.over.addEventListener("dblclick", () => { state.from = state.to = null; state.ranges = null; refetchAll(); });
  }
  // A zoom picked in x units, back to steps: directly on a step axis; on a time axis,
  // through each line's own clock (two runs on different days zoom each to its own steps).
  function zoomTo(a, b) {
    state.ranges = null;
    if (state.xmode === "step") {
      state.from = Math.max(0, Math.floor(a));
      state.to = Math.max(state.from, Math.ceil(b));
    } else {
      const data = state.panels[0].data || [];
      state.ranges = new Map();
      let lo = Infinity, hi = -Infinity;
      for (const f of data) {
        if (!f.times || !f.times.length) continue;
        const t0 = state.xmode === "relative" ? interp(f.times, 0) : 0;
        const inside = f.times.filter(([, t]) => t - t0 >= a && t - t0 <= b).map(([st]) => st);
        const before = f.times.filter(([, t]) => t - t0 < a).map(([st]) => st);
        const after = f.times.filter(([, t]) => t - t0 > b).map(([st]) => st);
        // The steps whose times are in the range, widened to the neighbours just outside.
        const from = before.length ? before[before.length - 1] : (inside[0] ?? null);
        const to = after.length ? after[0] : (inside[inside.length - 1] ?? null);
        if (from === null || to === null) { state.ranges.set(f.line.ref, [1, 0]); continue; }
        state.ranges.set(f.line.ref, [from, to]);
        lo = Math.min(lo, from); hi = Math.max(hi, to);
      }
      if (lo > hi) return;
      state.from = lo; state.to = hi;
    }
    refetchAll();
  }
  function refetchAll(only) {
    // A line's error is drawn in its panel; only a dropped (stale) answer reaches here.
    return Promise.all(state.panels.map((p) => fetchPanel(p, only))).catch(shown((e) => console.error(e)));
  }
  function redrawAll() { state.panels.forEach((p) => p.data && build(p)); }
  state.refetch = refetchAll;
  refetchAll();
  return state;
}

// Keys worth a panel: numeric, logged by the user (not _-prefixed), at most `n`.
function chartKeys(summary, n) {
  return Object.entries(summary.keys).filter(([k, s]) => !k.startsWith("_") && s.mean !== undefined)
    .map(([k]) => k).slice(0, n);
}

// ---------- run (or version) page ----------
async function runPage(main, ref) {
  const [v, tree] = await Promise.all([api("version", { ref }), api("lineage", { ref })]);
  const byId = new Map(tree.versions.map((x) => [x.id, x]));
  const head = document.createDocumentFragment();
  head.append(h("h2", { id: "title" }, v.run, " ", h("span", { class: "mono" }, v.id), " ", copyButton(v.id), " ", badge(v.status)));
  if (v.how) head.append(h("p", { id: "how" }, howLinks(v)));
  head.append(h("p", { class: "muted", id: "counts" }, `${fmtInt(v.summary.rows)} rows, last step ${fmtInt(v.summary.last_step)}` +
    (v.step !== null ? ` (read up to step ${fmtInt(v.step)})` : "") + ` · streams: ${v.streams.join(", ")}` +
    ` · created ${new Date(v.created * 1000).toLocaleString()}`));
  main.append(head);
  if (WRITE && v.status !== "archived" && v.status !== "purged") main.append(writeForms(v));

  // Lines: this version, then the rest of its lineage (nearest first), at most MAX_LINES.
  const focusChain = chainOf(byId, v.id);
  const others = tree.versions.filter((x) => x.id !== v.id && x.status !== "purged");
  const inChain = new Set(focusChain.map((c) => c.id));
  others.sort((a, b) => (inChain.has(b.id) - inChain.has(a.id)) || (idNum(b.id) - idNum(a.id)));
  const chosen = new Set(others.slice(0, MAX_LINES - 1).map((x) => x.id));
  const chartBox = h("section", { id: "chart-section" }, h("h3", {}, "Charts"));
  const cols = h("div", { class: "cols" });
  main.append(chartBox, cols);
  let chart = null;
  function drawCharts() {
    chartBox.querySelectorAll(".toolbar, .grid").forEach((e) => e.remove());
    const lines = [{ ref: lines0(v, ref), label: `${v.run} ${v.id}`, from: 0, color: COLORS[0], dashed: false }];
    const markers = [];
    let ci = 1;
    for (const x of others) {
      if (!chosen.has(x.id)) continue;
      const div = divergence(chainOf(byId, x.id), focusChain);
      if (div === Infinity) continue;
      lines.push({ ref: x.id, label: `${x.run} ${x.id}${x.status === "archived" ? " (archived)" : ""}`,
        from: Math.max(0, div - 1), color: COLORS[ci++ % COLORS.length], dashed: x.status === "archived" });
      markers.push({ step: Math.max(0, div - 1), label: x.status === "archived" ? `rewind (${x.id} archived)` : `fork ${x.run}` });
    }
    if (v.parent && !chosen.has(v.parent)) markers.push({ step: v.parent_step, label: `${v.origin} from ${v.parent}` });
    chart = charts(chartBox, lines, chartKeys(v.summary, 24), { markers });
  }
  drawCharts();

  cols.append(section("Config", configTable(v.config)), section("Summary", summaryTable(v.summary)));
  main.append(section("Lineage", lineageTree(tree, v.id, chosen, () => { leaveCharts(); drawCharts(); })));
  if (v.streams.includes("console")) main.append(section("Console", consoleView(v, byId)));
  if (v.streams.includes("system")) main.append(section("System", rowsTable(v.id, "system")));
  function leaveCharts() { if (chart) chart.panels.forEach((p) => p.plot && p.plot.destroy()); }

  // Live: a run being written is polled (one small request per period, none while one is
  // in flight); when its last step moves, only its own line is re-read (archived versions
  // cannot change), and the page is drawn anew when it logs a new key or stops.
  if (v.status === "running") {
    let last = v.summary.last_step, busy = false;
    const keys = chartKeys(v.summary, 24).join("\n");
    const gen = generation;
    const timer = setInterval(async () => {
      if (busy) return;
      busy = true;
      try {
        const s = (await api("state", { ref })).states[0];
        if (s.error || (s.last_step === last && s.status === "running")) return;
        last = s.last_step;
        document.getElementById("counts").textContent = `${fmtInt(s.rows)} rows, last step ${fmtInt(s.last_step)} · ${s.status}`;
        const now = await api("version", { ref });
        if (s.status !== "running" || chartKeys(now.summary, 24).join("\n") !== keys) {
          clearInterval(timer);
          if (gen === generation) route();
          return;
        }
        if (chart && chart.to === null) await chart.refetch(new Set([lines0(v, ref)]));
      } catch (e) { /* the next poll tries again */ } finally { busy = false; }
    }, POLL_MS);
    teardown.push(() => clearInterval(timer));
  }
}
const idNum = (id) => +id.slice(1);
// The reference the page's own line reads: the version, cut at the step the page was
// opened with (`NAME?_step=S`), if any.
function lines0(v, ref) { return v.step !== null && v.step !== undefined ? `${v.id}?_step=${v.step}` : v.id; }
function section(title, content) { return h("section", {}, h("h3", {}, title), content); }
function howLinks(v) {
  // "rewound from v1 at step 1,799" with v1 a link to the archived version.
  const word = v.origin === "fork" ? "forked from " : v.origin === "rewind" ? "rewound from " : "restarted from ";
  const target = v.parent || v.restart_of;
  return [word, h("a", { href: runHref(target) }, target), v.parent ? ` at step ${fmtInt(v.parent_step)}` : " (keeping no row)"];
}
function configTable(config) {
  const rows = flatten(config, "", []).map(([k, val]) => h("tr", {}, h("td", { class: "mono" }, k), h("td", {}, fmtVal(typeof val === "object" ? JSON.stringify(val) : val))));
  return rows.length ? h("table", { id: "config" }, h("tbody", {}, rows)) : h("p", { class: "muted" }, "no config");
}
function summaryTable(s) {
  const cols = ["last", "min", "max", "mean", "count"];
  const rows = Object.entries(s.keys).map(([k, ks]) => h("tr", { "data-key": k }, h("td", { class: "mono" }, k),
    h("td", { class: "muted" }, ks.kind || ""),
    cols.map((c) => h("td", { class: "num", title: ks[c + "_step"] !== undefined && ks[c + "_step"] !== null ? "step " + ks[c + "_step"] : "" }, fmtVal(ks[c]))),
    h("td", { class: "num" }, fmtInt(ks.last_step))));
  return h("table", { id: "summary" }, h("thead", {}, h("tr", {}, h("th", {}, "key"), h("th", {}, "kind"),
    cols.map((c) => h("th", {}, c)), h("th", {}, "last step"))), h("tbody", {}, rows));
}
function lineageTree(tree, focus, chosen, changed) {
  const shown = tree.versions.slice(0, 2000);
  const nodes = shown.map((x) => h("div", { class: "node" + (x.id === focus ? " focus" : ""), "data-version": x.id,
    style: `padding-left:${Math.min(x.depth, 40) * 18}px` },
    x.depth ? "└ " : "", h("a", { href: runHref(x.id), class: "mono" }, x.id), " ", copyButton(x.id), " ",
    h("a", { href: runHref(x.run) }, x.run), " ", badge(x.status), " ",
    x.how ? h("span", { class: "muted" }, howLinks(x)) : h("span", { class: "muted" }, "new run"),
    " · ", x.damage ? h("span", { class: "error" }, x.damage) : `${fmtInt(x.rows)} rows, last step ${fmtInt(x.last_step)}`,
    x.id === focus ? null : h("label", { class: "muted" }, " ", h("input", { type: "checkbox", checked: chosen.has(x.id),
      onchange: (e) => { e.target.checked ? chosen.add(x.id) : chosen.delete(x.id); changed(); } }), "chart")));
  const more = tree.versions.length > shown.length ? h("p", { class: "muted" }, `${fmtInt(tree.versions.length - shown.length)} more versions not shown`) : null;
  return h("div", { class: "tree", id: "lineage" }, nodes, more);
}
// The console, with a line where the version's rows start coming from another version.
function consoleView(v, byId) {
  const box = h("div", { class: "console", id: "console" });
  const chain = chainOf(byId, v.id);
  let next = { from: 0, skip: 0 }, lastStep = -1;
  let loading = false;
  const more = h("button", { onclick: () => { if (!loading) show(); } }, "more");
  const show = () => {
    loading = true;
    load().catch(shown((e) => box.append(h("div", { class: "error" }, e.message)))).finally(() => { loading = false; });
  };
  async function load() {
    const page = await api("rows", { ref: v.id, stream: "console", from: next.from, skip: next.skip,
      to: v.step ?? undefined, limit: 500 });
    for (const r of page.rows) {
      for (const [i, c] of chain.entries()) {
        if (i > 0 && lastStep < c.lo && r.step >= c.lo) {
          const prev = chain[i - 1], self = byId.get(c.id);
          box.append(h("div", { class: "cut" }, `${c.id} continues ${prev.id} after step ${fmtInt(c.lo - 1)}` +
            (self && self.origin === "fork" ? " (forked)" : ` (rewound: ${prev.id}'s later lines are archived)`)));
        }
      }
      lastStep = r.step;
      const text = Object.entries(r.values).map(([k, val]) => (k === "text" || k === "line" ? "" : k + "=") + fmtVal(val)).join(" ");
      box.append(h("div", {}, h("span", { class: "step" }, fmtInt(r.step)), text));
    }
    next = page.next;
    more.hidden = !next;
  }
  show();
  return h("div", {}, box, more);
}
function rowsTable(ref, stream) {
  const box = h("div", {});
  api("rows", { ref, stream, limit: 200 }).then((page) => {
    const keys = [...new Set(page.rows.flatMap((r) => Object.keys(r.values)))];
    box.append(h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "step"), keys.map((k) => h("th", {}, k)))),
      h("tbody", {}, page.rows.map((r) => h("tr", {}, h("td", { class: "num" }, fmtInt(r.step)), keys.map((k) => h("td", { class: "num" }, fmtVal(r.values[k]))))))));
    if (page.next) box.append(h("p", { class: "muted" }, "first 200 rows shown"));
  }, (e) => box.append(h("p", { class: "error" }, e.message)));
  return box;
}
function writeForms(v) {
  const msg = h("span", { id: "write-result" });
  const rewindStep = h("input", { type: "number", min: "0", id: "rewind-step", placeholder: "step" });
  const forkStep = h("input", { type: "number", min: "0", id: "fork-step", placeholder: "step" });
  const forkName = h("input", { type: "text", id: "fork-name", placeholder: "new run name" });
  const step = (input) => {
    const t = input.value.trim();
    if (!/^[0-9]+$/.test(t)) throw new Error("give the step, a whole number");
    return Number(t);
  };
  const act = (f) => async () => {
    try {
      const r = await f();
      const target = runHref(r.run);
      if (location.hash === target) route(); else location.hash = target;
    } catch (e) { if (!(e instanceof Stale)) { msg.textContent = e.message; msg.className = "error"; } }
  };
  return h("div", { class: "toolbar", id: "write" },
    h("button", { id: "rewind", onclick: act(() => post("rewind", { run: v.run, step: step(rewindStep) })) }, "Rewind to step"), rewindStep,
    h("button", { id: "fork", onclick: act(() => post("fork", { from: v.id, step: step(forkStep), name: forkName.value })) }, "Fork at step"), forkStep, forkName, msg);
}

// ---------- compare page ----------
async function comparePage(main, refs) {
  if (!refs.length) { main.append(h("p", {}, "No runs selected: tick runs in the ", h("a", { href: "#/" }, "runs table"), ".")); return; }
  const infos = await Promise.all(refs.map((r) => api("version", { ref: r })));
  const trees = await Promise.all(refs.map((r) => api("lineage", { ref: r })));
  const byId = new Map(trees.flatMap((t) => t.versions).map((x) => [x.id, x]));
  // Parents first, so a fork is drawn from its branch step off its source's line.
  const order = infos.map((v, i) => i).sort((a, b) => idNum(infos[a].id) - idNum(infos[b].id));
  const lines = [], markers = [], drawn = [];
  let ci = 0;
  for (const i of order) {
    const v = infos[i];
    const chain = chainOf(byId, v.id);
    const from = drawn.reduce((m, d) => { const x = divergence(chain, d); return x === Infinity ? m : Math.max(m, x - 1); }, 0);
    const color = COLORS[ci++ % COLORS.length];
    lines.push({ ref: v.id, label: `${v.run} ${v.id}`, from, color, dashed: false });
    if (from > 0) markers.push({ step: from, label: "fork " + v.run });
    drawn.push(chain);
    // The run's archived versions, dashed, from where they left its head.
    const archived = trees[i].versions.filter((x) => x.run === v.run && x.status === "archived").slice(-3);
    for (const a of archived) {
      const div = divergence(chainOf(byId, a.id), chain);
      if (div === Infinity) continue;
      lines.push({ ref: a.id, label: `${a.run} ${a.id} (archived)`, from: Math.max(0, div - 1), color, dashed: true });
      markers.push({ step: Math.max(0, div - 1), label: "rewind " + a.id });
    }
    if (lines.length >= MAX_LINES) break;
  }
  const keys = [...new Set(infos.flatMap((v) => chartKeys(v.summary, 24)))].slice(0, 24);
  main.append(h("h2", {}, "Compare ", refs.length, " runs"));
  main.append(h("p", {}, infos.map((v, i) => [i ? ", " : "", h("a", { href: runHref(v.run) }, v.run)])));
  const box = h("section", {});
  main.append(box);
  charts(box, lines.slice(0, MAX_LINES), keys, { markers });
}

route();
