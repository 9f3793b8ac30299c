// The report's script, inlined into index.html by write_report (study/report.cpp). It reads the
// page's data from the JSON script element (id "data") and builds every section from it.
//
// Corpus text (tokens, explanations, SAE names, steering samples) reaches the page through
// textContent only, never innerHTML, so no token can become markup. The one innerHTML is the
// trade-off plot: an SVG saelab wrote itself, its labels escaped when written.
//
// The pure helpers come first and touch no DOM: Node loads this file for tests/js/report.test.js
// (module.exports at the end), and the page is wired up only where a document exists.
"use strict";

// ---------------------------------------------------------------------------------------------
// Pure helpers

/** x with `digits` decimals, or "-" where x is missing or not a finite number. */
function formatNumber(x, digits) {
  return typeof x === "number" && Number.isFinite(x) ? x.toFixed(digits) : "-";
}

/** The overview table's columns: [field of an eval.json row, heading, decimals or null for text]. */
const OVERVIEW_COLUMNS = [
  ["name", "SAE", null],
  ["architecture", "arch", null],
  ["hook", "hook", null],
  ["hook_out", "writes", null],
  ["l0", "L0", 1],
  ["fvu", "FVU", 3],
  ["loss_recovered_vs_zero", "loss rec.", 3],
  ["loss_recovered_saelens", "loss rec. (SAELens)", 3],
  ["kl", "KL", 3],
  ["kl_div_score", "KL score", 3],
  ["absorption_rate", "absorption", 3],
  ["dead_fraction", "dead %", 1],
  ["interp_score", "align r", 3],
  ["interp_precision", "rule prec.", 2],
  ["interp_recall", "rule rec.", 2],
];

/** The text of one overview cell (undefined leaves the cell empty); dead_fraction shows as percent. */
function overviewCell(row, column) {
  const [field, , digits] = column;
  let value = row[field];
  if (field === "dead_fraction" && typeof value === "number") value = 100 * value;
  return digits === null ? value : formatNumber(value, digits);
}

/** The overview's sort after a click on `key`'s heading: the same key flips direction, another sorts ascending. */
function nextSortState(state, key) {
  return { key: key, dir: state.key === key ? -state.dir : 1 };
}

/** A sorted copy of the overview rows by `key`, ascending for dir 1 and descending for -1; ties keep their order. */
function sortRows(rows, key, dir) {
  return rows.slice().sort(function (a, b) {
    const x = a[key];
    const y = b[key];
    return (x < y ? -1 : x > y ? 1 : 0) * dir;
  });
}

/**
 * The bars of one density histogram ({counts: [n], log10_edges: [n + 1]}) in a 170 x 60 box: bar i
 * is 9 wide at x = 5 + 11 i, its height 50 * count / (largest count, at least 1), standing on y = 52.
 */
function histogramBars(histogram) {
  const counts = histogram.counts;
  const edges = histogram.log10_edges;
  const tallest = Math.max(1, ...counts);
  return counts.map(function (count, i) {
    const height = (50 * count) / tallest;
    return {
      x: 5 + i * 11,
      y: 52 - height,
      width: 9,
      height: height,
      title: edges[i] + " … " + edges[i + 1] + ": " + count,
    };
  });
}

/**
 * The axes of a density histogram drawn by histogramBars: the baseline at y = 53, a tick and label
 * at every whole log10 edge, the caption under them, and the tallest bar's count at the top left.
 * Returns [{tag, attrs, text?}] for the page to draw (SVG elements; text through textContent).
 */
function histogramAxis(histogram) {
  const edges = histogram.log10_edges;
  const counts = histogram.counts;
  const right = 5 + counts.length * 11 - 2;
  const parts = [{ tag: "line", attrs: { x1: 5, y1: 53, x2: right, y2: 53, stroke: "#555" } }];
  edges.forEach(function (edge, i) {
    if (!Number.isInteger(edge) || edge % 2 === 0) return;  // every other whole power: -7, -5, -3, -1
    const x = 5 + i * 11 - 1;
    parts.push({ tag: "line", attrs: { x1: x, y1: 53, x2: x, y2: 57, stroke: "#555" } });
    parts.push({ tag: "text", attrs: { x: x, y: 67, "font-size": 9, "text-anchor": "middle", fill: "#555" }, text: String(edge) });
  });
  parts.push({ tag: "text", attrs: { x: 85, y: 80, "font-size": 9, "text-anchor": "middle", fill: "#555" },
               text: "log10 firing frequency" });
  parts.push({ tag: "text", attrs: { x: 5, y: 9, "font-size": 9, fill: "#555" },
               text: "max " + Math.max(0, ...counts) + " latents" });
  return parts;
}

/**
 * A feature's activation histogram ({max, counts: [n], exact}) as SVG parts in a 260 x 90 box: bar i
 * spans activations (i, i + 1] * max / n, at x = 30 + 220 i / n, its height 60 * count / (largest
 * count, at least 1), standing on y = 66; the baseline, the activation scale (0 and max) under it,
 * the largest count at the left, and whether the counts are exact or estimated from a sample.
 */
function activationHistogram(h) {
  const n = h.counts.length;
  const tallest = Math.max(1, ...h.counts);
  const width = n > 0 ? 220 / n : 0;
  const parts = [];
  h.counts.forEach(function (count, i) {
    const height = (60 * count) / tallest;
    const lo = (i * h.max) / n, hi = ((i + 1) * h.max) / n;
    parts.push({ tag: "rect", attrs: { x: 30 + i * width, y: 66 - height, width: Math.max(0, width - 1), height: height, fill: "#e07b00" },
                 title: formatNumber(lo, 2) + " … " + formatNumber(hi, 2) + ": " + formatNumber(count, count % 1 === 0 ? 0 : 1) });
  });
  parts.push({ tag: "line", attrs: { x1: 30, y1: 66, x2: 250, y2: 66, stroke: "#555" } });
  parts.push({ tag: "text", attrs: { x: 30, y: 78, "font-size": 9, fill: "#555" }, text: "0" });
  parts.push({ tag: "text", attrs: { x: 250, y: 78, "font-size": 9, "text-anchor": "end", fill: "#555" }, text: formatNumber(h.max, 2) });
  parts.push({ tag: "text", attrs: { x: 140, y: 88, "font-size": 9, "text-anchor": "middle", fill: "#555" },
               text: "activation" + (h.exact ? "" : " (counts estimated from a sample of the firings)") });
  parts.push({ tag: "text", attrs: { x: 26, y: 10, "font-size": 9, "text-anchor": "end", fill: "#555" }, text: formatNumber(tallest, 0) });
  return parts;
}

/**
 * The highlight colour of a token with activation `a` in a feature whose largest activation is
 * `max`: orange with opacity 0.85 * a / max, clamped to [0, 0.85]; 0 where a or max is not a
 * positive number.
 */
function activationColor(a, max) {
  let t = max > 0 ? Math.max(0, Math.min(1, a / max)) : 0;
  if (Number.isNaN(t)) t = 0;
  return "rgba(255,120,0," + (0.85 * t).toFixed(3) + ")";
}

/**
 * Whether a feature matches the browser's search text, ignoring case: an empty query matches
 * everything; otherwise the explanation contains the query, or the query (trimmed) equals the
 * firing token (offset 0) of a top example or a promoted token (each trimmed).
 */
function matchesQuery(feature, query) {
  const q = String(query || "").toLowerCase();
  if (!q) return true;
  if ((feature.explanation || "").toLowerCase().includes(q)) return true;
  const token = q.trim();
  const same = function (text) {
    return String(text).toLowerCase().trim() === token;
  };
  const firesOn = (feature.top || []).some(function (example) {
    return example.tokens.some(function (t) {
      return t[0] === 0 && same(t[1]);
    });
  });
  return firesOn || (feature.promoted || []).some(function (p) {
    return same(p[0]);
  });
}

/** The features that match the search text, in their order. */
function filterFeatures(features, query) {
  return features.filter(function (f) {
    return matchesQuery(f, query);
  });
}

/**
 * A sorted copy of the features: by "id" ascending, by any other key ("score", "density")
 * descending, a feature without that number (or with a non-number) counting as -1. The sort is
 * stable: ties keep the report's order (explained features by score, then the most frequent).
 */
function sortFeatures(features, key) {
  const value = function (f) {
    const v = f[key];
    return typeof v === "number" && !Number.isNaN(v) ? v : -1;
  };
  return features.slice().sort(function (a, b) {
    if (key === "id") return a.id - b.id;
    return value(b) - value(a);
  });
}

/** One line of the feature list: "#id  explanation  (density%, score s)". */
function featureLabel(f) {
  const score = f.score !== undefined ? ", score " + formatNumber(f.score, 2) : "";
  return "#" + f.id + "  " + (f.explanation || "") + "  (" + formatNumber(100 * f.density, 2) + "%" + score + ")";
}

/** The statistics line of a feature page. */
function featureStats(f) {
  return (
    "density " + formatNumber(100 * f.density, 3) + "%, mean activation " + formatNumber(f.mean, 2) +
    ", max " + formatNumber(f.max, 2)
  );
}

/** The explanation line of a feature page: the rule, its annotation-alignment r, precision and recall. */
function explanationText(f) {
  if (f.scorable === false) return "explanation: " + f.explanation + "  (not scored: the feature fires in one half only)";
  const pr = f.precision !== undefined
    ? ", precision " + formatNumber(f.precision, 2) + ", recall " + formatNumber(f.recall, 2) : "";
  return "explanation: " + f.explanation + "  (alignment r " + formatNumber(f.score, 3) + pr + ")";
}

/** Consecutive examples of the same quantile band, grouped: [{band, examples}], in their order. */
function groupByBand(examples) {
  const groups = [];
  for (const e of examples) {
    if (!groups.length || groups[groups.length - 1].band !== e.band) groups.push({ band: e.band, examples: [] });
    groups[groups.length - 1].examples.push(e);
  }
  return groups;
}

/** The location hash that opens a feature page. */
function featureHash(sae, id) {
  return "#f=" + encodeURIComponent(sae) + ":" + id;
}

/** {sae, id} of a feature hash ("#f=<encoded sae>:<id>"), or null where the hash is not one. */
function parseFeatureHash(hash) {
  const m = /^#f=([^:]*):(\d+)$/.exec(hash);
  if (!m) return null;
  try {
    return { sae: decodeURIComponent(m[1]), id: Number(m[2]) };
  } catch (e) {
    return null;  // a malformed %-escape
  }
}

/** The steering results of one feature. */
function steeringFor(steering, sae, id) {
  return ((steering && steering.results) || []).filter(function (s) {
    return s.sae === sae && s.feature === id;
  });
}

/** The lines of one steering result: the unsteered sample, then one per strength (alpha, or c in clamp mode). */
function steeringLines(s) {
  const label = s.mode === "clamp" ? "c " : "alpha ";
  const rows = [["unsteered", s.unsteered]].concat(
    s.steered.map(function (x) {
      return [label + x.alpha, x];
    })
  );
  return rows.map(function (r) {
    const [label, sample] = r;
    return (
      label + " (activation " + formatNumber(sample.feature_activation, 2) + ", promoted share " +
      formatNumber(100 * sample.promoted_share, 1) + "%): " + sample.text
    );
  });
}

// ---------------------------------------------------------------------------------------------
// The page

/** A new element with `text` as its textContent (never parsed as HTML) and the given attributes. */
function el(tag, text, attrs) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (attrs) {
    for (const k in attrs) e.setAttribute(k, attrs[k]);
  }
  return e;
}

const SVG_NS = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const k in attrs) e.setAttribute(k, String(attrs[k]));
  return e;
}

// Script errors are recorded in the body element's data-errors attribute, where the headless
// browser tests (tests/pipeline_test.cpp) read them.
function recordErrors() {
  window.reportErrors = [];
  window.addEventListener("error", function (e) {
    window.reportErrors.push(String(e.message));
    document.body.setAttribute("data-errors", window.reportErrors.join("; "));
  });
}

function drawOverview(D, sort) {
  const table = document.getElementById("overview");
  table.textContent = "";
  const header = el("tr");
  for (const c of OVERVIEW_COLUMNS) {
    const th = el("th", c[1]);
    th.onclick = function () {
      drawOverview(D, nextSortState(sort, c[0]));
    };
    header.appendChild(th);
  }
  table.appendChild(header);
  for (const row of sortRows(D.saes, sort.key, sort.dir)) {
    const tr = el("tr", null, { class: "sae-row" });
    for (const c of OVERVIEW_COLUMNS) tr.appendChild(el("td", overviewCell(row, c)));
    table.appendChild(tr);
  }
}

function drawHistograms(D) {
  const box = document.getElementById("hists");
  for (const r of D.saes) {
    const item = el("div", null, { class: "hist" });
    item.appendChild(el("div", r.name, { class: "muted" }));
    const svg = svgEl("svg", { width: 170, height: 84, class: "histogram" });
    for (const bar of histogramBars(r.density_histogram)) {
      const rect = svgEl("rect", { x: bar.x, y: bar.y, width: bar.width, height: bar.height, fill: "#4a78c2" });
      const title = document.createElementNS(SVG_NS, "title");
      title.textContent = bar.title;
      rect.appendChild(title);
      svg.appendChild(rect);
    }
    for (const part of histogramAxis(r.density_histogram)) {
      const node = svgEl(part.tag, part.attrs);
      if (part.text !== undefined) node.textContent = part.text;
      svg.appendChild(node);
    }
    item.appendChild(svg);
    item.appendChild(el("div", "dead: " + formatNumber(100 * r.dead_fraction, 1) + "%", { class: "muted" }));
    box.appendChild(item);
  }
}

// One context: its activation, then each token highlighted by its activation; the token the
// example is about (offset 0) is outlined.
function exampleEl(e, max) {
  const d = el("div", null, { class: "ex" });
  d.appendChild(el("span", formatNumber(e.act, 2) + "  ", { class: "muted" }));
  for (const t of e.tokens) {
    const [offset, text, activation] = t;
    const s = el("span", text, { class: "tok", title: formatNumber(activation, 3) });
    s.style.background = activationColor(activation, max);
    if (offset === 0) s.style.outline = "1px solid #c60";
    d.appendChild(s);
  }
  return d;
}

function steeringEl(s) {
  const d = el("div");
  d.appendChild(el("div", "prompt: " + s.prompt, { class: "muted" }));
  for (const line of steeringLines(s)) d.appendChild(el("div", line, { class: "ex" }));
  return d;
}

// Whether feature `id` of `sae` has a page in this report (the report holds a selection of each
// SAE's features; the live server has every one).
function inReport(D, sae, id) {
  return (D.features[sae] || []).some(function (x) {
    return x.id === id;
  });
}

// What to say of a feature the report leaves out: what the report holds and where the rest is.
function notInReportText(D, sae, id) {
  const held = (D.features[sae] || []).length;
  return "feature " + id + " of " + sae + " is not in this report, which holds " + held +
    " of each SAE's features (the explained ones by score, then the most frequent); " +
    "saelab serve --study " + (D.study || "DIR") + " shows every feature";
}

// A feature's page body from its record (the JSON FeatureRecords writes, in the report and from
// saelab serve's /api/features alike): stats, explanation, top activations, quantile samples,
// promoted and suppressed tokens, and the related features of the neighbouring layers, each drawn
// by relatedEl(sae, feature) (a link, or a note where the page cannot show it). Shared by the report
// and the server's feature page.
function featureBody(f, relatedEl) {
  const box = document.createDocumentFragment();
  box.appendChild(el("p", featureStats(f), { id: "stats" }));
  if (f.explanation !== undefined && f.explanation !== null) box.appendChild(el("p", explanationText(f), { id: "explanation" }));

  if (f.histogram && f.histogram.counts && f.histogram.counts.length) {
    box.appendChild(el("h4", "Activation histogram"));
    const svg = svgEl("svg", { width: 260, height: 92, id: "activation-histogram" });
    for (const part of activationHistogram(f.histogram)) {
      const node = svgEl(part.tag, part.attrs);
      if (part.text !== undefined) node.textContent = part.text;
      if (part.title !== undefined) {
        const title = document.createElementNS(SVG_NS, "title");
        title.textContent = part.title;
        node.appendChild(title);
      }
      svg.appendChild(node);
    }
    box.appendChild(svg);
  }

  box.appendChild(el("h4", "Top activations"));
  const top = el("div", null, { id: "top" });
  for (const e of f.top || []) top.appendChild(exampleEl(e, f.max));
  box.appendChild(top);
  box.appendChild(el("h4", "Quantile samples"));
  const quantiles = el("div", null, { id: "quantiles" });
  for (const group of groupByBand(f.quantiles || [])) {
    quantiles.appendChild(el("div", "band " + group.band, { class: "muted" }));
    for (const e of group.examples) quantiles.appendChild(exampleEl(e, f.max));
  }
  box.appendChild(quantiles);

  const logits = el("div", null, { class: "cols", id: "logits" });
  for (const dir of ["promoted", "suppressed"]) {
    const column = el("div");
    column.appendChild(el("h4", dir + " tokens"));
    const table = el("table");
    for (const p of f[dir] || []) {
      const tr = el("tr");
      tr.appendChild(el("td", JSON.stringify(p[0])));  // quoted, so spaces and newlines show
      tr.appendChild(el("td", formatNumber(p[1], 3)));
      table.appendChild(tr);
    }
    column.appendChild(table);
    logits.appendChild(column);
  }
  box.appendChild(logits);
  if (f.logit_note) box.appendChild(el("p", f.logit_note, { class: "muted", id: "logit-note" }));

  for (const rel of ["previous", "next"]) {
    if (!f[rel] || !f[rel].length) continue;
    box.appendChild(el("h4", rel + "-layer features"));
    const table = el("table", null, { class: "related" });
    for (const r of f[rel]) {
      const tr = el("tr");
      tr.appendChild(el("td")).appendChild(relatedEl(r.sae, r.feature));
      tr.appendChild(el("td", r.kind));
      tr.appendChild(el("td", formatNumber(r.weight, 3)));
      table.appendChild(tr);
    }
    box.appendChild(table);
  }
  return box;
}

function showFeature(D, sae, id) {
  const box = document.getElementById("feature");
  box.textContent = "";
  const f = (D.features[sae] || []).find(function (x) {
    return x.id === id;
  });
  if (!f) {
    box.appendChild(el("p", notInReportText(D, sae, id)));
    return;
  }
  box.appendChild(el("h3", sae + " — feature " + f.id, { id: "feature-title" }));
  box.appendChild(featureBody(f, function (s, feature) {
    if (inReport(D, s, feature)) return el("a", s + " #" + feature, { href: featureHash(s, feature) });
    return el("span", s + " #" + feature + " (not in this report: saelab serve)",
      { class: "muted", title: notInReportText(D, s, feature) });
  }));
  for (const s of steeringFor(D.steering, sae, id)) {
    box.appendChild(el("h4", "Steering"));
    box.appendChild(steeringEl(s));
  }
}

function startBrowser(D) {
  const saeSelect = document.getElementById("sae");
  const search = document.getElementById("search");
  const sortSelect = document.getElementById("sort");
  for (const name of Object.keys(D.features)) saeSelect.appendChild(el("option", name, { value: name }));

  function drawList() {
    const sae = saeSelect.value;
    const box = document.getElementById("list");
    box.textContent = "";
    const shown = sortFeatures(filterFeatures(D.features[sae] || [], search.value), sortSelect.value);
    for (const f of shown) {
      const item = el("div", featureLabel(f), { class: "feature-item" });
      item.onclick = function () {
        location.hash = featureHash(sae, f.id);
      };
      box.appendChild(item);
    }
  }

  function route() {
    const target = parseFeatureHash(location.hash);
    if (!target) return;
    if (D.features[target.sae]) {
      saeSelect.value = target.sae;
      drawList();
    }
    showFeature(D, target.sae, target.id);
  }

  saeSelect.onchange = drawList;
  search.oninput = drawList;
  sortSelect.onchange = drawList;
  window.addEventListener("hashchange", route);
  drawList();
  if (location.hash) {
    route();
  } else {
    const first = Object.keys(D.features)[0];
    if (first && D.features[first].length) showFeature(D, first, D.features[first][0].id);
  }
}

function drawSteering(D) {
  const box = document.getElementById("steering");
  for (const s of (D.steering && D.steering.results) || []) {
    box.appendChild(el("h4", s.sae + " — feature " + s.feature));
    box.appendChild(steeringEl(s));
  }
}

function startReport() {
  recordErrors();
  const D = JSON.parse(document.getElementById("data").textContent);
  document.title = D.title;
  document.getElementById("title").textContent = D.title;
  drawOverview(D, { key: "name", dir: 1 });
  document.getElementById("conventions").textContent = (D.notes || []).join(" ");
  document.getElementById("plot").innerHTML = D.plot;  // saelab's own SVG, labels escaped when written
  drawHistograms(D);
  startBrowser(D);
  drawSteering(D);
  document.body.setAttribute("data-rendered", "yes");
}

// The report draws itself where its data is; saelab serve's page loads this file for its helpers.
if (typeof document !== "undefined" && document.getElementById("data")) startReport();

if (typeof module === "object" && module !== null && typeof module.exports === "object") {
  module.exports = {
    OVERVIEW_COLUMNS,
    formatNumber,
    overviewCell,
    nextSortState,
    sortRows,
    histogramBars,
    histogramAxis,
    activationHistogram,
    activationColor,
    matchesQuery,
    filterFeatures,
    sortFeatures,
    featureLabel,
    featureStats,
    explanationText,
    groupByBand,
    featureHash,
    parseFeatureHash,
    steeringFor,
    steeringLines,
    inReport,
    notInReportText,
  };
}
