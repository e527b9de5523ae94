"""Checks that a model folder written by `r1ctl recipe prepare` (or `r1ctl sft`) loads in
transformers, that its tokenizer encodes like r1's, and that transformers' per-token
log-probabilities equal r1's.

Usage: check_transformers_loads.py MODEL_DIR R1_LOGPROBS_JSONL TEXTS_JSONL [TOLERANCE]
TEXTS_JSONL holds `{"text": ...}` lines; R1_LOGPROBS_JSONL is what
`r1ctl logprobs --model MODEL_DIR --input TEXTS_JSONL` printed for them.
Exit status 0 when every log-prob agrees within TOLERANCE (default 1e-4).
"""
import json
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

model_dir, r1_out, texts = sys.argv[1], sys.argv[2], sys.argv[3]
tol = float(sys.argv[4]) if len(sys.argv) > 4 else 1e-4
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
tok = AutoTokenizer.from_pretrained(model_dir)
worst = 0.0
n = 0
with open(r1_out) as r1_lines, open(texts) as text_lines:
    for r1_line, text_line in zip(r1_lines, text_lines):
        r1 = json.loads(r1_line)
        text = json.loads(text_line)["text"]
        ids = tok(text, add_special_tokens=False).input_ids
        if len(r1["logprobs"]) != len(ids) - 1:
            sys.exit(f"tokenizers disagree on {text!r}: r1 has {len(r1['logprobs']) + 1} tokens, transformers {len(ids)}")
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0]
        lp = torch.log_softmax(logits[:-1], -1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
        worst = max(worst, (lp - torch.tensor(r1["logprobs"])).abs().max().item())
        n += 1
# Greedy decoding from the first R1 prompt among the texts (cut after "Assistant:").
all_texts = [json.loads(line)["text"] for line in open(texts)]
prompt = next((t[: t.index("Assistant:") + len("Assistant:")] for t in all_texts if "Assistant:" in t), all_texts[0])
ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
out = model.generate(**ids, max_new_tokens=40, do_sample=False)
print(f"{type(model).__name__} + {type(tok).__name__} from {model_dir}: vocab {len(tok)}, eos {tok.eos_token!r}")
print(f"greedy: {tok.decode(out[0, ids.input_ids.shape[1]:], skip_special_tokens=True)!r}")
print(f"max |log-prob(transformers) - log-prob(r1)| = {worst:.3g} over {n} texts")
sys.exit(0 if worst <= tol else 1)
