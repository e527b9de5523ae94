"""Makes a Qwen3ForCausalLM at small width around the published Qwen3 tokenizer.

No published checkpoint is reachable from the machines r1 is built on, so the real-model run
(docs/reproduction.md) starts from the published architecture and tokenizer with random
weights: Qwen3's vocabulary (151,936 rows), chat template and special tokens, Qwen3-0.6B's
rope theta, norm epsilon and head layout, at a width a laptop trains in minutes.

Usage: $(scripts/py-env) scripts/make-small-qwen3.py TOKENIZER_DIR OUT_DIR
TOKENIZER_DIR is what scripts/fetch-qwen3-tokenizer prints.
"""
import os, shutil, sys

import torch
from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM


def main(tok_dir, out):
    tok = AutoTokenizer.from_pretrained(tok_dir)
    torch.manual_seed(0)
    cfg = Qwen3Config(
        vocab_size=151936, hidden_size=64, intermediate_size=192, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=4096,
        rope_theta=1e6, rms_norm_eps=1e-6, tie_word_embeddings=True, attention_bias=False,
        bos_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"))
    model = Qwen3ForCausalLM(cfg).eval()
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tok_dir, f), os.path.join(out, f))
    print(f"Qwen3ForCausalLM, {sum(p.numel() for p in model.parameters()):,} parameters -> {out}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
