"""Runs `r1ctl bench` and the PyTorch/transformers peer on the same shapes and prints them
side by side with the ratio r1 / peer (higher is better for r1).

Usage: python3 bench/compare.py [--r1ctl PATH] [--threads N] [--device cpu|cpu-flex|cpu-torch|cuda]
The peer runs in the reference environment (`scripts/py-env`). Each case runs r1 first,
then the peer, one process at a time, so they never share the cores.
"""
import argparse, json, os, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# (what, shape, r1 flags, peer flags)
CASES = [
    ("generate", "small", ["--batch", "16", "--prompt-len", "64", "--new-tokens", "64"],
     ["--batch", "16", "--prompt-len", "64", "--new-tokens", "64"]),
    ("generate", "qwen2.5-0.5b", ["--batch", "4", "--prompt-len", "32", "--new-tokens", "16"],
     ["--batch", "4", "--prompt-len", "32", "--new-tokens", "16"]),
    ("train-step", "small", ["--batch", "4", "--seq-len", "256", "--steps", "3"],
     ["--train-batch", "4", "--seq-len", "256", "--steps", "3"]),
    ("train-step", "qwen2.5-0.5b", ["--batch", "2", "--seq-len", "128", "--steps", "2"],
     ["--train-batch", "2", "--seq-len", "128", "--steps", "2"]),
]

# r1's sampler against r1's previous (backend-generic Burn) sampler on a GRPO-shaped load:
# 8 prompts of 16 to 512 tokens, G = 8 samples each, samples ending at mixed lengths (every
# 64th token id is a stop token, so about 1 in 64 steps ends a sample; at most 512 tokens).
GROUP_CASES = [
    ("generate-group", "small", ["--batch", "64", "--group", "8", "--prompt-len", "512", "--min-prompt-len", "16",
                                 "--new-tokens", "512", "--stop-every", "64"]),
]


def last_json(out):
    return json.loads([l for l in out.splitlines() if l.startswith("{")][-1])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--r1ctl", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/r1-target")), "release", "r1ctl"))
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--device", default="cpu")
    p.add_argument("--only", default="", help="substring filter on 'what/shape'")
    a = p.parse_args()
    py = subprocess.run([os.path.join(ROOT, "scripts", "py-env")], capture_output=True, text=True, check=True).stdout.strip()
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads))
    # r1's CPU candidates (cpu-flex, cpu-torch) are all measured against PyTorch on the CPU.
    peer_device = "cuda" if a.device == "cuda" else "cpu"
    rows = []
    for what, shape, r1_flags, peer_flags in CASES:
        if a.only not in f"{what}/{shape}":
            continue
        r1 = last_json(subprocess.run([a.r1ctl, "bench", what, "--shape", shape, "--device", a.device, "--json", *r1_flags],
                                      capture_output=True, text=True, check=True, env=env).stdout)
        peer = last_json(subprocess.run([py, os.path.join(HERE, "peer", "peer_torch.py"), "--what", what, "--shape", shape,
                                         "--device", peer_device, "--threads", str(a.threads), *peer_flags],
                                        capture_output=True, text=True, check=True).stdout)
        ratio = r1["tokens_per_s"] / peer["tokens_per_s"]
        rows.append((what, shape, " ".join(r1_flags), r1["tokens_per_s"], peer["tokens_per_s"], ratio))
        print(json.dumps({"what": what, "shape": shape, "r1": r1, "peer": peer, "ratio": ratio}), file=sys.stderr, flush=True)
    group_rows = []
    for what, shape, flags in GROUP_CASES:
        if a.only not in f"{what}/{shape}":
            continue
        runs = {}
        for sampler in ["auto", "burn"]:
            runs[sampler] = last_json(subprocess.run([a.r1ctl, "bench", "generate", "--shape", shape, "--device", a.device, "--json",
                                                      "--sampler", sampler, *flags],
                                                     capture_output=True, text=True, check=True, env=env).stdout)
        assert runs["auto"]["tokens"] == runs["burn"]["tokens"], runs
        ratio = runs["auto"]["tokens_per_s"] / runs["burn"]["tokens_per_s"]
        group_rows.append((what, shape, " ".join(flags), runs["auto"]["tokens_per_s"], runs["burn"]["tokens_per_s"], ratio))
        print(json.dumps({"what": what, "shape": shape, "r1": runs["auto"], "r1_burn_sampler": runs["burn"], "ratio": ratio}),
              file=sys.stderr, flush=True)
    print(f"| bench | shape | settings | r1 tok/s | PyTorch tok/s | r1 / PyTorch |")
    print(f"|---|---|---|---:|---:|---:|")
    for what, shape, flags, r, q, ratio in rows:
        print(f"| {what} | {shape} | `{flags}` | {r:.1f} | {q:.1f} | {ratio:.2f}x |")
    if group_rows:
        print()
        print(f"| bench | shape | settings | r1 tok/s | r1 Burn-path sampler tok/s | ratio |")
        print(f"|---|---|---|---:|---:|---:|")
        for what, shape, flags, r, q, ratio in group_rows:
            print(f"| {what} | {shape} | `{flags}` | {r:.1f} | {q:.1f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
