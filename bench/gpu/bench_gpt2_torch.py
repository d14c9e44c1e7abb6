"""bench/gpu/bench_gpt2_torch.py — the PyTorch peer of bench_gpt2.cpp: the same GPT-2 124M
(bench/torch/gpt.py: vocabulary padded to 50304), the same step (forward, cross-entropy over the real 50257 columns,
backward, clip 1.0, AdamW fused) on a fixed random batch, timed the same way (host clock after
.item(), median after warm-up). Modes: eager f32, eager bf16 autocast, torch.compile bf16 autocast.
Prints one JSON line per mode."""
import argparse, json, os, sys, time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "torch"))
from gpt import GPT, adamw  # noqa: E402  (bench/torch/gpt.py)


def run(mode, B, T, steps, warmup, peak, layers):
    torch.manual_seed(1)
    model = GPT(L=layers).cuda()
    n_params = sum(p.numel() for p in model.parameters())
    opt = adamw(model, 6e-4, fused=True)
    fwd = torch.compile(model) if mode.startswith("compile") else model
    g = torch.Generator().manual_seed(3)
    data = torch.randint(0, 50257, (B, T + 1), generator=g).cuda()
    x, y = data[:, :T].contiguous(), data[:, 1:].contiguous()
    amp = mode.endswith("bf16")
    times, losses = [], []
    for s in range(warmup + steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            loss = fwd(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if s >= warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    med = times[len(times) // 2]
    tok_s = B * T / med
    flops = model.flops_per_token(T) * tok_s
    return {"impl": "torch", "mode": mode, "B": B, "T": T, "params": n_params, "ms_per_step": round(med * 1e3, 2),
            "tokens_per_s": round(tok_s), "mfu": round(flops / (peak * 1e12), 4), "first_loss": round(losses[0], 4),
            "last_loss": round(losses[-1], 4), "torch": torch.__version__}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--B", type=int, default=8)
    ap.add_argument("--T", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--modes", default="eager_f32,eager_bf16,compile_bf16")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False  # modu's f32 is true f32
    for mode in a.modes.split(","):
        try:
            print(json.dumps(run(mode, a.B, a.T, a.steps, a.warmup, a.peak_tflops, a.layers)), flush=True)
        except Exception as e:  # report and go on to the next mode
            print(json.dumps({"impl": "torch", "mode": mode, "error": str(e)[:400]}), flush=True)
        torch.cuda.empty_cache()
