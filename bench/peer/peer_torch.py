"""The peer side of `r1ctl bench`: PyTorch + transformers on the same model shapes, same
batch sizes, same timing rules (one warm-up, then the measured run), random weights.

  generate:   Qwen2ForCausalLM.generate, sampling at temperature 1, exactly N new tokens
  train-step: log-probs of all tokens, on-policy clipped-ratio loss over the second half of
              each sequence, backward, clip_grad_norm_(1.0), AdamW step

Prints one JSON object per measurement (the same keys `r1ctl bench --json` prints).
Run: $(scripts/py-env) bench/peer/peer_torch.py --shape small --threads 2
"""
import argparse, json, time

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

SHAPES = {
    "qwen2.5-0.5b": dict(vocab_size=151936, hidden_size=896, intermediate_size=4864,
                         num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2),
    "small": dict(vocab_size=8192, hidden_size=256, intermediate_size=768,
                  num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2),
}


def model_for(shape, device, dtype):
    cfg = Qwen2Config(**SHAPES[shape], max_position_embeddings=32768, rope_theta=1e6,
                      rms_norm_eps=1e-6, tie_word_embeddings=True)
    torch.manual_seed(0)
    return Qwen2ForCausalLM(cfg).to(device, dtype=dtype)


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def bench_generate(model, shape, device, batch, prompt_len, new_tokens):
    model.eval()
    ids = torch.randint(0, model.config.vocab_size, (batch, prompt_len), device=device)
    kw = dict(do_sample=True, temperature=1.0, top_p=1.0, top_k=0, eos_token_id=None, pad_token_id=0)
    with torch.no_grad():
        model.generate(ids, max_new_tokens=2, min_new_tokens=2, **kw)
        sync(device)
        t = time.perf_counter()
        out = model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **kw)
        sync(device)
        secs = time.perf_counter() - t
    assert out.shape == (batch, prompt_len + new_tokens), out.shape
    return {"bench": "generate", "peer": "transformers", "model": shape, "device": device,
            "batch": batch, "prompt_len": prompt_len, "new_tokens": new_tokens,
            "seconds": secs, "tokens_per_s": batch * new_tokens / secs}


def bench_train(model, shape, device, batch, seq_len, steps):
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6, betas=(0.9, 0.95), weight_decay=0.01)
    ids = torch.randint(0, model.config.vocab_size, (batch, seq_len), device=device)
    adv = torch.tensor([1.0 if i % 2 == 0 else -1.0 for i in range(batch)], device=device)[:, None]
    t_len = seq_len - 1
    mask = (torch.arange(t_len, device=device) >= t_len // 2).float()[None].expand(batch, -1)

    def step():
        logits = model(ids).logits[:, :-1].float()
        lp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        ratio = torch.exp(lp - lp.detach())
        per_tok = -torch.min(ratio * adv, ratio.clamp(0.8, 1.2) * adv)
        loss = ((per_tok * mask).sum(-1) / mask.sum(-1)).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    secs = (time.perf_counter() - t) / steps
    return {"bench": "train-step", "peer": "pytorch", "model": shape, "device": device,
            "batch": batch, "seq_len": seq_len, "seconds_per_step": secs,
            "tokens_per_s": batch * seq_len / secs}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--shape", choices=SHAPES, default="small")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--what", choices=["generate", "train-step", "both"], default="both")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--prompt-len", type=int, default=64)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--train-batch", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--steps", type=int, default=3)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    model = model_for(a.shape, a.device, getattr(torch, a.dtype))
    if a.what in ("generate", "both"):
        print(json.dumps(bench_generate(model, a.shape, a.device, a.batch, a.prompt_len, a.new_tokens)), flush=True)
    if a.what in ("train-step", "both"):
        print(json.dumps(bench_train(model, a.shape, a.device, a.train_batch, a.seq_len, a.steps)), flush=True)


if __name__ == "__main__":
    main()
