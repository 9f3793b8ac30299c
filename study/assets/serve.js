// saelab serve's page (study/serve.cpp serves it): overview, a feature's page, activations on any
// text, search and a steering playground, each a view of the location hash, all data from the JSON
// API. Every string from the server is put on the page with textContent, never parsed as HTML.
// The page helpers it shares with the report (el, formatNumber, activationColor) come from
// report.js, which serve.html loads first and which draws nothing where there is no report data.
"use strict";

let SAES = [];

async function api(method, path, body) {
  const res = await fetch(path, {
    method: method,
    headers: body ? { "Content-Type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await res.json();
  if (!res.ok) throw new Error(data.error || "HTTP " + res.status);
  return data;
}

function params(hash) {
  const q = hash.indexOf("?");
  return new URLSearchParams(q < 0 ? "" : hash.slice(q + 1));
}

function featureLink(sae, id) {
  return el("a", sae + " #" + id, { href: "#/feature/" + encodeURIComponent(sae) + "/" + id });
}

function saeSelect(selected, withHooks) {
  const s = el("select", null, { id: "sae" });
  const hooks = [];
  SAES.forEach(function (x) {
    const o = el("option", x.name, { value: x.name });
    if (x.name === selected) o.selected = true;
    s.appendChild(o);
    if (hooks.indexOf(x.hook) < 0) hooks.push(x.hook);
  });
  if (withHooks) {
    hooks.forEach(function (h) {
      const o = el("option", "all SAEs at " + h, { value: h });
      if (h === selected) o.selected = true;
      s.appendChild(o);
    });
  }
  return s;
}

function tokenSpan(text, act, max) {
  const span = el("span", text, { class: "tok" });
  span.style.background = activationColor(act, max);
  return span;
}

async function viewOverview(main) {
  main.appendChild(el("h2", "Overview"));
  const rows = await api("GET", "/api/overview");
  const table = el("table", null, { id: "overview" });
  const head = el("tr");
  ["SAE", "hook", "architecture", "d_sae", "L0", "FVU", "loss recovered"].forEach(function (h) {
    head.appendChild(el("th", h));
  });
  table.appendChild(head);
  ((rows && rows.saes) || []).forEach(function (r) {
    const tr = el("tr");
    [r.name, r.hook, r.architecture, r.d_sae, formatNumber(r.l0, 1), formatNumber(r.fvu, 3), formatNumber(r.loss_recovered_vs_zero, 3)].forEach(function (v) {
      tr.appendChild(el("td", v));
    });
    table.appendChild(tr);
  });
  if (!rows) main.appendChild(el("p", "This study has no eval.json.", { class: "muted" }));
  main.appendChild(table);
  main.appendChild(el("h2", "L0 against loss recovered"));
  const img = el("img", null, { src: "/tradeoff.svg", alt: "trade-off plot" });
  main.appendChild(img);
}

async function viewFeature(main, sae, id) {
  const data = await api("GET", "/api/features/" + encodeURIComponent(sae) + "/" + id);
  main.appendChild(el("h2", data.sae + " — feature " + data.feature));
  const r = data.record;
  if (!r) {
    main.appendChild(el("p", "No feature database: nothing recorded for this feature.", { class: "muted" }));
    return;
  }
  // The report's feature body (report.js): every related feature is a page of this server.
  main.appendChild(featureBody(r, featureLink));
  const steer = el("a", "steer with this feature", { href: "#/steer?sae=" + encodeURIComponent(sae) + "&features=" + id });
  main.appendChild(steer);
}

async function viewActivations(main, p) {
  main.appendChild(el("h2", "Activations on my text"));
  const box = el("textarea", null, { id: "text", rows: "3" });
  box.textContent = p.get("text") || "";  // as text, never markup
  const select = saeSelect(p.get("sae") || (SAES[0] && SAES[0].name), true);
  const button = el("button", "Run", { id: "run" });
  const one = el("input", null, { id: "feature", size: "6", placeholder: "feature #" });
  one.value = p.get("feature") || "";
  main.appendChild(box);
  main.appendChild(el("div", "SAE "));
  main.lastChild.appendChild(select);
  main.lastChild.appendChild(el("span", " one feature (optional) "));
  main.lastChild.appendChild(one);
  main.lastChild.appendChild(button);
  const out = el("div", null, { id: "result" });
  main.appendChild(out);
  async function run() {
    out.textContent = "";
    const body = { sae: select.value, text: box.value, top: 8 };
    if (one.value.trim() !== "") body.feature = Number(one.value);
    const data = await api("POST", "/api/activations", body);
    data.saes.forEach(function (s) {
      if (s.feature) {
        // One feature: every token shaded by that feature's own activation, its value on hover.
        out.appendChild(el("h3", s.sae + " #" + s.feature.id));
        out.lastChild.appendChild(el("span", " "));
        out.lastChild.appendChild(featureLink(s.sae, s.feature.id));
        const acts = s.feature.activations;
        const max = Math.max(0, ...acts.slice(1));  // BOS left out of the scale, as below
        const row = el("div", null, { class: "tokrow", id: "one-feature" });
        data.tokens.forEach(function (t, i) {
          const span = tokenSpan(i === 0 ? "⟨bos⟩" : t.text, acts[i], max);
          span.title = formatNumber(acts[i], 3);
          row.appendChild(span);
        });
        out.appendChild(row);
        out.appendChild(el("p", "max on this text " + formatNumber(max, 3) +
          (max > 0 ? "" : ": the feature does not fire here"), { class: "muted" }));
        return;
      }
      out.appendChild(el("h3", s.sae));
      let max = 0;
      s.features.forEach(function (fs, i) {
        if (i > 0 && fs.length) max = Math.max(max, fs[0][1]);  // BOS, often far larger, is left out of the scale
      });
      const row = el("div", null, { class: "tokrow" });
      const list = el("div", null, { class: "features" });
      data.tokens.forEach(function (t, i) {
        const fs = s.features[i];
        const span = tokenSpan(i === 0 ? "⟨bos⟩" : t.text, fs.length ? fs[0][1] : 0, max);
        span.addEventListener("click", function () {
          row.querySelectorAll(".sel").forEach(function (x) { x.classList.remove("sel"); });
          span.classList.add("sel");
          showFeatures(list, s.sae, t.text, fs, s.explanations || {});
        });
        row.appendChild(span);
      });
      out.appendChild(row);
      out.appendChild(list);
      // Start on the token whose top feature fires most.
      let best = -1, bestAct = 0;
      s.features.forEach(function (fs, i) {
        if (i > 0 && fs.length && fs[0][1] > bestAct) { best = i; bestAct = fs[0][1]; }
      });
      if (best >= 0) row.children[best].click();
    });
    document.body.setAttribute("data-activations", "yes");
  }
  button.addEventListener("click", function () { run().catch(showError); });
  if (box.value) await run();
}

function showFeatures(list, sae, token, fs, explanations) {
  list.textContent = "";
  list.appendChild(el("p", "Features on “" + token + "”:"));
  const table = el("table");
  fs.forEach(function (f) {
    const tr = el("tr");
    const td = el("td");
    td.appendChild(featureLink(sae, f[0]));
    tr.appendChild(td);
    tr.appendChild(el("td", formatNumber(f[1], 3)));
    tr.appendChild(el("td", explanations[String(f[0])] || "", { class: "muted" }));
    table.appendChild(tr);
  });
  if (!fs.length) list.appendChild(el("p", "none fires here", { class: "muted" }));
  list.appendChild(table);
}

async function viewSearch(main, p) {
  main.appendChild(el("h2", "Search features"));
  const q = el("input", null, { id: "q", placeholder: "token or explanation text" });
  q.value = p.get("q") || "";
  const lo = el("input", null, { id: "min_density", size: "6", placeholder: "min density" });
  const hi = el("input", null, { id: "max_density", size: "6", placeholder: "max density" });
  const score = el("input", null, { id: "min_score", size: "6", placeholder: "min score" });
  const button = el("button", "Search", { id: "go" });
  [q, lo, hi, score, button].forEach(function (x) { main.appendChild(x); });
  const tokens = el("p", null, { id: "tokens", class: "muted" });
  main.appendChild(tokens);
  const out = el("table", null, { id: "results" });
  main.appendChild(out);
  async function run() {
    const u = new URLSearchParams({ q: q.value });
    if (lo.value) u.set("min_density", lo.value);
    if (hi.value) u.set("max_density", hi.value);
    if (score.value) u.set("min_score", score.value);
    const data = await api("GET", "/api/search?" + u.toString());
    out.textContent = "";
    tokens.textContent = searchTokensNote(q.value, data.tokens || []);
    const head = el("tr");
    ["feature", "density", "explanation", "score"].forEach(function (h) { head.appendChild(el("th", h)); });
    if (data.results.length > 0) out.appendChild(head);
    let group = null;
    data.results.forEach(function (r) {
      if (r.match !== group) {
        group = r.match;
        const label = el("tr", null, { class: "group" });
        label.appendChild(el("td", group, { colspan: "4" }));
        out.appendChild(label);
      }
      const tr = el("tr");
      const td = el("td");
      td.appendChild(featureLink(r.sae, r.feature));
      tr.appendChild(td);
      tr.appendChild(el("td", formatNumber(r.density, 5)));
      tr.appendChild(el("td", r.explanation || ""));
      tr.appendChild(el("td", formatNumber(r.score, 2)));
      out.appendChild(tr);
    });
    document.body.setAttribute("data-search", String(data.results.length));
  }
  button.addEventListener("click", function () { run().catch(showError); });
  if (q.value) await run();
}

// How the searched word tokenizes, when that explains an empty or short list: a word of several
// tokens is matched by explanations only, never as one token.
function searchTokensNote(query, tokens) {
  const word = query.trim();
  if (!word || tokens.length === 0) return "";
  const shown = tokens.map(function (t) { return "‘" + t + "’"; }).join(" + ");
  if (tokens.length === 1) return "‘" + word + "’ is one token: " + shown + ".";
  return "‘" + word + "’ is " + tokens.length + " tokens (" + shown + "): token matches need one of them; " +
    "search for a piece to see the features that fire on it.";
}

async function viewSteer(main, p) {
  main.appendChild(el("h2", "Steering playground"));
  const prompt = el("input", null, { id: "prompt", size: "50" });
  prompt.value = p.get("prompt") || "The man said that";
  const select = saeSelect(p.get("sae") || (SAES[0] && SAES[0].name), false);
  const features = el("input", null, { id: "features", placeholder: "features, e.g. 3,17" });
  features.value = p.get("features") || "";
  const mode = el("select", null, { id: "mode" });
  [["add", "add α × W_dec"], ["clamp", "clamp to c × max activation"]].forEach(function (m) {
    const o = el("option", m[1], { value: m[0] });
    if (m[0] === (p.get("mode") || "add")) o.selected = true;
    mode.appendChild(o);
  });
  const alphas = el("input", null, { id: "alphas", placeholder: "α or c per feature, e.g. 8" });
  alphas.value = p.get("alphas") || "8";
  const temperature = el("input", null, { id: "temperature", size: "4" });
  temperature.value = p.get("temperature") || "0";
  const seed = el("input", null, { id: "seed", size: "4" });
  seed.value = p.get("seed") || "0";
  const button = el("button", "Generate", { id: "generate" });
  [el("span", "prompt "), prompt, el("span", " SAE "), select, el("span", " features "), features, el("span", " "), mode, el("span", " α / c "), alphas,
    el("span", " temperature "), temperature, el("span", " seed "), seed, button].forEach(function (x) { main.appendChild(x); });
  const side = el("div", null, { class: "side", id: "continuations" });
  main.appendChild(side);
  const nums = function (s) {
    return s.split(",").map(function (x) { return x.trim(); }).filter(Boolean).map(Number);
  };
  async function run() {
    const data = await api("POST", "/api/steer", {
      sae: select.value, features: nums(features.value), alphas: nums(alphas.value), mode: mode.value, prompt: prompt.value,
      max_new_tokens: 24, temperature: Number(temperature.value), seed: Number(seed.value),
    });
    side.textContent = "";
    const a = el("div", null, { id: "unsteered" });
    a.appendChild(el("b", "unsteered\n"));
    a.appendChild(el("span", data.unsteered));
    const b = el("div", null, { id: "steered" });
    const how = data.mode === "clamp" ? " clamped to c " : " at α ";
    b.appendChild(el("b", "steered (" + data.features.join(", ") + how + data.alphas.join(", ") + ")\n"));
    b.appendChild(el("span", data.steered));
    side.appendChild(a);
    side.appendChild(b);
    document.body.setAttribute("data-steered", "yes");
  }
  button.addEventListener("click", function () { run().catch(showError); });
  if (p.get("run")) await run();
}

function showError(e) {
  document.getElementById("error").textContent = String(e.message || e);
  document.body.setAttribute("data-errors", String(e.message || e));
}

async function route() {
  const main = document.getElementById("main");
  main.textContent = "";
  document.getElementById("error").textContent = "";
  const hash = location.hash.slice(1) || "/";
  const path = hash.split("?")[0];
  const p = params(hash);
  const feature = /^\/feature\/(.+)\/(\d+)$/.exec(path);
  try {
    if (feature) await viewFeature(main, decodeURIComponent(feature[1]), feature[2]);
    else if (path === "/activations") await viewActivations(main, p);
    else if (path === "/search") await viewSearch(main, p);
    else if (path === "/steer") await viewSteer(main, p);
    else await viewOverview(main);
  } catch (e) {
    showError(e);
  }
  document.body.setAttribute("data-rendered", "yes");
}

window.addEventListener("error", function (e) {
  document.body.setAttribute("data-errors", String(e.message));
});
window.addEventListener("hashchange", route);
api("GET", "/api/saes").then(function (d) {
  SAES = d.saes;
  document.getElementById("title").textContent = d.title;
  return route();
}).catch(showError);
