"""Small random-weight models of the families researchers study, built with transformers' own classes.

    from hf_families import FAMILIES, build
    model, config = build("llama3")          # a LlamaForCausalLM with random weights, eval mode

Each family keeps its real vocabulary size and its architectural quirks (GPT-NeoX's parallel
residual and partial rotary, Llama 3's rope scaling, Gemma's (1 + w) RMSNorm, sandwich norms,
attention and final-logit softcapping and sliding windows, Qwen 2.5's qkv biases, Qwen 3's and
OLMo 2's q/k norms, OLMo 2's norms after attention and MLP) at 2 layers and d_model 64, so a test
builds, traces and checks one in seconds. No download: the configs are written here, the weights
are drawn from a seed. Norm weights are perturbed so a wrong norm convention shows.
"""
import torch

CONTEXT = 128

# name → (transformers config class, model class, config kwargs, one line on what it is)
FAMILIES = {
    "gpt2": ("GPT2Config", "GPT2LMHeadModel",
             dict(vocab_size=50257, n_positions=CONTEXT, n_embd=64, n_layer=2, n_head=4),
             "GPT-2: LayerNorm, learned positions, GELU MLP, tied embeddings"),
    "pythia": ("GPTNeoXConfig", "GPTNeoXForCausalLM",
               dict(vocab_size=50304, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=256, max_position_embeddings=CONTEXT, rotary_pct=0.25,
                    use_parallel_residual=True, tie_word_embeddings=False),
               "Pythia (GPT-NeoX): parallel attention and MLP, partial rotary, untied unembedding"),
    "llama3": ("LlamaConfig", "LlamaForCausalLM",
               dict(vocab_size=128256, hidden_size=64, intermediate_size=192, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=CONTEXT,
                    rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                     "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                     "original_max_position_embeddings": 64},
                    tie_word_embeddings=False),
               "Llama 3: RMSNorm, grouped-query attention, llama3 rope scaling, SwiGLU"),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM",
               dict(vocab_size=256000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=CONTEXT,
                    query_pre_attn_scalar=16, sliding_window=8, attn_logit_softcapping=50.0,
                    final_logit_softcapping=30.0),
               "Gemma 2: (1 + w) RMSNorm before and after attention and MLP, softcapped attention and logits, "
               "sliding window on alternate layers, scaled embeddings"),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM",
               dict(vocab_size=262144, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=CONTEXT,
                    query_pre_attn_scalar=16, sliding_window=8,
                    layer_types=["sliding_attention", "full_attention"]),
               "Gemma 3: Gemma 2's sandwich norms with q/k RMSNorm, local and global rope bases"),
    "qwen2.5": ("Qwen2Config", "Qwen2ForCausalLM",
                dict(vocab_size=151936, hidden_size=64, intermediate_size=192, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=CONTEXT,
                     tie_word_embeddings=True),
                "Qwen 2.5: Llama's layout with q/k/v biases, tied embeddings"),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM",
              dict(vocab_size=151936, hidden_size=64, intermediate_size=192, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=CONTEXT,
                   tie_word_embeddings=True),
              "Qwen 3: q/k RMSNorm, no qkv biases"),
    "olmo2": ("Olmo2Config", "Olmo2ForCausalLM",
              dict(vocab_size=100352, hidden_size=64, intermediate_size=192, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=CONTEXT,
                   tie_word_embeddings=False),
              "OLMo 2: RMSNorm after attention and after the MLP (none before), q/k RMSNorm"),
}


def make_config(family):
    import transformers
    cls_name, _, kwargs, _ = FAMILIES[family]
    config = getattr(transformers, cls_name)(**kwargs)
    config.use_cache = False
    return config


def build(family, seed=0, attn_implementation="eager"):
    """A random-weight model of `family` in eval mode, and its config."""
    import transformers
    if family not in FAMILIES:
        raise SystemExit(f"hf_families: unknown family '{family}' (known: {', '.join(FAMILIES)})")
    _, model_cls, _, _ = FAMILIES[family]
    config = make_config(family)
    config._attn_implementation = attn_implementation
    torch.manual_seed(seed)
    model = getattr(transformers, model_cls)(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:  # norm weights and biases away from their initial 1 / 0
                p.add_(torch.randn_like(p) * 0.1)
    return model, config
