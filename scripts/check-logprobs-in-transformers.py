"""Checks that transformers loads a checkpoint r1 wrote and gives r1's log-probs.

Usage: check-logprobs-in-transformers.py CHECKPOINT TEXTS.jsonl R1_LOGPROBS.jsonl [TOLERANCE]
TEXTS.jsonl holds {"text"} lines; R1_LOGPROBS.jsonl is what
`r1ctl logprobs --model CHECKPOINT --input TEXTS.jsonl --no-special-tokens` wrote for them.
Each text is encoded with the checkpoint's tokenizer.json (no special tokens), scored by
`AutoModelForCausalLM.from_pretrained(CHECKPOINT)` in f32, and every token's log-prob must
equal r1's within TOLERANCE (default 1e-4). Exits 1 otherwise.
"""
import json, sys

import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

ckpt, texts, r1 = sys.argv[1], sys.argv[2], sys.argv[3]
tol = float(sys.argv[4]) if len(sys.argv) > 4 else 1e-4
model = AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.float32).eval()
tok = Tokenizer.from_file(f"{ckpt}/tokenizer.json")
worst, n = 0.0, 0
with open(texts) as ft, open(r1) as fr, torch.no_grad():
    for t_line, r_line in zip(ft, fr):
        ids = torch.tensor(tok.encode(json.loads(t_line)["text"], add_special_tokens=False).ids)
        want = torch.tensor(json.loads(r_line)["logprobs"])
        lp = torch.log_softmax(model(ids[None]).logits[0].float(), -1)[:-1].gather(-1, ids[1:, None])[:, 0]
        assert lp.shape == want.shape, (lp.shape, want.shape)
        worst = max(worst, (lp - want).abs().max().item())
        n += 1
print(f"{type(model).__name__} from {ckpt}: max |log-prob(transformers) - log-prob(r1)| = {worst:.3g} over {n} texts")
sys.exit(0 if worst <= tol and n > 0 else 1)
