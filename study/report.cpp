#include "study/report.h"

#include <filesystem>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "analysis/feature_db.h"
#include "core/files.h"
#include "core/json_options.h"

namespace saelab {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

json load_optional(const std::string& path, const char* what) {
  if (path.empty() || !fs::exists(path)) return json();
  return load_json_file(path, what);
}

// Per SAE: the features shown and everything the browser needs about them.
json features_of(FeatureDb& db, const std::string& sae, long long limit, const json& graph) {
  std::vector<int64_t> ids;
  std::set<int64_t> seen;
  {
    auto q = db.prepare("SELECT feature FROM explanations WHERE sae = ? ORDER BY score DESC");
    q.bind(1, sae);
    while (q.next()) {
      const int64_t f = q.column_int(0);
      if (static_cast<long long>(ids.size()) < limit && seen.insert(f).second) ids.push_back(f);
    }
    auto d = db.prepare("SELECT feature FROM features WHERE sae = ? AND density > 0 ORDER BY density DESC");
    d.bind(1, sae);
    while (d.next()) {
      const int64_t f = d.column_int(0);
      if (static_cast<long long>(ids.size()) < limit && seen.insert(f).second) ids.push_back(f);
    }
  }
  auto feat = db.prepare("SELECT density, mean_activation, max_activation FROM features WHERE sae = ? AND feature = ?");
  auto expl = db.prepare("SELECT explanation, score, explain_score FROM explanations WHERE sae = ? AND feature = ?");
  auto exs = db.prepare(
      "SELECT id, kind, rank, band, activation, context, position, doc FROM examples WHERE sae = ? AND feature = ? "
      "ORDER BY kind DESC, band, rank");
  auto toks = db.prepare("SELECT offset, token, activation FROM example_tokens WHERE example_id = ? ORDER BY offset");
  auto logits = db.prepare(
      "SELECT direction, token, effect FROM logit_effects WHERE sae = ? AND feature = ? ORDER BY direction, rank");
  json out = json::array();
  for (int64_t f : ids) {
    json j = {{"id", f}};
    feat.bind(1, sae).bind(2, f);
    if (feat.next()) {
      j["density"] = feat.column_double(0);
      j["mean"] = feat.column_double(1);
      j["max"] = feat.column_double(2);
      while (feat.next()) {
      }
    }
    expl.bind(1, sae).bind(2, f);
    if (expl.next()) {
      j["explanation"] = expl.column_text(0);
      j["score"] = expl.column_double(1);
      while (expl.next()) {
      }
    }
    j["top"] = json::array();
    j["quantiles"] = json::array();
    exs.bind(1, sae).bind(2, f);
    std::vector<json> examples;
    while (exs.next()) {
      examples.push_back({{"id", exs.column_int(0)}, {"kind", exs.column_text(1)}, {"band", exs.column_int(3)},
                          {"act", exs.column_double(4)}, {"doc", exs.column_text(7)}});
    }
    for (auto& e : examples) {
      json tokens = json::array();
      toks.bind(1, e.at("id").get<int64_t>());
      while (toks.next()) tokens.push_back({toks.column_int(0), toks.column_text(1), toks.column_double(2)});
      e["tokens"] = tokens;
      e.erase("id");
      (e.at("kind") == "top" ? j["top"] : j["quantiles"]).push_back(e);
    }
    j["promoted"] = json::array();
    j["suppressed"] = json::array();
    logits.bind(1, sae).bind(2, f);
    while (logits.next()) {
      j[logits.column_text(0)].push_back({logits.column_text(1), logits.column_double(2)});
    }
    j["next"] = json::array();
    j["previous"] = json::array();
    if (graph.is_object()) {
      for (const auto& e : graph.at("edges")) {
        const auto& s = e.at("source");
        const auto& t = e.at("target");
        if (s.at("sae") == sae && s.at("feature") == f) {
          j["next"].push_back({{"sae", t.at("sae")}, {"feature", t.at("feature")}, {"kind", e.at("kind")}, {"weight", e.at("weight")}});
        }
        if (t.at("sae") == sae && t.at("feature") == f) {
          j["previous"].push_back({{"sae", s.at("sae")}, {"feature", s.at("feature")}, {"kind", e.at("kind")}, {"weight", e.at("weight")}});
        }
      }
    }
    out.push_back(j);
  }
  return out;
}

const char* kPage = R"HTML(<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title></title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:0 16px;color:#222}
h1{font-size:22px}h2{font-size:18px;margin-top:28px}table{border-collapse:collapse}
td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}td:first-child,th:first-child{text-align:left}
th{cursor:pointer;background:#f4f4f4}.tok{white-space:pre;border-radius:2px;font-family:monospace}
.ex{margin:3px 0;font-family:monospace;white-space:pre-wrap}.muted{color:#777}
#list{max-height:420px;overflow:auto;border:1px solid #ddd}#list div{padding:2px 6px;cursor:pointer}
#list div:hover{background:#eef}.cols{display:flex;gap:24px;flex-wrap:wrap}.cols>div{flex:1;min-width:260px}
.hist{display:inline-block;margin:4px 12px 4px 0;vertical-align:top}
</style></head><body>
<h1 id="title"></h1>
<p class="muted">Generated by saelab. All data is in this file; nothing is loaded from the network.</p>
<h2>Overview</h2><table id="overview"></table>
<h2>L0 against loss recovered</h2><div id="plot"></div>
<h2>Feature density (log10 firing frequency)</h2><div id="hists"></div>
<h2>Feature browser</h2>
<div>SAE <select id="sae"></select> search <input id="search" placeholder="token or explanation">
sort <select id="sort"><option value="score">auto-interp score</option><option value="density">density</option><option value="id">index</option></select></div>
<div class="cols"><div><div id="list"></div></div><div id="feature"></div></div>
<h2>Steering</h2><div id="steering"></div>
<script id="data" type="application/json">@DATA@</script>
<script>
"use strict";
window.reportErrors=[];
window.addEventListener("error",function(e){window.reportErrors.push(String(e.message));document.body.setAttribute("data-errors",window.reportErrors.join("; "));});
const D=JSON.parse(document.getElementById("data").textContent);
function el(tag,text,attrs){const e=document.createElement(tag);if(text!==undefined&&text!==null)e.textContent=String(text);if(attrs)for(const k in attrs)e.setAttribute(k,attrs[k]);return e;}
function fmt(x,d){return (typeof x==="number")?x.toFixed(d):"-";}
document.title=D.title;document.getElementById("title").textContent=D.title;
// Overview
const cols=[["name","SAE",null],["architecture","arch",null],["hook","hook",null],["l0","L0",1],["fvu","FVU",3],["loss_recovered_vs_zero","loss rec.",3],["kl","KL",3],["dead_fraction","dead %",1],["interp_score","interp",3]];
let ovSort="name",ovDir=1;
function drawOverview(){const t=document.getElementById("overview");t.textContent="";const hr=el("tr");
for(const c of cols){const th=el("th",c[1]);th.onclick=function(){ovDir=(ovSort===c[0])?-ovDir:1;ovSort=c[0];drawOverview();};hr.appendChild(th);}t.appendChild(hr);
const rows=D.saes.slice().sort(function(a,b){const x=a[ovSort],y=b[ovSort];return (x<y?-1:x>y?1:0)*ovDir;});
for(const r of rows){const tr=el("tr");tr.setAttribute("class","sae-row");for(const c of cols){let v=r[c[0]];if(c[0]==="dead_fraction"&&typeof v==="number")v=100*v;tr.appendChild(el("td",c[2]===null?v:fmt(v,c[2])));}t.appendChild(tr);}}
drawOverview();
document.getElementById("plot").innerHTML=D.plot;  // our own SVG, labels escaped when written
// Density histograms
const NS="http://www.w3.org/2000/svg";
for(const r of D.saes){const box=el("div",null,{"class":"hist"});box.appendChild(el("div",r.name,{"class":"muted"}));
const h=r.density_histogram.counts,mx=Math.max(1,...h);const svg=document.createElementNS(NS,"svg");svg.setAttribute("width","170");svg.setAttribute("height","60");
h.forEach(function(c,i){const b=document.createElementNS(NS,"rect");const ht=50*c/mx;b.setAttribute("x",String(5+i*11));b.setAttribute("y",String(52-ht));b.setAttribute("width","9");b.setAttribute("height",String(ht));b.setAttribute("fill","#4a78c2");const tt=document.createElementNS(NS,"title");tt.textContent=r.density_histogram.log10_edges[i]+" … "+r.density_histogram.log10_edges[i+1]+": "+c;b.appendChild(tt);svg.appendChild(b);});
box.appendChild(svg);box.appendChild(el("div","dead: "+fmt(100*r.dead_fraction,1)+"%",{"class":"muted"}));document.getElementById("hists").appendChild(box);}
// Feature browser
const saeSel=document.getElementById("sae");Object.keys(D.features).forEach(function(n){saeSel.appendChild(el("option",n,{"value":n}));});
function color(a,mx){const t=mx>0?Math.max(0,Math.min(1,a/mx)):0;return "rgba(255,120,0,"+(0.85*t).toFixed(3)+")";}
function example(e,mx){const d=el("div",null,{"class":"ex"});d.appendChild(el("span",fmt(e.act,2)+"  ",{"class":"muted"}));
for(const t of e.tokens){const s=el("span",t[1],{"class":"tok","title":t[2].toFixed(3)});s.style.background=color(t[2],mx);if(t[0]===0)s.style.outline="1px solid #c60";d.appendChild(s);}return d;}
function showFeature(sae,id){const box=document.getElementById("feature");box.textContent="";const list=D.features[sae]||[];const f=list.find(function(x){return x.id===id;});
if(!f){box.appendChild(el("p","feature "+id+" of "+sae+" is not in this report"));return;}
box.appendChild(el("h3",sae+" — feature "+f.id,{"id":"feature-title"}));
box.appendChild(el("p","density "+(f.density*100).toFixed(3)+"%, mean activation "+fmt(f.mean,2)+", max "+fmt(f.max,2)));
if(f.explanation!==undefined)box.appendChild(el("p","explanation: "+f.explanation+"  (score "+fmt(f.score,3)+")",{"id":"explanation"}));
box.appendChild(el("h4","Top activations"));for(const e of f.top)box.appendChild(example(e,f.max));
box.appendChild(el("h4","Quantile samples"));let band=-1;for(const e of f.quantiles){if(e.band!==band){band=e.band;box.appendChild(el("div","band "+band,{"class":"muted"}));}box.appendChild(example(e,f.max));}
const lg=el("div",null,{"class":"cols"});for(const dir of ["promoted","suppressed"]){const c=el("div");c.appendChild(el("h4",dir+" tokens"));const t=el("table");for(const p of f[dir]){const tr=el("tr");tr.appendChild(el("td",JSON.stringify(p[0])));tr.appendChild(el("td",fmt(p[1],3)));t.appendChild(tr);}c.appendChild(t);lg.appendChild(c);}box.appendChild(lg);
for(const rel of ["previous","next"]){if(!f[rel].length)continue;box.appendChild(el("h4",(rel==="next"?"next":"previous")+"-layer features"));const t=el("table");for(const r of f[rel]){const tr=el("tr");const a=el("a",r.sae+" #"+r.feature,{"href":"#f="+encodeURIComponent(r.sae)+":"+r.feature});tr.appendChild(el("td")).appendChild(a);tr.appendChild(el("td",r.kind));tr.appendChild(el("td",fmt(r.weight,3)));t.appendChild(tr);}box.appendChild(t);}
const st=(D.steering&&D.steering.results||[]).filter(function(s){return s.sae===sae&&s.feature===id;});
for(const s of st){box.appendChild(el("h4","Steering"));box.appendChild(steerBlock(s));}}
function steerBlock(s){const d=el("div");d.appendChild(el("div","prompt: "+s.prompt,{"class":"muted"}));const rows=[["unsteered",s.unsteered]].concat(s.steered.map(function(x){return ["alpha "+x.alpha,x];}));
for(const r of rows){d.appendChild(el("div",r[0]+" (activation "+fmt(r[1].feature_activation,2)+", promoted share "+fmt(100*r[1].promoted_share,1)+"%): "+r[1].text,{"class":"ex"}));}return d;}
function drawList(){const sae=saeSel.value,q=document.getElementById("search").value.toLowerCase(),key=document.getElementById("sort").value;const box=document.getElementById("list");box.textContent="";
let list=(D.features[sae]||[]).filter(function(f){if(!q)return true;if((f.explanation||"").toLowerCase().includes(q))return true;return f.top.some(function(e){return e.tokens.some(function(t){return t[0]===0&&t[1].toLowerCase().trim()===q.trim();});})||f.promoted.some(function(p){return p[0].toLowerCase().trim()===q.trim();});});
list.sort(function(a,b){if(key==="id")return a.id-b.id;return (b[key]===undefined?-1:b[key])-(a[key]===undefined?-1:a[key]);});
for(const f of list){const d=el("div","#"+f.id+"  "+(f.explanation||"")+"  ("+(100*f.density).toFixed(2)+"%"+(f.score!==undefined?", score "+f.score.toFixed(2):"")+")",{"class":"feature-item"});d.onclick=function(){location.hash="f="+encodeURIComponent(sae)+":"+f.id;};box.appendChild(d);}}
saeSel.onchange=drawList;document.getElementById("search").oninput=drawList;document.getElementById("sort").onchange=drawList;
function route(){const m=/^#f=([^:]*):(\d+)$/.exec(location.hash);if(m){const sae=decodeURIComponent(m[1]);if(D.features[sae]){saeSel.value=sae;drawList();}showFeature(sae,Number(m[2]));}}
window.addEventListener("hashchange",route);drawList();
if(location.hash)route();else{const first=Object.keys(D.features)[0];if(first&&D.features[first].length)showFeature(first,D.features[first][0].id);}
// Steering overview
const sbox=document.getElementById("steering");for(const s of (D.steering&&D.steering.results||[])){sbox.appendChild(el("h4",s.sae+" — feature "+s.feature));sbox.appendChild(steerBlock(s));}
document.body.setAttribute("data-rendered","yes");
</script></body></html>
)HTML";

}  // namespace

std::string script_safe_json(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '<') {
      out += "\\u003c";
    } else {
      out += c;
    }
  }
  return out;
}

void write_report(const ReportInputs& in, const std::string& dir) {
  const json eval = load_json_file(in.eval_json, "evaluation results");
  const json interp = load_optional(in.interp_json, "interpretation scores");
  const json graph = load_optional(in.graph_json, "feature graph");
  json steering = load_optional(in.steering_json, "steering results");
  json data = {{"title", in.title}, {"saes", json::array()}, {"features", json::object()}};
  data["plot"] = fs::exists(in.tradeoff_svg) ? read_file(in.tradeoff_svg, "trade-off plot") : std::string();
  FeatureDb db = FeatureDb::open(in.features_db);
  for (const auto& e : eval.at("saes")) {
    json row = e;
    const std::string name = e.at("name").get<std::string>();
    if (interp.is_object() && interp.contains(name)) row["interp_score"] = interp[name]["mean_score"];
    data["saes"].push_back(row);
    data["features"][name] = features_of(db, name, in.options.features_per_sae, graph);
  }
  // Steering results gain the SAE name on each entry, for the feature pages.
  if (steering.is_object()) {
    for (auto& r : steering["results"]) r["sae"] = steering.value("sae", "");
  }
  data["steering"] = steering;
  std::string page = kPage;
  const std::string marker = "@DATA@";
  page.replace(page.find(marker), marker.size(), script_safe_json(data.dump()));
  fs::create_directories(dir);
  write_file_atomic(fs::path(dir) / "index.html", page);
}

}  // namespace saelab
