// The report page's pure helpers (study/assets/report.js), loaded in Node without a DOM.
// Run: node --test tests/js/report.test.js (ctest: ReportJs.NodeTests). Expected values are
// worked out by hand from the rules each helper's comment states.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");

const report = require(path.join(__dirname, "..", "..", "study", "assets", "report.js"));

// Three features as write_report embeds them, in the report's order.
function features() {
  return [
    {
      id: 3,
      density: 0.02,
      score: 0.9,
      explanation: "Articles",
      top: [{ act: 2.0, tokens: [[-1, " of", 0.1], [0, " The", 2.0]] }],
      promoted: [[" cat", 1.2]],
    },
    {
      id: 1,
      density: 0.1,
      score: 0.5,
      explanation: "Numbers and Digits",
      // " the" is in the context, but not the token the example is about (offset 0).
      top: [{ act: 1.0, tokens: [[0, "7", 1.0], [1, " the", 0.3]] }],
      promoted: [[" Dog", 0.9]],
    },
    {
      id: 2,
      density: 0.05,
      top: [{ act: 0.5, tokens: [[0, " and", 0.5]] }],
      promoted: [],
    },
  ];
}

const ids = (list) => list.map((f) => f.id);

test("loading the script without a document defines the helpers and touches no DOM", () => {
  assert.equal(typeof document, "undefined");
  for (const name of ["activationColor", "matchesQuery", "filterFeatures", "sortFeatures", "parseFeatureHash"]) {
    assert.equal(typeof report[name], "function", name);
  }
});

test("an empty or missing query matches every feature, in order", () => {
  assert.deepEqual(ids(report.filterFeatures(features(), "")), [3, 1, 2]);
  assert.deepEqual(ids(report.filterFeatures(features(), undefined)), [3, 1, 2]);
  assert.deepEqual(ids(report.filterFeatures(features(), null)), [3, 1, 2]);
  assert.deepEqual(report.filterFeatures([], "the"), []);
});

test("the query matches the firing token of a top example, ignoring case and surrounding spaces", () => {
  assert.deepEqual(ids(report.filterFeatures(features(), "THE")), [3]);
  assert.deepEqual(ids(report.filterFeatures(features(), "  the ")), [3]);
  // A token elsewhere in the context does not count: feature 1 has " the" at offset 1.
  assert.equal(report.matchesQuery(features()[1], "the"), false);
  // Tokens match whole, not by substring.
  assert.equal(report.matchesQuery(features()[0], "th"), false);
});

test("the query matches a promoted token, ignoring case and surrounding spaces", () => {
  assert.deepEqual(ids(report.filterFeatures(features(), " dog ")), [1]);
  assert.deepEqual(ids(report.filterFeatures(features(), "CAT")), [3]);
});

test("the query matches a substring of the explanation, ignoring case", () => {
  assert.deepEqual(ids(report.filterFeatures(features(), "digits")), [1]);
  assert.deepEqual(ids(report.filterFeatures(features(), "ARTIC")), [3]);
  // "an" is inside "Numbers and Digits"; feature 2's token " and" is not "an".
  assert.deepEqual(ids(report.filterFeatures(features(), "an")), [1]);
  // "and": feature 1 by its explanation, feature 2 by its firing token; the order is kept.
  assert.deepEqual(ids(report.filterFeatures(features(), "AND")), [1, 2]);
});

test("a query that nothing contains matches nothing", () => {
  assert.deepEqual(report.filterFeatures(features(), "zebra"), []);
});

test("a feature without examples, logit tokens or explanation is searched without error", () => {
  assert.equal(report.matchesQuery({ id: 9 }, "x"), false);
  assert.equal(report.matchesQuery({ id: 9 }, ""), true);
});

test("sorting by score is descending, a feature without a score last", () => {
  assert.deepEqual(ids(report.sortFeatures(features(), "score")), [3, 1, 2]);
});

test("sorting by density is descending", () => {
  assert.deepEqual(ids(report.sortFeatures(features(), "density")), [1, 2, 3]);
});

test("sorting by index is ascending", () => {
  assert.deepEqual(ids(report.sortFeatures(features(), "id")), [1, 2, 3]);
});

test("ties keep the report's order", () => {
  const tied = [
    { id: 8, score: 0.7, density: 0.1 },
    { id: 5, score: 0.7, density: 0.1 },
    { id: 6, score: 0.9, density: 0.1 },
  ];
  assert.deepEqual(ids(report.sortFeatures(tied, "score")), [6, 8, 5]);
  assert.deepEqual(ids(report.sortFeatures(tied, "density")), [8, 5, 6]);
  assert.deepEqual(ids(report.sortFeatures(tied, "id")), [5, 6, 8]);
});

test("a missing or NaN score counts as -1, below negative scores above -1", () => {
  const list = [{ id: 1, score: NaN }, { id: 2, score: -0.5 }, { id: 3 }, { id: 4, score: 0 }, { id: 5, score: null }];
  // Values 4: 0, 2: -0.5, then 1, 3 and 5 tied at -1 in their order.
  assert.deepEqual(ids(report.sortFeatures(list, "score")), [4, 2, 1, 3, 5]);
});

test("sorting returns a copy and leaves its input as it was", () => {
  const list = features();
  const sorted = report.sortFeatures(list, "density");
  assert.notEqual(sorted, list);
  assert.deepEqual(ids(list), [3, 1, 2]);
});

test("the activation colour is transparent at 0 and 0.85 opaque orange at the maximum", () => {
  assert.equal(report.activationColor(0, 2), "rgba(255,120,0,0.000)");
  assert.equal(report.activationColor(2, 2), "rgba(255,120,0,0.850)");
});

test("the activation colour's opacity is proportional in between", () => {
  assert.equal(report.activationColor(1, 2), "rgba(255,120,0,0.425)");  // 0.85 / 2
  assert.equal(report.activationColor(1, 5), "rgba(255,120,0,0.170)");  // 0.85 / 5
});

test("the activation colour clamps above the maximum and below 0", () => {
  assert.equal(report.activationColor(3, 2), "rgba(255,120,0,0.850)");
  assert.equal(report.activationColor(-1, 2), "rgba(255,120,0,0.000)");
});

test("the activation colour is transparent for a maximum that is not positive, and for NaN", () => {
  assert.equal(report.activationColor(1, 0), "rgba(255,120,0,0.000)");
  assert.equal(report.activationColor(1, -4), "rgba(255,120,0,0.000)");
  assert.equal(report.activationColor(NaN, 2), "rgba(255,120,0,0.000)");
  assert.equal(report.activationColor(1, NaN), "rgba(255,120,0,0.000)");
  assert.equal(report.activationColor(undefined, 2), "rgba(255,120,0,0.000)");
});

test("numbers are formatted with fixed decimals, anything else as a dash", () => {
  assert.equal(report.formatNumber(0.1234, 2), "0.12");
  assert.equal(report.formatNumber(27.35, 1), "27.4");
  assert.equal(report.formatNumber(2.5, 0), "3");
  assert.equal(report.formatNumber(0, 3), "0.000");
  assert.equal(report.formatNumber(-1.5, 1), "-1.5");
  assert.equal(report.formatNumber(undefined, 2), "-");
  assert.equal(report.formatNumber(null, 2), "-");
  assert.equal(report.formatNumber(NaN, 2), "-");
  assert.equal(report.formatNumber(Infinity, 2), "-");
  assert.equal(report.formatNumber("3", 2), "-");
});

test("overview cells: text as it is, numbers with the column's decimals, dead fraction in percent", () => {
  const row = { name: "blocks.0.input/topk-k16", l0: 27.34, dead_fraction: 0.125, fvu: 0.1234 };
  const column = (field) => report.OVERVIEW_COLUMNS.find((c) => c[0] === field);
  assert.equal(report.overviewCell(row, column("name")), "blocks.0.input/topk-k16");
  assert.equal(report.overviewCell(row, column("l0")), "27.3");
  assert.equal(report.overviewCell(row, column("fvu")), "0.123");
  assert.equal(report.overviewCell(row, column("dead_fraction")), "12.5");
  assert.equal(report.overviewCell(row, column("interp_score")), "-");
  assert.equal(report.overviewCell(row, column("hook")), undefined);
  assert.equal(report.overviewCell(row, column("hook_out")), undefined);  // an SAE writes the hook it reads: no cell
  assert.equal(report.overviewCell({ hook_out: "blocks.0.hook_mlp_out" }, column("hook_out")), "blocks.0.hook_mlp_out");
  assert.deepEqual(report.OVERVIEW_COLUMNS.map((c) => c[1]),
                   ["SAE", "arch", "hook", "writes", "L0", "FVU", "loss rec.", "loss rec. (SAELens)", "KL", "KL score", "absorption", "dead %",
                    "align r", "rule prec.", "rule rec."]);
});

test("a click on the sorted column flips its direction, on another column sorts it ascending", () => {
  assert.deepEqual(report.nextSortState({ key: "name", dir: 1 }, "name"), { key: "name", dir: -1 });
  assert.deepEqual(report.nextSortState({ key: "name", dir: -1 }, "name"), { key: "name", dir: 1 });
  assert.deepEqual(report.nextSortState({ key: "name", dir: -1 }, "l0"), { key: "l0", dir: 1 });
});

test("overview rows sort ascending or descending by numbers and by text, ties in order", () => {
  const rows = [
    { name: "b", l0: 16 },
    { name: "a", l0: 32 },
    { name: "c", l0: 16 },
  ];
  const names = (list) => list.map((r) => r.name);
  assert.deepEqual(names(report.sortRows(rows, "l0", 1)), ["b", "c", "a"]);
  assert.deepEqual(names(report.sortRows(rows, "l0", -1)), ["a", "b", "c"]);
  assert.deepEqual(names(report.sortRows(rows, "name", 1)), ["a", "b", "c"]);
  assert.deepEqual(names(report.sortRows(rows, "name", -1)), ["c", "b", "a"]);
  assert.deepEqual(names(rows), ["b", "a", "c"]);
});

test("histogram bars scale to the tallest count and stand on y = 52", () => {
  const bars = report.histogramBars({ counts: [0, 5, 10], log10_edges: [-3, -2, -1, 0] });
  assert.deepEqual(bars, [
    { x: 5, y: 52, width: 9, height: 0, title: "-3 … -2: 0" },
    { x: 16, y: 27, width: 9, height: 25, title: "-2 … -1: 5" },
    { x: 27, y: 2, width: 9, height: 50, title: "-1 … 0: 10" },
  ]);
});

test("histogram bars of empty bins are flat, and no bins give no bars", () => {
  assert.deepEqual(report.histogramBars({ counts: [0, 0], log10_edges: [-1, -0.5, 0] }).map((b) => b.height), [0, 0]);
  assert.deepEqual(report.histogramBars({ counts: [], log10_edges: [0] }), []);
});

test("histogram axes: a baseline, a labelled tick at every other whole power of ten, the caption and the tallest count", () => {
  const edges = [];
  for (let i = 0; i <= 14; ++i) edges.push(-7 + 0.5 * i);
  const counts = new Array(14).fill(0);
  counts[9] = 12;
  const parts = report.histogramAxis({ counts: counts, log10_edges: edges });
  assert.deepEqual(parts[0], { tag: "line", attrs: { x1: 5, y1: 53, x2: 157, y2: 53, stroke: "#555" } });
  const labels = parts.filter((p) => p.tag === "text").map((p) => p.text);
  assert.deepEqual(labels, ["-7", "-5", "-3", "-1", "log10 firing frequency", "max 12 latents"]);
  // Each label sits under its edge: edge -5 is edge index 4, at x = 5 + 4 * 11 - 1.
  const five = parts.find((p) => p.text === "-5");
  assert.equal(five.attrs.x, 48);
  assert.equal(parts.filter((p) => p.tag === "line").length, 5);
});

test("a feature's activation histogram: bars over (0, max], scaled to the tallest, with its scale and caption", () => {
  const parts = report.activationHistogram({ max: 4, counts: [2, 4, 0, 1], exact: true });
  const bars = parts.filter((p) => p.tag === "rect");
  assert.equal(bars.length, 4);
  assert.deepEqual(bars.map((b) => b.attrs.x), [30, 85, 140, 195]);
  assert.deepEqual(bars.map((b) => b.attrs.height), [30, 60, 0, 15]);
  assert.equal(bars[1].attrs.y, 6);
  assert.equal(bars[1].title, "1.00 … 2.00: 4");
  const texts = parts.filter((p) => p.tag === "text").map((p) => p.text);
  assert.deepEqual(texts, ["0", "4.00", "activation", "4"]);
  const estimated = report.activationHistogram({ max: 1, counts: [2.5], exact: false });
  assert.ok(estimated.some((p) => p.text === "activation (counts estimated from a sample of the firings)"));
  assert.equal(estimated[0].title, "0.00 … 1.00: 2.5");
});

test("feature list lines show id, explanation, density and score where there is one", () => {
  assert.equal(report.featureLabel(features()[0]), "#3  Articles  (2.00%, score 0.90)");
  assert.equal(report.featureLabel(features()[2]), "#2    (5.00%)");
  assert.equal(report.featureLabel({ id: 4, density: 0.5, score: null }), "#4    (50.00%, score -)");
});

test("feature pages show density in percent, mean and max, and the explanation with its score", () => {
  assert.equal(report.featureStats({ density: 0.0123, mean: 1.5, max: 3 }),
               "density 1.230%, mean activation 1.50, max 3.00");
  assert.equal(report.featureStats({}), "density -%, mean activation -, max -");
  assert.equal(report.explanationText({ explanation: "token ∈ {\" the\"}", score: 0.875 }),
               "explanation: token ∈ {\" the\"}  (alignment r 0.875)");
  assert.equal(report.explanationText({ explanation: "POS = nn", score: 0.5, precision: 0.25, recall: 1, scorable: true }),
               "explanation: POS = nn  (alignment r 0.500, precision 0.25, recall 1.00)");
  assert.equal(report.explanationText({ explanation: "POS = nn", score: 0, scorable: false }),
               "explanation: POS = nn  (not scored: the feature fires in one half only)");
});

test("quantile samples group by consecutive band", () => {
  const examples = [{ band: 0 }, { band: 0 }, { band: 1 }, { band: 3 }, { band: 3 }];
  assert.deepEqual(report.groupByBand(examples).map((g) => [g.band, g.examples.length]), [[0, 2], [1, 1], [3, 2]]);
  assert.deepEqual(report.groupByBand([]), []);
});

test("a feature hash encodes the SAE name and parses back", () => {
  assert.equal(report.featureHash("blocks.0.input/topk-k16", 7), "#f=blocks.0.input%2Ftopk-k16:7");
  assert.deepEqual(report.parseFeatureHash("#f=blocks.0.input%2Ftopk-k16:7"), { sae: "blocks.0.input/topk-k16", id: 7 });
  // The hostile SAE name of the browser test in tests/pipeline_test.cpp.
  assert.equal(report.featureHash("h/evil</script>", 0), "#f=h%2Fevil%3C%2Fscript%3E:0");
  assert.deepEqual(report.parseFeatureHash("#f=h%2Fevil%3C%2Fscript%3E:0"), { sae: "h/evil</script>", id: 0 });
});

test("a hash that is not a feature hash parses to null", () => {
  assert.equal(report.parseFeatureHash(""), null);
  assert.equal(report.parseFeatureHash("#f=sae:x"), null);
  assert.equal(report.parseFeatureHash("#f=sae:12abc"), null);
  assert.equal(report.parseFeatureHash("#f=sae:-1"), null);
  assert.equal(report.parseFeatureHash("#f=%E0%A4%A:1"), null);  // a malformed %-escape
});

test("steering results are picked by SAE and feature", () => {
  const steering = { results: [{ sae: "a", feature: 1 }, { sae: "b", feature: 1 }, { sae: "a", feature: 2 }] };
  assert.deepEqual(report.steeringFor(steering, "a", 1), [{ sae: "a", feature: 1 }]);
  assert.deepEqual(report.steeringFor(steering, "a", 3), []);
  assert.deepEqual(report.steeringFor(null, "a", 1), []);
  assert.deepEqual(report.steeringFor({}, "a", 1), []);
});

test("a clamp steering result labels its lines with c", () => {
  const s = {
    mode: "clamp",
    unsteered: { feature_activation: 0, promoted_share: 0, text: "a" },
    steered: [{ alpha: 2, feature_activation: 1, promoted_share: 0.5, text: "b" }],
  };
  assert.equal(report.steeringLines(s)[1], "c 2 (activation 1.00, promoted share 50.0%): b");
});

test("a steering result lists the unsteered sample, then one line per alpha", () => {
  const s = {
    prompt: "The",
    unsteered: { feature_activation: 0.5, promoted_share: 0.1, text: "The cat" },
    steered: [{ alpha: 8, feature_activation: 4.25, promoted_share: 0.375, text: "The the" }],
  };
  assert.deepEqual(report.steeringLines(s), [
    "unsteered (activation 0.50, promoted share 10.0%): The cat",
    "alpha 8 (activation 4.25, promoted share 37.5%): The the",
  ]);
});

test("features the report leaves out are named as such, with where to see them", () => {
  const D = { study: "runs/demo", features: { "blocks.0.input/topk-k8": features() } };
  assert.equal(report.inReport(D, "blocks.0.input/topk-k8", 3), true);
  assert.equal(report.inReport(D, "blocks.0.input/topk-k8", 4), false);
  assert.equal(report.inReport(D, "blocks.1.input/topk-k8", 3), false);
  assert.equal(
    report.notInReportText(D, "blocks.0.input/topk-k8", 4),
    "feature 4 of blocks.0.input/topk-k8 is not in this report, which holds 3 of each SAE's features " +
      "(the explained ones by score, then the most frequent); saelab serve --study runs/demo shows every feature",
  );
});
