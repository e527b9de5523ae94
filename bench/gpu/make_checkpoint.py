"""Writes a random-weight Qwen2.5-0.5B-shaped checkpoint (bf16) with transformers, a probe
file of token sequences, and transformers' per-token log-probs for them (f32 compute on the
bf16 weights), for bench/gpu/run.sh. Usage: make_checkpoint.py OUT_DIR"""
import json, os, sys

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

out = sys.argv[1]
torch.manual_seed(0)
cfg = Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                  num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                  rope_theta=1e6, rms_norm_eps=1e-6, tie_word_embeddings=True)
model = Qwen2ForCausalLM(cfg).to(torch.bfloat16)
model.save_pretrained(out)
dev = "cuda" if torch.cuda.is_available() else "cpu"
ref = Qwen2ForCausalLM.from_pretrained(out, dtype=torch.float32).to(dev).eval()
g = torch.Generator().manual_seed(1)
seqs = [torch.randint(0, cfg.vocab_size, (n,), generator=g) for n in (64, 17, 200)]
with open(os.path.join(out, "probe.jsonl"), "w") as f, open(os.path.join(out, "reference_logprobs.jsonl"), "w") as r:
    for s in seqs:
        f.write(json.dumps({"input_ids": s.tolist()}) + "\n")
        with torch.no_grad():
            lp = torch.log_softmax(ref(s[None].to(dev)).logits[0].float(), -1)[:-1].gather(-1, s[1:, None].to(dev))[:, 0]
        r.write(json.dumps({"logprobs": lp.cpu().tolist()}) + "\n")
print(f"wrote {out}: {sum(p.numel() for p in model.parameters())} params, {len(seqs)} probe sequences")
