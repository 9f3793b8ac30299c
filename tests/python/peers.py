"""saelab's files against the peers' own libraries (issue 28): runs in the pinned environment of
python/peers.lock (scripts/python-env), never under Debian's Python.

  peers.py train-saelens ACTS OUT --hook H --model-name M --context-size C [--steps N]
      Trains one SAE per architecture SAELens trains (standard, gated, jumprelu, topk, batchtopk,
      matryoshka_batchtopk) with SAELens' own SAETrainer on the rows of ACTS, saves each with
      save_inference_model to OUT/saelens-<arch>, loads it back with SAE.load_from_disk and encodes
      ACTS with it.
  peers.py train-sparsify ACTS OUT [--steps N]
      Trains TopK sparse coders with sparsify's own Trainer on a small random-weight GPT-2 built
      with transformers (width = ACTS' width) and saves them as sparsify does (OUT/sparsify/<run>/
      <hookpoint>); loads each with SparseCoder.load_from_disk and encodes ACTS.
  peers.py train-dl ACTS OUT [--steps N]
      Trains one dictionary per dictionary_learning trainer (standard, gated, topk, batchtopk,
      jumprelu, matryoshka_batchtopk) with its trainSAE on the rows of ACTS; loads each ae.pt with
      the trainer's dictionary class and encodes ACTS.
  peers.py load-saelens ACTS OUT DIR...      SAE.load_from_disk on each folder, then encode/decode
                                             (a transcoder: encode, and its forward for the prediction).
  peers.py make-saelens-transcoders ACTS OUT
      One transcoder of each SAELens class (transcoder, skip_transcoder, jumprelu_transcoder,
      jumprelu_skip_transcoder) with random weights and d_out = d_in - 8, saved with save_model to
      OUT/<architecture>; encodes ACTS and predicts with the class's own forward.
  peers.py load-circuit-tracer ACTS OUT DIR...
      Each DIR a circuit-tracer transcoder set: config.yaml read with yaml.safe_load, its layer files
      loaded with circuit_tracer's load_transcoder_set; every layer encodes ACTS and predicts with
      its forward (reference "<i>.<layer>.codes" / ".x_hat").
  peers.py make-circuit-tracer ACTS OUT
      Two sets of two layers with random weights, built as circuit_tracer's SingleLayerTranscoder /
      TranscoderSet and written with its to_safetensors plus a config.yaml as its hub repositories
      carry: OUT/relu-skip (ReLU, W_skip) and OUT/jumprelu (JumpReLU thresholds).
  peers.py make-gemma-scope ACTS OUT
      Gemma Scope transcoder files with random weights: OUT/stored/params.npz (np.savez) and
      OUT/deflated/params.npz (np.savez_compressed, W_dec in Fortran order); each read back with
      circuit_tracer's load_gemma_scope_transcoder, which encodes ACTS and predicts.
  peers.py load-sparsify ACTS OUT DIR...     SparseCoder.load_from_disk on each folder.
  peers.py load-dl ACTS OUT DIR...           each DIR/ae.pt with the dictionary class DIR/config.json names.

Each command writes OUT/reference.safetensors ("<name>.codes" [n, d_sae] dense, "<name>.x_hat"
[n, d_in], float32 as the library computes them) and OUT/expected.json (per name: folder,
architecture as saelab should read it, k, and what the library itself reports).
ACTS is a safetensors file with "acts" [n, d] (the rows to encode; training reads them too).
"""
import argparse
import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file

torch.manual_seed(0)
torch.set_num_threads(1)
# sparsify decodes with a Triton kernel whenever triton imports, which fails without a GPU driver;
# this is sparsify's own switch to its eager decoder.
os.environ.setdefault("SPARSIFY_DISABLE_TRITON", "1")


def acts_of(path):
    acts = load_file(path)["acts"].float()
    if acts.dim() != 2:
        sys.exit(f"peers.py: {path}: 'acts' must be [n, d], got {list(acts.shape)}")
    return acts


def batches(acts, batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    while True:
        for idx in torch.randperm(acts.shape[0], generator=g).split(batch):
            if idx.numel() == batch:
                yield acts[idx]


def write(out, reference, expected):
    os.makedirs(out, exist_ok=True)
    save_file({k: v.contiguous().float() for k, v in reference.items()}, os.path.join(out, "reference.safetensors"))
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)


# ------------------------------------------------------------------------------------- SAELens
def saelens_codes(sae, acts):
    from sae_lens.saes.transcoder import Transcoder
    with torch.no_grad():
        codes = sae.encode(acts)
        # A transcoder's prediction is its forward (decode plus, for the skip classes, x W_skipᵀ).
        return codes, sae(acts) if isinstance(sae, Transcoder) else sae.decode(codes)


def train_saelens(a):
    from sae_lens import (SAE, BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig, GatedTrainingSAE,
                          GatedTrainingSAEConfig, JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig,
                          MatryoshkaBatchTopKTrainingSAE, MatryoshkaBatchTopKTrainingSAEConfig,
                          StandardTrainingSAE, StandardTrainingSAEConfig, TopKTrainingSAE, TopKTrainingSAEConfig)
    from sae_lens.config import SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    acts = acts_of(a.acts)
    d = acts.shape[1]
    d_sae, k, batch = 4 * d, 8, 64
    common = dict(d_in=d, d_sae=d_sae)
    # What SAELens saves for inference, and so what saelab must read: BatchTopK and Matryoshka
    # BatchTopK are saved as JumpReLU with their learned threshold.
    archs = {
        "standard": (StandardTrainingSAE, StandardTrainingSAEConfig(**common, l1_coefficient=1.0), "standard", None),
        "gated": (GatedTrainingSAE, GatedTrainingSAEConfig(**common, l1_coefficient=1.0), "gated", None),
        "jumprelu": (JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig(**common, l0_coefficient=0.1), "jumprelu", None),
        "topk": (TopKTrainingSAE, TopKTrainingSAEConfig(**common, k=k), "topk", k),
        "batchtopk": (BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig(**common, k=k), "jumprelu", None),
        "matryoshka_batchtopk": (MatryoshkaBatchTopKTrainingSAE,
                                 MatryoshkaBatchTopKTrainingSAEConfig(**common, k=k, matryoshka_widths=[d, 2 * d, d_sae]),
                                 "jumprelu", None),
    }
    reference, expected = {}, {}
    for name, (cls, cfg, read_as, want_k) in archs.items():
        cfg.metadata.hook_name = a.hook
        cfg.metadata.model_name = a.model_name
        cfg.metadata.context_size = a.context_size
        sae = cls(cfg)
        trainer_cfg = SAETrainerConfig(total_training_samples=a.steps * batch, train_batch_size_samples=batch,
                                       lr=1e-3, lr_end=1e-3, device="cpu", feature_sampling_window=a.steps,
                                       dead_feature_window=a.steps)
        SAETrainer(trainer_cfg, sae, batches(acts, batch)).fit()
        folder = f"saelens-{name}"
        sae.save_inference_model(os.path.join(a.out, folder))
        loaded = SAE.load_from_disk(os.path.join(a.out, folder))  # the reference is what SAELens reads back
        codes, x_hat = saelens_codes(loaded, acts)
        reference[f"{folder}.codes"], reference[f"{folder}.x_hat"] = codes, x_hat
        expected[folder] = {"folder": folder, "architecture": read_as, "k": want_k, "trained_as": name,
                            "saelens_architecture": loaded.cfg.architecture(), "l0": float((codes != 0).sum(-1).float().mean())}
    write(a.out, reference, expected)


def load_saelens(a):
    from sae_lens import SAE
    acts = acts_of(a.acts)
    reference, expected = {}, {}
    for i, folder in enumerate(a.dirs):
        # SAELens computes in the cfg's dtype; float32 (its own dtype override) for half-precision files,
        # as saelab computes.
        sae = SAE.load_from_disk(folder, dtype="float32")
        codes, x_hat = saelens_codes(sae, acts)
        reference[f"{i}.codes"], reference[f"{i}.x_hat"] = codes, x_hat
        meta = sae.cfg.metadata
        expected[str(i)] = {"folder": folder, "architecture": sae.cfg.architecture(),
                            "k": getattr(sae.cfg, "k", None), "dtype": sae.cfg.dtype,
                            "metadata": {key: meta.get(key) for key in
                                         ["hook_name", "hook_name_out", "model_name", "context_size", "dataset_path",
                                          "sae_lens_version"]},
                            "d_out": getattr(sae.cfg, "d_out", None)}
    write(a.out, reference, expected)


# ------------------------------------------------------------------------------------ sparsify
def sparsify_codes(sae, acts):
    with torch.no_grad():
        enc = sae.encode(acts)
        codes = torch.zeros(acts.shape[0], sae.num_latents).scatter_(-1, enc.top_indices, enc.top_acts.float())
        x_hat = sae.decode(enc.top_acts, enc.top_indices)
        if sae.W_skip is not None:  # as SparseCoder.forward adds it
            x_hat = x_hat + acts.to(sae.dtype) @ sae.W_skip.mT
        return codes, x_hat


def train_sparsify(a):
    from sparsify import SaeConfig, SparseCoder, TrainConfig, Trainer
    from transformers import GPT2Config, GPT2LMHeadModel

    acts = acts_of(a.acts)
    d = acts.shape[1]
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=d, n_head=4, n_positions=64, vocab_size=512))
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 512, (a.steps * 4, 32), generator=g)
    # A map-style dataset of {"input_ids": [32]} rows, which is what the Trainer's DataLoader reads
    # (datasets' torch formatter is not used: with torchvision 0.26 it fails on a missing VideoReader).
    data = [{"input_ids": row} for row in ids]
    save_dir = os.path.join(a.out, "sparsify")
    # --transcode: skip transcoders of each block's MLP (its input predicts its output), as sparsify
    # trains them with transcode=True and skip_connection=True.
    coder = SaeConfig(k=8, num_latents=4 * d, transcode=a.transcode, skip_connection=a.transcode)
    cfg = TrainConfig(coder, batch_size=4, log_to_wandb=False, save_dir=save_dir, run_name="run", save_every=10 ** 9,
                      optimizer="adam", lr=1e-3, lr_warmup_steps=1, hookpoints=["h.*.mlp"] if a.transcode else [])
    trainer = Trainer(cfg, data, model)
    trainer.fit()
    reference, expected = {}, {}
    run = os.path.join(save_dir, "run")
    for hookpoint in sorted(os.listdir(run)):
        folder = os.path.join(run, hookpoint)
        if not os.path.isfile(os.path.join(folder, "cfg.json")):
            continue
        sae = SparseCoder.load_from_disk(folder)
        codes, x_hat = sparsify_codes(sae, acts)
        name = f"sparsify-{hookpoint}"
        reference[f"{name}.codes"], reference[f"{name}.x_hat"] = codes, x_hat
        expected[name] = {"folder": os.path.relpath(folder, a.out), "architecture": "topk", "k": sae.cfg.k,
                          "hookpoint": hookpoint, "transcode": sae.cfg.transcode,
                          "skip": sae.W_skip is not None}
    if not expected:
        sys.exit(f"peers.py: sparsify's Trainer saved no sparse coder under {run}")
    write(a.out, reference, expected)


def load_sparsify(a):
    from sparsify import SparseCoder
    acts = acts_of(a.acts)
    reference, expected = {}, {}
    for i, folder in enumerate(a.dirs):
        sae = SparseCoder.load_from_disk(folder)
        codes, x_hat = sparsify_codes(sae, acts)
        reference[f"{i}.codes"], reference[f"{i}.x_hat"] = codes, x_hat
        expected[str(i)] = {"folder": folder, "k": sae.cfg.k, "num_latents": sae.num_latents,
                            "transcode": sae.cfg.transcode, "skip": sae.W_skip is not None}
    write(a.out, reference, expected)


# --------------------------------------------------------------------------- dictionary_learning
def dl_classes():
    from dictionary_learning.dictionary import AutoEncoder, AutoEncoderNew, GatedAutoEncoder, JumpReluAutoEncoder
    from dictionary_learning.trainers.batch_top_k import BatchTopKSAE
    from dictionary_learning.trainers.matryoshka_batch_top_k import MatryoshkaBatchTopKSAE
    from dictionary_learning.trainers.top_k import AutoEncoderTopK
    return {c.__name__: c for c in [AutoEncoder, AutoEncoderNew, GatedAutoEncoder, JumpReluAutoEncoder, BatchTopKSAE,
                                    MatryoshkaBatchTopKSAE, AutoEncoderTopK]}


def dl_codes(folder, acts):
    """Loads FOLDER/ae.pt with the class its config.json names, as dictionary_learning's users do."""
    name = json.load(open(os.path.join(folder, "config.json")))["trainer"]["dict_class"]
    cls = dl_classes()[name]
    ae = cls.from_pretrained(os.path.join(folder, "ae.pt"), device="cpu")
    with torch.no_grad():
        codes = ae.encode(acts)  # BatchTopK / Matryoshka: the learned threshold (use_threshold=True)
        return name, codes, ae.decode(codes)


def load_dl(a):
    acts = acts_of(a.acts)
    reference, expected = {}, {}
    for i, folder in enumerate(a.dirs):
        name, codes, x_hat = dl_codes(folder, acts)
        reference[f"{i}.codes"], reference[f"{i}.x_hat"] = codes, x_hat
        expected[str(i)] = {"folder": folder, "dict_class": name}
    write(a.out, reference, expected)


def train_dl(a):
    import dictionary_learning.trainers as T
    from dictionary_learning.dictionary import AutoEncoder, GatedAutoEncoder, JumpReluAutoEncoder
    from dictionary_learning.trainers.batch_top_k import BatchTopKSAE
    from dictionary_learning.trainers.matryoshka_batch_top_k import (MatryoshkaBatchTopKSAE,
                                                                      MatryoshkaBatchTopKTrainer)
    from dictionary_learning.trainers.top_k import AutoEncoderTopK
    from dictionary_learning.training import trainSAE

    acts = acts_of(a.acts)
    d = acts.shape[1]
    d_sae, k, batch = 4 * d, 8, 64
    base = dict(steps=a.steps, activation_dim=d, dict_size=d_sae, layer=1, lm_name=a.model_name, device="cpu")
    # (name, trainer, dictionary class, extra arguments, architecture saelab reads it as)
    plans = [
        ("standard", T.StandardTrainer, AutoEncoder, dict(lr=1e-3, l1_penalty=0.1, warmup_steps=1, sparsity_warmup_steps=1), "standard"),
        ("gated", T.GatedSAETrainer, GatedAutoEncoder, dict(lr=1e-3, l1_penalty=0.1, warmup_steps=1, sparsity_warmup_steps=1), "gated"),
        ("topk", T.TopKTrainer, AutoEncoderTopK, dict(k=k, warmup_steps=1, threshold_start_step=1), "topk"),
        ("batchtopk", T.BatchTopKTrainer, BatchTopKSAE, dict(k=k, warmup_steps=1, threshold_start_step=1), "batchtopk"),
        ("jumprelu", T.JumpReluTrainer, JumpReluAutoEncoder, dict(lr=1e-3, target_l0=k, warmup_steps=1, sparsity_warmup_steps=1), "jumprelu"),
        ("matryoshka_batchtopk", MatryoshkaBatchTopKTrainer, MatryoshkaBatchTopKSAE,
         dict(k=k, group_fractions=[0.25, 0.25, 0.5], warmup_steps=1, threshold_start_step=1), "batchtopk"),
    ]
    configs = []
    for name, trainer, dict_class, extra, _ in plans:
        configs.append({"trainer": trainer, "dict_class": dict_class, **base, **extra, "wandb_name": name})
    save_dir = os.path.join(a.out, "dl")
    trainSAE(data=batches(acts, batch), trainer_configs=configs, steps=a.steps, save_dir=save_dir, device="cpu")
    reference, expected = {}, {}
    for i, (name, _, dict_class, extra, read_as) in enumerate(plans):
        folder = os.path.join(save_dir, f"trainer_{i}")
        saved_as, codes, x_hat = dl_codes(folder, acts)
        assert saved_as == dict_class.__name__, (saved_as, dict_class)
        key = f"dl-{name}"
        reference[f"{key}.codes"], reference[f"{key}.x_hat"] = codes, x_hat
        expected[key] = {"folder": os.path.relpath(folder, a.out), "architecture": read_as,
                         "k": k if read_as in ("topk", "batchtopk") else None, "dict_class": dict_class.__name__}
    write(a.out, reference, expected)


def make_saelens_transcoders(a):
    from sae_lens import (JumpReLUSkipTranscoder, JumpReLUSkipTranscoderConfig, JumpReLUTranscoder,
                          JumpReLUTranscoderConfig, SkipTranscoder, SkipTranscoderConfig, Transcoder, TranscoderConfig)
    from sae_lens.saes.sae import SAEMetadata
    acts = acts_of(a.acts)
    d_in = acts.shape[1]
    d_out, d_sae = d_in - 8, 4 * d_in
    reference, expected = {}, {}
    g = torch.Generator().manual_seed(5)
    for cls, cfg_cls in [(Transcoder, TranscoderConfig), (SkipTranscoder, SkipTranscoderConfig),
                         (JumpReLUTranscoder, JumpReLUTranscoderConfig),
                         (JumpReLUSkipTranscoder, JumpReLUSkipTranscoderConfig)]:
        meta = SAEMetadata(hook_name="blocks.1.hook_resid_mid", hook_name_out="blocks.1.hook_mlp_out",
                           model_name="brown-gpt", context_size=24)
        cfg = cfg_cls(d_in=d_in, d_sae=d_sae, d_out=d_out, apply_b_dec_to_input=False, metadata=meta)
        sae = cls(cfg)
        with torch.no_grad():
            for name, param in sae.named_parameters():
                param.copy_(0.3 * torch.randn(param.shape, generator=g))
            sae.W_enc.copy_(torch.randn(sae.W_enc.shape, generator=g) / d_in ** 0.5)
            if hasattr(sae, "threshold"):
                sae.threshold.copy_(0.5 * torch.rand(sae.threshold.shape, generator=g))
        arch = cfg.architecture()
        folder = os.path.join(a.out, arch)
        sae.save_model(folder)
        codes, x_hat = saelens_codes(sae, acts)
        reference[f"{arch}.codes"], reference[f"{arch}.x_hat"] = codes, x_hat
        expected[arch] = {"folder": arch, "architecture": "jumprelu" if "jumprelu" in arch else "standard",
                          "skip": "skip" in arch, "d_out": d_out, "k": None}
    write(a.out, reference, expected)


# ------------------------------------------------------------------------------ circuit-tracer
def circuit_tracer_reference(tset, acts, key, reference):
    with torch.no_grad():
        for layer, tc in enumerate(tset.transcoders):
            reference[f"{key}.{layer}.codes"] = tc.encode(acts)
            reference[f"{key}.{layer}.x_hat"] = tc.forward(acts)


def load_circuit_tracer(a):
    import yaml
    from circuit_tracer.transcoder.activation_functions import JumpReLU
    from circuit_tracer.transcoder.single_layer_transcoder import load_transcoder_set
    acts = acts_of(a.acts)
    reference, expected = {}, {}
    for i, folder in enumerate(a.dirs):
        with open(os.path.join(folder, "config.yaml")) as f:
            cfg = yaml.safe_load(f)
        if cfg["model_kind"] != "transcoder_set":
            sys.exit(f"peers.py: {folder}: model_kind is {cfg['model_kind']}")
        n = len([x for x in os.listdir(folder) if x.startswith("layer_") and x.endswith(".safetensors")])
        paths = {layer: os.path.join(folder, f"layer_{layer}.safetensors") for layer in range(n)}
        tset = load_transcoder_set(paths, scan="saelab", feature_input_hook=cfg["feature_input_hook"],
                                   feature_output_hook=cfg["feature_output_hook"], device=torch.device("cpu"),
                                   dtype=torch.float32, lazy_encoder=False, lazy_decoder=False)
        circuit_tracer_reference(tset, acts, str(i), reference)
        expected[str(i)] = {"folder": folder, "layers": n, "model_name": cfg.get("model_name"),
                            "feature_input_hook": tset.feature_input_hook,
                            "feature_output_hook": tset.feature_output_hook, "skip": tset.skip_connection,
                            "activation": ["jumprelu" if isinstance(tc.activation_function, JumpReLU) else "relu"
                                           for tc in tset.transcoders]}
    write(a.out, reference, expected)


def make_circuit_tracer(a):
    import torch.nn.functional as F
    import yaml
    from circuit_tracer.transcoder.activation_functions import JumpReLU
    from circuit_tracer.transcoder.single_layer_transcoder import SingleLayerTranscoder, TranscoderSet
    acts = acts_of(a.acts)
    d, f = acts.shape[1], 4 * acts.shape[1]
    g = torch.Generator().manual_seed(6)
    reference, expected = {}, {}
    for name, jump, skip in [("relu-skip", False, True), ("jumprelu", True, False)]:
        layers = {}
        for layer in range(2):
            act = JumpReLU(0.5 * torch.rand(f, generator=g), 0.1) if jump else F.relu
            tc = SingleLayerTranscoder(d, f, act, layer, skip_connection=skip, device=torch.device("cpu"),
                                       dtype=torch.float32)
            with torch.no_grad():
                tc.W_enc.copy_(torch.randn(f, d, generator=g) / d ** 0.5)
                tc.W_dec.copy_(0.3 * torch.randn(f, d, generator=g))
                tc.b_enc.copy_(0.1 * torch.randn(f, generator=g))
                tc.b_dec.copy_(0.1 * torch.randn(d, generator=g))
                if skip:
                    tc.W_skip.copy_(0.1 * torch.randn(d, d, generator=g))
            layers[layer] = tc
        tset = TranscoderSet(layers, feature_input_hook="hook_resid_mid", feature_output_hook="hook_mlp_out", scan=name)
        folder = os.path.join(a.out, name)
        tset.to_safetensors(folder)
        with open(os.path.join(folder, "config.yaml"), "w") as out:
            yaml.safe_dump({"model_name": "brown-gpt", "model_kind": "transcoder_set",
                            "feature_input_hook": "hook_resid_mid", "feature_output_hook": "hook_mlp_out"}, out)
        circuit_tracer_reference(tset, acts, name, reference)
        expected[name] = {"folder": name, "layers": 2, "architecture": "jumprelu" if jump else "standard", "skip": skip}
    write(a.out, reference, expected)


def make_gemma_scope(a):
    import numpy as np
    from circuit_tracer.transcoder.single_layer_transcoder import load_gemma_scope_transcoder
    acts = acts_of(a.acts)
    d, f = acts.shape[1], 4 * acts.shape[1]
    rng = np.random.default_rng(8)
    reference, expected = {}, {}
    for name, save in [("stored", np.savez), ("deflated", np.savez_compressed)]:
        params = {"W_enc": (rng.standard_normal((d, f)) / d ** 0.5).astype(np.float32),
                  "W_dec": (0.3 * rng.standard_normal((f, d))).astype(np.float32),
                  "b_enc": (0.1 * rng.standard_normal(f)).astype(np.float32),
                  "b_dec": (0.1 * rng.standard_normal(d)).astype(np.float32),
                  "threshold": (0.5 * rng.random(f)).astype(np.float32)}
        if name == "deflated":
            params["W_dec"] = np.asfortranarray(params["W_dec"])
        folder = os.path.join(a.out, name)
        os.makedirs(folder, exist_ok=True)
        save(os.path.join(folder, "params.npz"), **params)
        tc = load_gemma_scope_transcoder(os.path.join(folder, "params.npz"), 0, device=torch.device("cpu"))
        with torch.no_grad():
            reference[f"{name}.codes"] = tc.encode(acts)
            reference[f"{name}.x_hat"] = tc.forward(acts)
        expected[name] = {"folder": name}
    write(a.out, reference, expected)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    for cmd in ["train-saelens", "train-sparsify", "train-dl"]:
        s = sub.add_parser(cmd)
        s.add_argument("acts")
        s.add_argument("out")
        s.add_argument("--steps", type=int, default=30)
        s.add_argument("--hook", default="blocks.1.hook_resid_pre")
        s.add_argument("--model-name", default="brown-gpt")
        s.add_argument("--context-size", type=int, default=24)
        s.add_argument("--transcode", action="store_true")
    for cmd in ["load-saelens", "load-sparsify", "load-dl"]:
        s = sub.add_parser(cmd)
        s.add_argument("acts")
        s.add_argument("out")
        s.add_argument("dirs", nargs="+")
    for cmd in ["make-saelens-transcoders", "make-circuit-tracer", "make-gemma-scope"]:
        s = sub.add_parser(cmd)
        s.add_argument("acts")
        s.add_argument("out")
    s = sub.add_parser("load-circuit-tracer")
    s.add_argument("acts")
    s.add_argument("out")
    s.add_argument("dirs", nargs="+")
    a = p.parse_args()
    {"train-saelens": train_saelens, "train-sparsify": train_sparsify, "train-dl": train_dl,
     "load-saelens": load_saelens, "load-sparsify": load_sparsify, "load-dl": load_dl,
     "make-saelens-transcoders": make_saelens_transcoders, "make-circuit-tracer": make_circuit_tracer,
     "load-circuit-tracer": load_circuit_tracer, "make-gemma-scope": make_gemma_scope}[a.cmd](a)


if __name__ == "__main__":
    main()
