#!/usr/bin/python3
"""Reads a `saelab export-neuronpedia` folder as Neuronpedia's importer path does, and checks it
against the feature database it came from (read here with Python's own sqlite3).

Usage: neuronpedia_check.py EXPORT_DIR FEATURES.sqlite

The rules come from SAEDashboard's NeuronpediaRunner output and from neuronpedia's
utils/neuronpedia-utils/.../convert-saedashboard-to-neuronpedia-export.py, which indexes these keys
with [...] (so they must be present): per batch file model_id, layer (int), sae_set, sae_id_suffix,
features; per feature feature_index, neuron_alignment_*, correlated_*, neg_str, neg_values, pos_str,
pos_values, frac_nonzero, freq_hist_data_bar_*, logits_hist_data_bar_*, decoder_weights_dist,
activations (non-empty: the converter takes max(values)); per activation tokens, values (same
length), bin_min, bin_max, bin_contains, qualifying_token_index. The converter's derived columns
(maxValue, maxValueTokenIndex, minValue, maxActApprox) are computed as it does. Prints one line and
exits 1 on the first failure.
"""
import json
import os
import re
import sqlite3
import sys

FEATURE_KEYS = ["feature_index", "neuron_alignment_indices", "neuron_alignment_values", "neuron_alignment_l1",
                "correlated_neurons_indices", "correlated_neurons_pearson", "correlated_neurons_l1",
                "correlated_features_indices", "correlated_features_pearson", "correlated_features_l1", "neg_str",
                "neg_values", "pos_str", "pos_values", "frac_nonzero", "freq_hist_data_bar_heights",
                "freq_hist_data_bar_values", "logits_hist_data_bar_heights", "logits_hist_data_bar_values",
                "decoder_weights_dist", "activations"]
ACTIVATION_KEYS = ["tokens", "values", "bin_contains", "bin_max", "bin_min", "qualifying_token_index"]


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def close(a, b):
    return abs(a - b) <= 1e-5 * max(1.0, abs(b))


def main():
    export, db_path = sys.argv[1], sys.argv[2]
    db = sqlite3.connect(db_path)
    saes = {row[0]: row for row in db.execute("SELECT sae, hook, d_sae FROM saes")}
    folders = sorted(os.listdir(export))
    if len(folders) != len(saes):
        fail("%d folders for %d SAEs" % (len(folders), len(saes)))
    n_features = n_acts = 0
    for folder in folders:
        path = os.path.join(export, folder)
        skipped = json.load(open(os.path.join(path, "skipped_indexes.json")))
        settings = json.load(open(os.path.join(path, "run_settings.json")))
        sae = settings["sae"]
        if sae not in saes:
            fail("%s names SAE %r, which the database lacks" % (folder, sae))
        _, hook, d_sae = saes[sae]
        suffix = settings["np_sae_id_suffix"]
        if suffix != sae.rsplit("/", 1)[-1] or not folder.endswith("_%s_%d_%s" % (hook, d_sae, suffix)):
            fail("folder %s is not {model_id}_{sae_set}_{hook}_{d_sae}_{suffix}" % folder)
        batches = sorted((f for f in os.listdir(path) if re.fullmatch(r"batch-\d+\.json", f)),
                         key=lambda f: int(f[6:-5]))
        seen = []
        for k, name in enumerate(batches):
            if name != "batch-%d.json" % k:
                fail("batch files are not numbered 0..n-1: %s" % name)
            batch = json.load(open(os.path.join(path, name)))
            for key in ("model_id", "layer", "sae_set", "sae_id_suffix", "features"):
                if key not in batch:
                    fail("%s/%s lacks %r" % (folder, name, key))
            if not isinstance(batch["layer"], int):
                fail("layer must be an int")
            if batch["sae_id_suffix"] != suffix:
                fail("sae_id_suffix %r, run_settings says %r" % (batch["sae_id_suffix"], suffix))
            for f in batch["features"]:
                for key in FEATURE_KEYS:
                    if key not in f:
                        fail("feature lacks %r" % key)
                i = f["feature_index"]
                seen.append(i)
                if not f["activations"]:
                    fail("feature %d has no activations (the converter takes max(values))" % i)
                density, max_act = db.execute("SELECT density, max_activation FROM features WHERE sae=? AND feature=?",
                                              (sae, i)).fetchone()
                if not close(f["frac_nonzero"], density):
                    fail("feature %d frac_nonzero %r, database density %r" % (i, f["frac_nonzero"], density))
                for direction, tok_key, val_key in (("promoted", "pos_str", "pos_values"),
                                                    ("suppressed", "neg_str", "neg_values")):
                    rows = db.execute("SELECT token, effect FROM logit_effects WHERE sae=? AND feature=? AND "
                                      "direction=? ORDER BY rank", (sae, i, direction)).fetchall()
                    if f[tok_key] != [r[0] for r in rows] or not all(map(close, f[val_key], [r[1] for r in rows])):
                        fail("feature %d %s differs from the database's %s logit effects" % (i, tok_key, direction))
                if len(f["pos_values"]) > 1 and f["pos_values"] != sorted(f["pos_values"], reverse=True):
                    fail("pos_values are not most positive first")
                if len(f["neg_values"]) > 1 and f["neg_values"] != sorted(f["neg_values"]):
                    fail("neg_values are not most negative first")
                top = db.execute("SELECT id, activation FROM examples WHERE sae=? AND feature=? AND kind='top' "
                                 "ORDER BY rank", (sae, i)).fetchall()
                acts = f["activations"]
                for j, a in enumerate(acts):
                    for key in ACTIVATION_KEYS:
                        if key not in a:
                            fail("activation lacks %r" % key)
                    if len(a["tokens"]) != len(a["values"]) or not a["tokens"]:
                        fail("feature %d activation %d: tokens and values differ in length" % (i, j))
                    q = a["qualifying_token_index"]
                    if not 0 <= q < len(a["values"]):
                        fail("feature %d activation %d: qualifying_token_index %d outside its tokens" % (i, j, q))
                    # The converter's derived columns.
                    max_value = max(a["values"])
                    if max_value < a["values"][q] - 1e-9 or min(a["values"]) > a["values"][q] + 1e-9:
                        fail("inconsistent values")
                    n_acts += 1
                for j, (ex_id, activation) in enumerate(top):
                    a = acts[j]
                    if a["bin_min"] != -1 or a["bin_contains"] != -1 or not close(a["bin_max"], max_act):
                        fail("feature %d top activation %d: bin fields %r" % (i, j, (a["bin_min"], a["bin_max"])))
                    toks = db.execute("SELECT offset, token, activation FROM example_tokens WHERE example_id=? "
                                      "ORDER BY offset", (ex_id,)).fetchall()
                    if a["tokens"] != [t[1] for t in toks] or not all(map(close, a["values"], [t[2] for t in toks])):
                        fail("feature %d top activation %d: tokens or values differ from the database" % (i, j))
                    if not close(a["values"][a["qualifying_token_index"]], activation):
                        fail("feature %d top activation %d: the qualifying token's value is not the example's" % (i, j))
                # Interval groups: highest band first, inside their bounds.
                lows = [a["bin_min"] for a in acts[len(top):]]
                if lows != sorted(lows, reverse=True):
                    fail("feature %d: interval groups are not highest first" % i)
                max_act_approx = max(max(a["values"]) for a in acts)
                if max_act_approx > max_act * (1 + 1e-5) + 1e-6:
                    fail("feature %d: maxActApprox %r above the database's maximum %r" % (i, max_act_approx, max_act))
                n_features += 1
        if sorted(seen + skipped["skipped_indexes"]) != list(range(d_sae)):
            fail("%s: features and skipped indexes do not cover 0..%d" % (folder, d_sae - 1))
        fired = {r[0] for r in db.execute("SELECT DISTINCT feature FROM examples WHERE sae=?", (sae,))}
        if set(seen) != fired:
            fail("%s: exported features are not the ones with examples" % folder)
        expl = [json.loads(line) for line in open(os.path.join(path, "explanations.jsonl"))]
        want = db.execute("SELECT COUNT(*) FROM explanations WHERE sae=?", (sae,)).fetchone()[0]
        if len(expl) != want:
            fail("%s: %d explanations for %d in the database" % (folder, len(expl), want))
        for e in expl:
            for key in ("id", "modelId", "layer", "index", "description", "authorId", "typeName",
                        "explanationModelName"):
                if key not in e:
                    fail("explanation lacks %r" % key)
            if not isinstance(e["index"], str) or not e["layer"].endswith("-%s__%s" % (batch["sae_set"], suffix)):
                fail("explanation index must be a string and layer the source id")
    print("ok %d features, %d activations, %d folders" % (n_features, n_acts, len(folders)))


if __name__ == "__main__":
    main()
