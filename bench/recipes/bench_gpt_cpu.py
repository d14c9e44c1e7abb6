"""bench/recipes/bench_gpt_cpu.py — PyTorch eager peer of bench_gpt_cpu.cpp: the same GPT-2 shape
(bench/torch/gpt.py), the same step (forward, loss, backward, clip 1.0, AdamW with modu's decay
groups, foreach implementation), random tokens, median of the timed steps after warm-up, peak RSS
of this process. Threads: torch.set_num_threads(--threads). One JSON line on stdout."""
import argparse, json, os, resource, sys, time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "torch"))
from gpt import GPT, adamw  # noqa: E402

ap = argparse.ArgumentParser()
for k, d in [("layers", 6), ("width", 384), ("heads", 6), ("T", 256), ("B", 8), ("vocab", 50257), ("steps", 5),
             ("warmup", 2), ("threads", 2)]:
    ap.add_argument("--" + k, type=int, default=d)
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(1)
model = GPT(V=a.vocab, L=a.layers, C=a.width, NH=a.heads, block=max(a.T, 64))
opt = adamw(model, 6e-4)
g = torch.Generator().manual_seed(3)
data = torch.randint(0, a.vocab, (a.B, a.T + 1), generator=g)
x, y = data[:, : a.T].contiguous(), data[:, 1:].contiguous()
times, losses = [], []
for s in range(a.warmup + a.steps):
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    loss = model(x, y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    losses.append(loss.item())
    if s >= a.warmup:
        times.append(time.perf_counter() - t0)
times.sort()
med = times[len(times) // 2]
print(json.dumps({"impl": "torch", "layers": a.layers, "width": a.width, "heads": a.heads, "B": a.B, "T": a.T,
                  "threads": torch.get_num_threads(), "params": sum(p.numel() for p in model.parameters()),
                  "s_per_step": round(med, 4), "s_min": round(times[0], 4), "s_max": round(times[-1], 4),
                  "tokens_per_s": round(a.B * a.T / med, 1),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "first_loss": round(losses[0], 4), "last_loss": round(losses[-1], 4),
                  "torch": torch.__version__}))
