"""saelab against the peers' own trainers on the same activations (scripts/bench-peers; runs in the
peers' environment of python/peers.lock).

  bench_peers.py run STORE_HOOK_DIR OUT.json --label L --expansion E --k K --l1 L1 --batch B
                     --steps N --lr LR --saelab BIN [--held-out H] [--only NAMES]

STORE_HOOK_DIR is one hook of a saelab capture (manifest.json + shard-*.safetensors). Its first
B·N rows train, the H rows after them measure FVU; every trainer sees the same rows in the same
order, the same batch, steps, learning rate (constant) and Adam (β 0.9, 0.999). Each trainer runs
in a process of its own; wall time is the training loop's (data already in memory for the peers;
saelab's whole `train` command, reading its store, is counted against it), peak RSS the process's.
FVU = Σ|x − x̂|² / Σ|x − mean(x)|² over the held-out rows, computed here by one function for every
trainer, with each SAE loaded by its own library (saelab's folders by SAELens, which reads them
with the same codes: tests/peers_test.cpp).

Trainers: saelab (topk, standard = ReLU-L1, jumprelu), SAELens' SAETrainer (the same three),
sparsify (topk; its Trainer hooks a live transformers model, so the loop of its Trainer is driven
directly: SparseCoder's forward with its FVU + AuxK loss, decoder renormalised and the gradient
parallel to decoder directions removed after each step as its Trainer does, torch Adam as its
Trainer uses when bitsandbytes is absent).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch
from safetensors.torch import load_file

os.environ.setdefault("SPARSIFY_DISABLE_TRITON", "1")


def read_rows(hook_dir, n):
    manifest = json.load(open(os.path.join(hook_dir, "manifest.json")))
    parts, have = [], 0
    for shard in manifest["shards"]:
        if have >= n:
            break
        name = shard["file"] if isinstance(shard, dict) else shard[0]
        parts.append(load_file(os.path.join(hook_dir, name))["acts"].float())
        have += parts[-1].shape[0]
    if have < n:
        sys.exit(f"bench_peers: {hook_dir} holds {have} rows, the benchmark needs {n}")
    return torch.cat(parts)[:n].contiguous()


def fvu(x, x_hat):
    x, x_hat = x.double(), x_hat.double()
    return float((x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum())


# ------------------------------------------------------------------ one trainer, in its own process
def train_saelens(a, x, out):
    from sae_lens import (JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig, StandardTrainingSAE,
                          StandardTrainingSAEConfig, TopKTrainingSAE, TopKTrainingSAEConfig)
    from sae_lens.config import SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer
    d = x.shape[1]
    common = dict(d_in=d, d_sae=d * a.expansion)
    cls, cfg = {
        "topk": (TopKTrainingSAE, lambda: TopKTrainingSAEConfig(**common, k=a.k)),
        "standard": (StandardTrainingSAE, lambda: StandardTrainingSAEConfig(**common, l1_coefficient=a.l1)),
        "jumprelu": (JumpReLUTrainingSAE, lambda: JumpReLUTrainingSAEConfig(**common, l0_coefficient=a.l1)),
    }[a.arch]
    sae = cls(cfg())
    tcfg = SAETrainerConfig(total_training_samples=a.steps * a.batch, train_batch_size_samples=a.batch, lr=a.lr,
                            lr_end=a.lr, device="cpu", feature_sampling_window=10 ** 9, dead_feature_window=10 ** 9)
    data = iter(x[i * a.batch:(i + 1) * a.batch] for i in range(a.steps))
    trainer = SAETrainer(tcfg, sae, data)
    t0 = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - t0
    sae.save_inference_model(out)
    return seconds


def train_sparsify(a, x, out):
    from sparsify import SaeConfig, SparseCoder
    d = x.shape[1]
    sae = SparseCoder(d, SaeConfig(k=a.k, num_latents=d * a.expansion), device="cpu", dtype=torch.float32)
    opt = torch.optim.Adam(sae.parameters(), lr=a.lr, betas=(0.9, 0.999))
    t0 = time.perf_counter()
    for i in range(a.steps):
        batch = x[i * a.batch:(i + 1) * a.batch]
        o = sae(batch)
        o.fvu.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sae.set_decoder_norm_to_unit_norm()
    seconds = time.perf_counter() - t0
    sae.save_to_disk(out)
    return seconds


def child(a):
    torch.set_num_threads(a.threads)
    x = read_rows(a.store, a.steps * a.batch)
    seconds = {"saelens": train_saelens, "sparsify": train_sparsify}[a.trainer](a, x, a.out)
    json.dump({"train_s": seconds}, open(a.out + ".time.json", "w"))


# ------------------------------------------------------------------------------ the whole benchmark
def run_measured(cmd, env=None):
    """Runs cmd under GNU time; returns (wall seconds, peak RSS in MB of that process). GNU time
    forks the command from its own small process: a child forked from this Python process would
    count Python's resident pages in its peak."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss_file:
        t0 = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss_file.name] + cmd, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, env=env)
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            sys.exit("bench_peers: failed: " + " ".join(cmd) + "\n" + p.stdout.decode(errors="replace")[-3000:])
        return wall, int(rss_file.read().split()[-1]) / 1024.0


def evaluate(kind, folder, held):
    with torch.no_grad():
        if kind == "sparsify":
            from sparsify import SparseCoder
            sae = SparseCoder.load_from_disk(folder)
            enc = sae.encode(held)
            x_hat = sae.decode(enc.top_acts, enc.top_indices)
            l0 = float(sae.cfg.k)
        else:
            from sae_lens import SAE
            sae = SAE.load_from_disk(folder)
            codes = sae.encode(held)
            x_hat = sae.decode(codes)
            l0 = float((codes != 0).sum(-1).float().mean())
    return fvu(held, x_hat), l0


def run(a):
    rows = a.steps * a.batch
    held = read_rows(a.store, rows + a.held_out)[rows:]
    d = held.shape[1]
    hook = os.path.basename(os.path.normpath(a.store))
    store_root = os.path.dirname(os.path.normpath(a.store))
    results = []
    work = tempfile.mkdtemp(prefix="bench-peers-")
    archs = [("topk", ["saelab", "saelens", "sparsify"]), ("standard", ["saelab", "saelens"]),
             ("jumprelu", ["saelab", "saelens"])]
    for arch, trainers in archs:
        for trainer in trainers:
            if a.only and f"{trainer}:{arch}" not in a.only.split(","):
                continue
            out = os.path.join(work, f"{trainer}-{arch}")
            print(f"[bench-peers] {a.label}: {trainer} {arch} ({a.steps} steps x {a.batch} rows)", file=sys.stderr)
            if trainer == "saelab":
                cmd = [a.saelab, "train", "--store", store_root, "--hooks", hook, "--architectures", arch,
                       "--expansion", str(a.expansion), "--batch-size", str(a.batch), "--steps", str(a.steps),
                       "--lr", str(a.lr), "--lr-warmup-steps", "0", "--lr-decay-fraction", "0",
                       "--l1-warmup-steps", "0", "--checkpoint-every", "1000000", "--out", out]
                cmd += ["--k", str(a.k)] if arch == "topk" else ["--l1", str(a.l1)]
                wall, rss = run_measured(cmd, env=dict(os.environ, OMP_NUM_THREADS=str(a.threads)))
                train_s = wall
                folders = [os.path.join(out, hook, f) for f in os.listdir(os.path.join(out, hook))]
                folder = next(f for f in folders if os.path.isfile(os.path.join(f, "cfg.json")))
                kind = "saelens"
            else:
                cmd = [sys.executable, os.path.abspath(__file__), "child", a.store, out, "--trainer", trainer,
                       "--arch", arch, "--expansion", str(a.expansion), "--k", str(a.k), "--l1", str(a.l1),
                       "--batch", str(a.batch), "--steps", str(a.steps), "--lr", str(a.lr),
                       "--threads", str(a.threads)]
                wall, rss = run_measured(cmd)
                train_s = json.load(open(out + ".time.json"))["train_s"]
                folder, kind = out, trainer
            f, l0 = evaluate(kind, folder, held)
            results.append({"trainer": trainer, "architecture": arch, "train_s": train_s, "process_s": wall,
                            "rows_per_s": rows / train_s, "peak_rss_mb": rss, "fvu": f, "l0": l0})
            print(f"[bench-peers]   {rows / train_s:,.0f} rows/s, peak RSS {rss:,.0f} MB, FVU {f:.4f}, L0 {l0:.1f}",
                  file=sys.stderr)
    for r in results:
        base = next((b for b in results if b["trainer"] == "saelab" and b["architecture"] == r["architecture"]), None)
        if base and r is not base:
            r["saelab_speedup"] = r["train_s"] / base["train_s"]
            r["rss_over_saelab"] = r["peak_rss_mb"] / base["peak_rss_mb"]
    report = {"label": a.label, "d_in": d, "d_sae": d * a.expansion, "k": a.k, "l1": a.l1, "batch": a.batch,
              "steps": a.steps, "rows": rows, "lr": a.lr, "held_out_rows": a.held_out, "threads": a.threads,
              "store": a.store, "results": results}
    existing = json.load(open(a.json)) if os.path.exists(a.json) else {}
    existing[a.label] = report
    with open(a.json + ".tmp", "w") as f:
        json.dump(existing, f, indent=1)
    os.replace(a.json + ".tmp", a.json)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["run", "child"])
    p.add_argument("store")
    p.add_argument("json")
    p.add_argument("--label", default="")
    p.add_argument("--trainer", default="")
    p.add_argument("--arch", default="topk")
    p.add_argument("--expansion", type=int, default=4)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--l1", type=float, default=5.0)
    p.add_argument("--batch", type=int, default=2048)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--held-out", type=int, default=8192)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--saelab", default="build/saelab")
    p.add_argument("--only", default="")
    a = p.parse_args()
    if a.mode == "child":
        a.out = a.json
        child(a)
    else:
        run(a)


if __name__ == "__main__":
    main()
