#!/usr/bin/python3
"""An independent reference for saelab's SAE format readers and writers.

Written from each library's own semantics, read from its source: SAELens v6.18 and v5.11
(sae_lens/saes/*.py, loading/pretrained_sae_loaders.py; sae_lens/sae.py), EleutherAI sparsify
(sparsify/sparse_coder.py) and saprmarks/dictionary_learning (dictionary.py, trainers/*.py).
Uses torch and the standard library only (no saelab code, no safetensors package); computes in
float64.

  sae_formats.py fixtures ACTS OUT --hook H --model-name M --context-size C
      ACTS is a safetensors file with "acts" [n, T, d]. Writes one folder per layout under OUT, each
      as its library writes it, then OUT/expected.json (per layout: folder, what saelab should read)
      and OUT/reference.safetensors (per layout: "<name>.x_hat" [n, T, d] and "<name>.codes"
      [n, T, d_sae], computed with that library's semantics). Weights are drawn again until no
      decision of any code (a ReLU, a threshold, the k-th versus the (k+1)-th value) lies within
      float32 rounding of its boundary, so a float32 reader must give the same codes.
  sae_formats.py replay ACTS OUT DIR...
      Loads each SAE folder as SAELens v5 loads it (a replay of its loader: version rules, required
      keys, strict tensors; v6 is checked with SAELens itself in tests/peers_test.cpp), encodes ACTS,
      and writes OUT.safetensors ("<i>.v5.codes") and OUT.json (per folder: what v5 saw, or why it
      refused the folder).
"""
import json
import os
import struct
import sys

import torch

# ---------------------------------------------------------------- safetensors, from its spec
ST_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
             "I64": torch.int64, "I32": torch.int32}
ST_NAMES = {v: k for k, v in ST_DTYPES.items()}


def write_st(path, tensors):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": ST_NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_st(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    body = data[8 + n:]
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        raw = bytearray(body[b:end])
        t = torch.frombuffer(raw, dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
        out[name] = t.view(ST_DTYPES[e["dtype"]]).reshape(e["shape"]).clone()
    return out


# ---------------------------------------------------------------- decisions near a boundary
class Margins:
    """Collects every decision of an encoding; ok() when none lies within float32 rounding."""

    def __init__(self):
        self.bad = 0

    def check(self, value, boundary, scale):
        # float32 dot products of length d differ by about 1e-7 * sum|x_i w_i|; keep 30x that away.
        tol = 3e-6 * scale + 1e-6
        self.bad += int(((value - boundary).abs() <= tol).sum())

    def ok(self):
        return self.bad == 0


def pre_scale(xin, W):  # [.., d] @ [d, F]: the size of the terms summed into each pre-activation
    return xin.abs() @ W.abs()


def topk_code(pre, k, scale, margins, relu_first):
    """The k largest per row, ReLU'd (SAELens: topk then ReLU; sparsify and dictionary_learning:
    ReLU then topk: the same dense code)."""
    if relu_first:
        pre = torch.relu(pre)
    vals, idx = pre.topk(k + 1 if k < pre.shape[-1] else k, dim=-1)
    if margins is not None and k < pre.shape[-1]:
        s = scale.gather(-1, idx)
        margins.check(vals[..., k - 1] - vals[..., k], torch.zeros_like(vals[..., 0]), s[..., k - 1] + s[..., k])
    vals, idx = vals[..., :k], idx[..., :k]
    if margins is not None:
        margins.check(vals, torch.zeros_like(vals), scale.gather(-1, idx))
    return torch.zeros_like(pre).scatter(-1, idx, torch.relu(vals))


# ---------------------------------------------------------------- SAELens
DTYPE_MAP = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16,
             "torch.float32": torch.float32, "torch.float64": torch.float64, "torch.float16": torch.float16,
             "torch.bfloat16": torch.bfloat16}
LLM_METADATA_KEYS = ["model_name", "hook_name", "model_class_name", "hook_head_index", "model_from_pretrained_kwargs",
                     "prepend_bos", "exclude_special_tokens", "neuronpedia_id", "context_size", "seqpos_slice",
                     "dataset_path", "sae_lens_version", "sae_lens_training_version", "hook_name_out",
                     "hook_head_index_out"]


class Refused(Exception):
    pass


def major(version):
    digits = ""
    for ch in version:
        if not ch.isdigit():
            break
        digits += ch
    if not digits:
        raise Refused("InvalidVersion: %r" % version)
    return int(digits)


def read_components(d, cfg):
    """read_sae_components_from_disk: cast to cfg dtype, the scaling_factor rules."""
    if "dtype" not in cfg:
        raise Refused("KeyError: 'dtype'")
    if cfg["dtype"] not in DTYPE_MAP:
        raise Refused("KeyError: dtype %r" % cfg["dtype"])
    st = read_st(os.path.join(d, "sae_weights.safetensors"))
    st = {k: v.to(DTYPE_MAP[cfg["dtype"]]) for k, v in st.items()}
    if "scaling_factor" in st:
        if torch.allclose(st["scaling_factor"].double(), torch.ones_like(st["scaling_factor"]).double()):
            del st["scaling_factor"]
            cfg["finetuning_scaling_factor"] = False
        else:
            if "finetuning_scaling_factor" not in cfg:
                raise Refused("KeyError: 'finetuning_scaling_factor'")
            if not cfg["finetuning_scaling_factor"]:
                raise Refused("Scaling factor is present but finetuning_scaling_factor is False.")
            st["finetuning_scaling_factor"] = st.pop("scaling_factor")
    else:
        cfg["finetuning_scaling_factor"] = False
    return st


def expected_tensors(arch, fsf):
    base = {"W_enc", "W_dec", "b_dec"}
    if arch == "gated":
        return base | {"b_gate", "b_mag", "r_mag"}
    t = base | {"b_enc"}
    if arch == "jumprelu":
        t |= {"threshold"}
    if fsf:
        t |= {"finetuning_scaling_factor"}
    return t


def strict(st, want):
    if set(st) != want:
        raise Refused("load_state_dict strict: missing %s, unexpected %s" % (sorted(want - set(st)), sorted(set(st) - want)))


def handle_pre_6(cfg):
    c = dict(cfg)
    for a, b in (("hook_point", "hook_name"), ("hook_point_head_index", "hook_head_index"),
                 ("activation_fn_str", "activation_fn")):
        if a in c:
            c[b] = c.pop(a)
    for k, v in (("prepend_bos", True), ("dataset_trust_remote_code", True), ("apply_b_dec_to_input", True),
                 ("finetuning_scaling_factor", False), ("sae_lens_training_version", None), ("activation_fn", "relu"),
                 ("architecture", "standard"), ("neuronpedia_id", None)):
        c.setdefault(k, v)
    if c.get("hook_name") is None:
        raise Refused("TypeError: hook_name is None")
    c.setdefault("reshape_activations", "hook_z" if "hook_z" in c["hook_name"] else "none")
    kw = c.get("activation_fn_kwargs") or {}
    if c["activation_fn"] == "topk" and kw.get("k") is not None:
        c["architecture"] = "topk"
        c["k"] = kw["k"]
    na = c.get("normalize_activations")
    c["normalize_activations"] = "expected_average_only_in" if na is True else ("none" if na in (False, None) else na)
    c["metadata"] = {k: c[k] for k in LLM_METADATA_KEYS if k in c}
    return c


def saelens_v6_load(d):
    cfg = json.load(open(os.path.join(d, "cfg.json")))
    cfg["device"] = "cpu"
    st = read_components(d, cfg)
    version = cfg.get("sae_lens_version") or (cfg.get("metadata") or {}).get("sae_lens_version")
    if not version or major(version) < 6:
        cfg = handle_pre_6(cfg)
    arch = cfg.get("architecture")
    if arch not in ("standard", "gated", "jumprelu", "topk"):
        raise Refused("KeyError: architecture %r" % arch)
    if cfg.get("normalize_activations", "none") not in ("none", "expected_average_only_in", "constant_norm_rescale",
                                                        "layer_norm"):
        raise Refused("ValueError: normalize_activations")
    if "d_in" not in cfg or "d_sae" not in cfg:
        raise Refused("TypeError: d_in / d_sae")
    strict(st, expected_tensors(arch, False))  # v6 classes have no finetuning scale
    return {"arch": arch, "d_in": cfg["d_in"], "d_sae": cfg["d_sae"], "k": cfg.get("k", 100),
            "rescale": bool(cfg.get("rescale_acts_by_decoder_norm", False)) if arch == "topk" else False,
            "apply_b_dec": cfg.get("apply_b_dec_to_input", True), "activation": "relu",
            "norm": cfg.get("normalize_activations", "none"), "reshape": cfg.get("reshape_activations", "none"),
            "tensors": {k: v.double() for k, v in st.items()}, "metadata": cfg.get("metadata", {})}


V5_REQUIRED = ["architecture", "d_in", "d_sae", "activation_fn_str", "apply_b_dec_to_input",
               "finetuning_scaling_factor", "context_size", "model_name", "hook_name", "hook_layer", "hook_head_index",
               "prepend_bos", "dataset_path", "dataset_trust_remote_code", "normalize_activations", "dtype", "device",
               "sae_lens_training_version"]


def saelens_v5_load(d):
    cfg = json.load(open(os.path.join(d, "cfg.json")))
    cfg["device"] = "cpu"
    st = read_components(d, cfg)
    for k, v in (("prepend_bos", True), ("dataset_trust_remote_code", True), ("apply_b_dec_to_input", True),
                 ("finetuning_scaling_factor", False), ("sae_lens_training_version", None),
                 ("activation_fn_str", cfg.get("activation_fn", "relu")), ("architecture", "standard"),
                 ("neuronpedia_id", None), ("normalize_activations", "none")):
        cfg.setdefault(k, v)
    na = cfg["normalize_activations"]
    cfg["normalize_activations"] = "expected_average_only_in" if na is True else ("none" if na is False else na)
    for a, b in (("hook_point", "hook_name"), ("hook_point_head_index", "hook_head_index"),
                 ("hook_point_layer", "hook_layer")):
        if a in cfg:
            cfg[b] = cfg.pop(a)
    if "activation_fn" in cfg:
        if "activation_fn_str" in cfg and cfg["activation_fn_str"] != cfg["activation_fn"]:
            raise Refused("ambiguous: activation_fn and activation_fn_str differ")
        cfg["activation_fn_str"] = cfg.pop("activation_fn")
    missing = [k for k in V5_REQUIRED if k not in cfg]
    if missing:
        raise Refused("TypeError: SAEConfig missing %s" % missing)
    if "seqpos_slice" in cfg and cfg["seqpos_slice"] is None:
        raise Refused("TypeError: seqpos_slice null")
    arch = cfg["architecture"]
    if arch not in ("standard", "gated", "jumprelu", "topk"):
        raise Refused("ValueError: Invalid architecture %r" % arch)
    act = cfg["activation_fn_str"]
    kw = cfg.get("activation_fn_kwargs") or {}
    if act == "topk" and "k" not in kw:
        raise Refused("ValueError: topk needs k")
    if act not in ("relu", "tanh-relu", "topk"):
        raise Refused("ValueError: activation %r" % act)
    strict(st, expected_tensors(arch, cfg["finetuning_scaling_factor"] and arch != "gated"))
    return {"arch": "topk" if act == "topk" and arch in ("standard", "topk") else arch, "d_in": cfg["d_in"],
            "d_sae": cfg["d_sae"], "k": kw.get("k"), "rescale": False, "apply_b_dec": cfg["apply_b_dec_to_input"],
            "activation": act, "norm": cfg["normalize_activations"], "reshape": "hook_z" if cfg["hook_name"].endswith("_z") else "none",
            "tensors": {k: v.double() for k, v in st.items()},
            "metadata": {k: cfg.get(k) for k in ("model_name", "hook_name", "hook_layer", "hook_head_index",
                                                 "context_size", "dataset_path", "prepend_bos")}}


def saelens_encode(s, x, margins=None):
    t = s["tensors"]
    if s["norm"] in ("constant_norm_rescale", "layer_norm") or s["reshape"] != "none":
        raise Refused("runtime normalisation / hook_z: outside this reference")
    xin = x - t["b_dec"] * (1.0 if s["apply_b_dec"] else 0.0)
    scale = pre_scale(xin, t["W_enc"])
    if s["arch"] == "gated":
        h = xin @ t["W_enc"]
        gate = h + t["b_gate"]
        mag = h * t["r_mag"].exp() + t["b_mag"]
        if margins is not None:
            margins.check(gate, torch.zeros_like(gate), scale)
            margins.check(mag, torch.zeros_like(mag), scale * t["r_mag"].exp())
        return (gate > 0).double() * torch.relu(mag)
    pre = xin @ t["W_enc"] + t["b_enc"]
    if s["arch"] == "jumprelu":
        theta = t["threshold"]
        if margins is not None:  # ReLU(pre)·1[pre > θ] = pre·1[pre > max(θ, 0)]
            margins.check(pre, theta.clamp_min(0).expand_as(pre), scale)
        return torch.relu(pre) * (pre > theta).double()
    if s["arch"] == "topk":
        if s["rescale"]:
            n = t["W_dec"].norm(dim=-1)
            pre, scale = pre * n, scale * n
        return topk_code(pre, s["k"], scale, margins, relu_first=False)
    if margins is not None:
        margins.check(pre, torch.zeros_like(pre), scale)
    if s["activation"] == "tanh-relu":
        return torch.tanh(torch.relu(pre))
    return torch.relu(pre)


def saelens_decode(s, f):
    t = s["tensors"]
    if s["rescale"]:
        f = f / t["W_dec"].norm(dim=-1)
    if "finetuning_scaling_factor" in t:
        f = f * t["finetuning_scaling_factor"]
    return f @ t["W_dec"] + t["b_dec"]


# ---------------------------------------------------------------- sparsify
def sparsify_encode_decode(d, x, margins=None):
    cfg = json.load(open(os.path.join(d, "cfg.json")))
    st = {k: v.double() for k, v in read_st(os.path.join(d, "sae.safetensors")).items()}
    assert not cfg.get("transcode") and not cfg.get("skip_connection")
    xin = x - st["b_dec"]
    W = st["encoder.weight"].T
    pre = xin @ W + st["encoder.bias"]
    f = topk_code(pre, cfg["k"], pre_scale(xin, W), margins, relu_first=True)
    return f, f @ st["W_dec"] + st["b_dec"]


# ---------------------------------------------------------------- dictionary_learning
def dl_encode_decode(d, x, margins=None):
    cls = json.load(open(os.path.join(d, "config.json")))["trainer"]["dict_class"]
    sd = {k: v for k, v in torch.load(os.path.join(d, "ae.pt")).items()}
    t = {k: v.double() if v.is_floating_point() else v for k, v in sd.items()}
    chk = margins.check if margins is not None else (lambda *a: None)
    if cls == "AutoEncoder":  # AutoEncoder.from_pretrained normalises the decoder by default
        norms = t["decoder.weight"].norm(dim=0)
        if not torch.allclose(norms, torch.ones_like(norms)):
            t["decoder.weight"] = t["decoder.weight"] / norms
            t["encoder.weight"] = t["encoder.weight"] * norms[:, None]
            t["encoder.bias"] = t["encoder.bias"] * norms
    if cls in ("AutoEncoder", "AutoEncoderNew"):
        xin = x - t["bias"] if cls == "AutoEncoder" else x
        W = t["encoder.weight"].T
        pre = xin @ W + t["encoder.bias"]
        chk(pre, torch.zeros_like(pre), pre_scale(xin, W))
        f = torch.relu(pre)
        return f, f @ t["decoder.weight"].T + (t["bias"] if cls == "AutoEncoder" else t["decoder.bias"])
    if cls == "GatedAutoEncoder":
        xin = x - t["decoder_bias"]
        W = t["encoder.weight"].T
        e = xin @ W
        s = pre_scale(xin, W)
        chk(e + t["gate_bias"], torch.zeros_like(e), s)
        mag = t["r_mag"].exp() * e + t["mag_bias"]
        chk(mag, torch.zeros_like(e), s * t["r_mag"].exp())
        f = ((e + t["gate_bias"]) > 0).double() * torch.relu(mag)
        return f, f @ t["decoder.weight"].T + t["decoder_bias"]
    if cls in ("AutoEncoderTopK", "BatchTopKSAE", "MatryoshkaBatchTopKSAE"):
        matryoshka = cls == "MatryoshkaBatchTopKSAE"
        W = t["W_enc"] if matryoshka else t["encoder.weight"].T
        xin = x - t["b_dec"]
        pre = xin @ W + (t["b_enc"] if matryoshka else t["encoder.bias"])
        s = pre_scale(xin, W)
        if cls == "AutoEncoderTopK":
            f = topk_code(pre, int(t["k"]), s, margins, relu_first=True)
        else:
            post = torch.relu(pre)
            thr = float(t["threshold"])
            chk(pre, torch.full_like(pre, max(thr, 0.0)), s)
            f = post * (post > thr).double()
        dec = t["W_dec"] if matryoshka else t["decoder.weight"].T
        return f, f @ dec + t["b_dec"]
    if cls == "JumpReluAutoEncoder":
        pre = x @ t["W_enc"] + t["b_enc"]
        s = pre_scale(x, t["W_enc"])
        chk(pre, t["threshold"].clamp_min(0).expand_as(pre), s)
        f = torch.relu(pre * (pre > t["threshold"]).double())
        return f, f @ t["W_dec"] + t["b_dec"]
    raise Refused("dict_class %r" % cls)


# ---------------------------------------------------------------- fixtures
def random_weights(g, d, F, scale):
    """Encoder scaled so pre-activations of ACTS are O(1); decoder rows of unequal norms."""
    W_dec = torch.randn(F, d, generator=g, dtype=torch.float64)
    W_dec = W_dec / W_dec.norm(dim=1, keepdim=True) * (0.5 + 1.5 * torch.rand(F, 1, generator=g, dtype=torch.float64))
    W_enc = torch.randn(d, F, generator=g, dtype=torch.float64) / (scale * d ** 0.5) * 4
    b_enc = 0.3 * torch.randn(F, generator=g, dtype=torch.float64)
    b_dec = 0.1 * scale / d ** 0.5 * torch.randn(d, generator=g, dtype=torch.float64)
    return W_enc, b_enc, W_dec, b_dec


def f32(t):
    return t.to(torch.float32)


def saelens_flat_meta(args):
    return {"model_name": args["model_name"], "hook_name": args["hook"], "hook_layer": 1, "hook_head_index": None,
            "context_size": args["context_size"], "dataset_path": "brown", "prepend_bos": True}


def write_saelens(path, cfg, tensors):
    os.makedirs(path, exist_ok=True)
    write_st(os.path.join(path, "sae_weights.safetensors"), tensors)
    json.dump(cfg, open(os.path.join(path, "cfg.json"), "w"), indent=2)


def layout_saelens(name, args, g, x, d, F):
    """One SAELens layout: returns (cfg, tensors) for a draw of weights."""
    W_enc, b_enc, W_dec, b_dec = random_weights(g, d, F, args["scale"])
    meta = saelens_flat_meta(args)
    v6_meta = dict(meta, sae_lens_version="6.18.0", sae_lens_training_version="6.18.0")
    del v6_meta["hook_layer"]
    base6 = {"d_in": d, "d_sae": F, "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": True,
             "normalize_activations": "none", "reshape_activations": "none", "metadata": v6_meta}
    t = {"W_enc": f32(W_enc), "b_enc": f32(b_enc), "W_dec": f32(W_dec), "b_dec": f32(b_dec)}
    if name == "saelens-v6-standard":
        return dict(base6, architecture="standard"), t
    if name == "saelens-v6-gated":
        r_mag = 0.2 * torch.randn(F, generator=g, dtype=torch.float64)
        b_gate = f32(b_enc)
        b_mag = f32(0.3 * torch.randn(F, generator=g, dtype=torch.float64))
        return dict(base6, architecture="gated"), {"W_enc": t["W_enc"], "b_gate": b_gate, "b_mag": b_mag,
                                                   "r_mag": f32(r_mag), "W_dec": t["W_dec"], "b_dec": t["b_dec"]}
    if name == "saelens-v6-jumprelu-threshold-0":
        th = 0.3 * torch.rand(F, generator=g, dtype=torch.float64)
        th[: F // 4] = 0.0           # SAELens starts BatchTopK thresholds at 0
        th[F // 4: F // 4 + 4] = -0.2  # negative: the ReLU decides
        return dict(base6, architecture="jumprelu"), dict(t, threshold=f32(th))
    if name == "saelens-v6-topk-rescale":
        return dict(base6, architecture="topk", k=8, rescale_acts_by_decoder_norm=True), t
    if name == "saelens-v6-version-at-top-bf16":
        cfg = dict(base6, architecture="topk", k=6, dtype="bfloat16", apply_b_dec_to_input=False,
                   sae_lens_version="6.0.0")
        return cfg, {k: v.to(torch.bfloat16) for k, v in t.items()}
    flat = dict(meta, d_in=d, d_sae=F, dtype="float32", device="cpu", apply_b_dec_to_input=True,
                dataset_trust_remote_code=True, finetuning_scaling_factor=False, sae_lens_training_version="5.11.0",
                seqpos_slice=[None], model_from_pretrained_kwargs={}, neuronpedia_id=None)
    if name == "saelens-v5-topk-k8":
        return dict(flat, architecture="standard", activation_fn_str="topk", activation_fn_kwargs={"k": 8},
                    normalize_activations="none"), t
    if name == "saelens-v5-runner-topk":  # v5 training's runner cfg: activation_fn, version at the top
        cfg = dict(flat, architecture="topk", activation_fn="topk", activation_fn_kwargs={"k": 5},
                   normalize_activations="expected_average_only_in", sae_lens_version="5.11.0")
        return cfg, t
    if name == "saelens-pre6-hook-point-fp16":
        cfg = dict(flat, architecture="standard", activation_fn_str="relu", dtype="float16",
                   normalize_activations=False)
        cfg["hook_point"] = cfg.pop("hook_name")
        cfg["hook_point_layer"] = cfg.pop("hook_layer")
        cfg["hook_point_head_index"] = cfg.pop("hook_head_index")
        return cfg, dict({k: v.to(torch.float16) for k, v in t.items()}, scaling_factor=torch.ones(F))
    if name == "saelens-v5-finetuning-scale":
        sf = 0.5 + torch.rand(F, generator=g)
        return dict(flat, architecture="standard", activation_fn_str="relu", normalize_activations="none",
                    finetuning_scaling_factor=True), dict(t, scaling_factor=sf)
    if name == "saelens-v5-jumprelu":
        th = 0.2 * torch.rand(F, generator=g, dtype=torch.float64)
        return dict(flat, architecture="jumprelu", activation_fn_str="relu", normalize_activations="none"), \
            dict(t, threshold=f32(th))
    raise ValueError(name)


SAELENS_LAYOUTS = {  # name: (saelab architecture, k, version SAELens semantics come from)
    "saelens-v6-standard": ("standard", None, "v6"), "saelens-v6-gated": ("gated", None, "v6"),
    "saelens-v6-jumprelu-threshold-0": ("jumprelu", None, "v6"), "saelens-v6-topk-rescale": ("topk", 8, "v6"),
    "saelens-v6-version-at-top-bf16": ("topk", 6, "v6"), "saelens-v5-topk-k8": ("topk", 8, "v5"),
    "saelens-v5-runner-topk": ("topk", 5, "v5"), "saelens-pre6-hook-point-fp16": ("standard", None, "v5"),
    "saelens-v5-finetuning-scale": ("standard", None, "v5"), "saelens-v5-jumprelu": ("jumprelu", None, "v5")}

DL_LAYOUTS = {  # name: (dict_class, trainer_class, saelab architecture)
    "dl-standard": ("AutoEncoder", "StandardTrainer", "standard"),
    "dl-new": ("AutoEncoderNew", "StandardTrainerNew", "standard"),
    "dl-gated": ("GatedAutoEncoder", "GatedSAETrainer", "gated"),
    "dl-topk": ("AutoEncoderTopK", "TopKTrainer", "topk"),
    "dl-batchtopk": ("BatchTopKSAE", "BatchTopKTrainer", "batchtopk"),
    "dl-batchtopk-unlearned": ("BatchTopKSAE", "BatchTopKTrainer", "batchtopk"),
    "dl-matryoshka": ("MatryoshkaBatchTopKSAE", "MatryoshkaBatchTopKTrainer", "batchtopk"),
    "dl-jumprelu": ("JumpReluAutoEncoder", "JumpReluTrainer", "jumprelu")}


class DlAutoEncoder(torch.nn.Module):
    """dictionary_learning's AutoEncoder module layout, so that torch.save(state_dict()) writes the
    OrderedDict (with its _metadata attribute) that files before 2025 hold."""

    def __init__(self, d, F):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(d))
        self.encoder = torch.nn.Linear(d, F)
        self.decoder = torch.nn.Linear(F, d, bias=False)


def write_dl(path, name, args, g, d, F):
    cls, trainer, _ = DL_LAYOUTS[name]
    W_enc, b_enc, W_dec, b_dec = random_weights(g, d, F, args["scale"])
    k = 8
    os.makedirs(path, exist_ok=True)
    if cls == "AutoEncoder":
        m = DlAutoEncoder(d, F)
        with torch.no_grad():
            m.bias.copy_(b_dec)
            m.encoder.weight.copy_(W_enc.T)
            m.encoder.bias.copy_(b_enc)
            m.decoder.weight.copy_(W_dec.T)
        torch.save(m.state_dict(), os.path.join(path, "ae.pt"))
    else:
        if cls == "AutoEncoderNew":
            sd = {"encoder.weight": W_enc.T, "encoder.bias": b_enc, "decoder.weight": W_dec.T, "decoder.bias": b_dec}
        elif cls == "GatedAutoEncoder":
            sd = {"decoder_bias": b_dec, "encoder.weight": W_enc.T, "r_mag": 0.2 * torch.randn(F, generator=g),
                  "gate_bias": b_enc, "mag_bias": 0.3 * torch.randn(F, generator=g), "decoder.weight": W_dec.T}
        elif cls in ("AutoEncoderTopK", "BatchTopKSAE"):
            thr = -1.0 if name.endswith("unlearned") else 0.35
            sd = {"k": torch.tensor(k, dtype=torch.int32), "threshold": torch.tensor(thr, dtype=torch.float32),
                  "decoder.weight": W_dec.T, "encoder.weight": W_enc.T, "encoder.bias": b_enc, "b_dec": b_dec}
        elif cls == "MatryoshkaBatchTopKSAE":
            sd = {"k": torch.tensor(k, dtype=torch.int32), "threshold": torch.tensor(0.3, dtype=torch.float32),
                  "group_sizes": torch.tensor([F // 4, F // 4, F // 2]), "W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec,
                  "b_dec": b_dec}
        else:  # JumpReluAutoEncoder
            sd = {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec,
                  "threshold": 0.3 * torch.rand(F, generator=g, dtype=torch.float64)}
        sd = {key: (v.to(torch.float32).contiguous() if v.is_floating_point() else v) for key, v in sd.items()}
        torch.save(sd, os.path.join(path, "ae.pt"))
    trainer_cfg = {"trainer_class": trainer, "dict_class": cls, "activation_dim": d, "dict_size": F, "lr": 3e-4,
                   "steps": 1000, "seed": 0, "device": "cpu", "layer": 1, "lm_name": args["model_name"],
                   "wandb_name": name + "_trainer_0", "submodule_name": "resid_post_layer_0"}
    if "TopK" in cls:
        trainer_cfg["k"] = k
    cfg = {"trainer": trainer_cfg, "buffer": {"d_submodule": d, "io": "out", "n_ctxs": 100,
                                              "ctx_len": args["context_size"], "refresh_batch_size": 8,
                                              "out_batch_size": 64, "device": "cpu"}}
    json.dump(cfg, open(os.path.join(path, "config.json"), "w"), indent=4)


def write_sparsify(path, args, g, d, F, k, num_latents):
    W_enc, b_enc, W_dec, b_dec = random_weights(g, d, F, args["scale"])
    os.makedirs(path, exist_ok=True)
    write_st(os.path.join(path, "sae.safetensors"), {"encoder.weight": f32(W_enc.T).contiguous(),
                                                     "encoder.bias": f32(b_enc), "W_dec": f32(W_dec),
                                                     "b_dec": f32(b_dec)})
    cfg = {"expansion_factor": F // d if num_latents == 0 else 32, "normalize_decoder": True,
           "num_latents": num_latents, "k": k, "multi_topk": False, "skip_connection": False, "d_in": d}
    json.dump(cfg, open(os.path.join(path, "cfg.json"), "w"))


def fixtures(acts_path, out, args):
    x = read_st(acts_path)["acts"].double()
    d = x.shape[-1]
    args["scale"] = float(x.norm(dim=-1).mean())
    F = 64
    expected, ref = {}, {}

    def draw(name, write, encode):
        for seed in range(1000):
            g = torch.Generator().manual_seed(1000 * len(expected) + seed)
            folder = write(g)
            margins = Margins()
            f, x_hat = encode(folder, margins)
            if margins.ok():
                return folder, f, x_hat
        raise RuntimeError("no draw of %s kept its decisions away from their boundaries" % name)

    for name, (arch, k, version) in SAELENS_LAYOUTS.items():
        path = os.path.join(out, name)

        def write(g, name=name, path=path):
            cfg, t = layout_saelens(name, args, g, x, d, F)
            write_saelens(path, cfg, t)
            return path

        def encode(folder, margins, version=version):
            s = saelens_v6_load(folder) if version == "v6" else saelens_v5_load(folder)
            f = saelens_encode(s, x, margins)
            return f, saelens_decode(s, f)

        folder, f, x_hat = draw(name, write, encode)
        expected[name] = {"folder": name, "architecture": arch, "k": k, "hook_name": args["hook"],
                          "model_name": args["model_name"], "context_size": args["context_size"]}
        ref[name + ".codes"], ref[name + ".x_hat"] = f, x_hat

    # sparsify: a run folder (config.json + one folder per hookpoint) and a file sized by expansion_factor
    for name, sub, k, num_latents, Fs in (("sparsify-run", args["sparsify_hookpoint"], 8, F, F),
                                         ("sparsify-expansion", args["sparsify_hookpoint"], 12, 0, d)):
        path = os.path.join(out, name, sub)

        def write(g, path=path, k=k, num_latents=num_latents, Fs=Fs):
            write_sparsify(path, args, g, d, Fs, k, num_latents)
            return path

        folder, f, x_hat = draw(name, write, lambda folder, m: sparsify_encode_decode(folder, x, m))
        run = name == "sparsify-run"
        if run:  # the run's own config.json, one folder up, names the model and the context length
            json.dump({"sae": {"k": k}, "batch_size": 8, "hookpoints": [sub], "model": args["model_name"],
                       "dataset": "brown", "ctx_len": args["context_size"]},
                      open(os.path.join(out, name, "config.json"), "w"))
        expected[name] = {"folder": os.path.join(name, sub), "architecture": "topk", "k": k,
                          "hook_name": sub + ".output", "model_name": args["model_name"] if run else "",
                          "context_size": args["context_size"] if run else 0}
        ref[name + ".codes"], ref[name + ".x_hat"] = f, x_hat

    for name, (cls, trainer, arch) in DL_LAYOUTS.items():
        path = os.path.join(out, name, "trainer_0")

        def write(g, path=path, name=name):
            write_dl(path, name, args, g, d, F)
            return path

        folder, f, x_hat = draw(name, write, lambda folder, m: dl_encode_decode(folder, x, m))
        expected[name] = {"folder": os.path.join(name, "trainer_0"), "architecture": arch,
                          "k": 8 if "TopK" in cls else None, "hook_name": "", "model_name": args["model_name"],
                          "context_size": args["context_size"]}
        ref[name + ".codes"], ref[name + ".x_hat"] = f, x_hat

    write_st(os.path.join(out, "reference.safetensors"), {k: v.to(torch.float64) for k, v in ref.items()})
    json.dump(expected, open(os.path.join(out, "expected.json"), "w"), indent=2)


def replay(acts_path, out, dirs):
    x = read_st(acts_path)["acts"].double()
    codes, seen = {}, []
    for i, d in enumerate(dirs):
        entry = {"dir": d}
        for version, load in (("v5", saelens_v5_load),):
            try:
                s = load(d)
                f = saelens_encode(s, x)
                codes["%d.%s.codes" % (i, version)] = f
                codes["%d.%s.x_hat" % (i, version)] = saelens_decode(s, f)
                entry[version] = {"architecture": s["arch"], "k": s["k"], "metadata": s["metadata"]}
            except Refused as e:
                entry[version] = {"refused": str(e)}
        seen.append(entry)
    write_st(out + ".safetensors", codes)
    json.dump(seen, open(out + ".json", "w"), indent=2, default=str)


def main():
    if sys.argv[1] == "fixtures":
        a = sys.argv[2:]
        opts = {"hook": None, "model_name": None, "context_size": None, "sparsify_hookpoint": None}
        pos = []
        i = 0
        while i < len(a):
            if a[i].startswith("--"):
                opts[a[i][2:].replace("-", "_")] = a[i + 1]
                i += 2
            else:
                pos.append(a[i])
                i += 1
        opts["context_size"] = int(opts["context_size"])
        fixtures(pos[0], pos[1], opts)
    elif sys.argv[1] == "replay":
        replay(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        sys.exit("usage: sae_formats.py fixtures|replay ...")


if __name__ == "__main__":
    main()
