"""bench/gpu/bench_gpt2_torch.py — the PyTorch peer of bench_gpt2.cpp: the same GPT-2 124M (written
here from the architecture: learned positions, pre-LayerNorm, causal SDPA, GELU-tanh MLP, tied head,
vocabulary padded to 50304), the same step (forward, cross-entropy over the real 50257 columns,
backward, clip 1.0, AdamW fused) on a fixed random batch, timed the same way (host clock after
.item(), median after warm-up). Modes: eager f32, eager bf16 autocast, torch.compile bf16 autocast.
Prints one JSON line per mode."""
import argparse, json, math, time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.NH = NH
        self.ln_1 = nn.LayerNorm(C)
        self.c_attn = nn.Linear(C, 3 * C)
        self.attn_proj = nn.Linear(C, C)
        self.ln_2 = nn.LayerNorm(C)
        self.c_fc = nn.Linear(C, 4 * C)
        self.mlp_proj = nn.Linear(4 * C, C)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.NH, C // self.NH).transpose(1, 2) for t in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        x = x + self.attn_proj(a)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, V=50257, Vp=50304, L=12, C=768, NH=12, block=1024):
        super().__init__()
        self.V = V
        self.wte = nn.Embedding(Vp, C)
        self.wpe = nn.Embedding(block, C)
        self.h = nn.ModuleList(Block(C, NH) for _ in range(L))
        self.ln_f = nn.LayerNorm(C)
        for n, p in self.named_parameters():
            if n.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * L) if n.endswith("proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx, targets):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for b in self.h:
            x = b(x)
        logits = self.ln_f(x) @ self.wte.weight.t()
        return F.cross_entropy(logits[..., : self.V].reshape(-1, self.V).float(), targets.reshape(-1))


def run(mode, B, T, steps, warmup, peak, layers):
    torch.manual_seed(1)
    model = GPT(L=layers).cuda()
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "wte" not in n and "wpe" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "wte" not in n and "wpe" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=6e-4, betas=(0.9, 0.95), eps=1e-8, fused=True)
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
    flops = (6 * n_params + 6 * layers * 768 * T) * tok_s
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
