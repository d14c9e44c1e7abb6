"""bench/torch/gpt.py — the PyTorch peer of modu's GPT-2 (recipes/gpt/model.h), written here from the
architecture for the benchmarks and the learning-curve comparison: learned positions, pre-LayerNorm
blocks, causal scaled-dot-product attention, GELU (tanh) MLP of width 4C, tied LM head over a
vocabulary padded to a multiple of `pad`, loss over the real vocabulary only; GPT-2 initialisation
(N(0, 0.02), residual projections N(0, 0.02 / sqrt(2L)), zero biases). AdamW groups follow modu's
rule: weight decay on Linear weights only (not biases, norms or embeddings)."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, C, NH, dropout=0.0):
        super().__init__()
        self.NH, self.p = NH, dropout
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
        x = x + F.dropout(self.attn_proj(a), self.p, self.training)
        return x + F.dropout(self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh")), self.p, self.training)


class GPT(nn.Module):
    def __init__(self, V=50257, pad=128, L=12, C=768, NH=12, block=1024, dropout=0.0):
        super().__init__()
        self.V, self.L, self.C = V, L, C
        Vp = (V + pad - 1) // pad * pad
        self.wte = nn.Embedding(Vp, C)
        self.wpe = nn.Embedding(block, C)
        self.h = nn.ModuleList(Block(C, NH, dropout) for _ in range(L))
        self.ln_f = nn.LayerNorm(C)
        for n, p in self.named_parameters():
            if n.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * L) if n.endswith("proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)
        with torch.no_grad():
            self.wte.weight[V:].zero_()

    def forward(self, idx, targets=None):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for b in self.h:
            x = b(x)
        logits = self.ln_f(x) @ self.wte.weight.t()
        if targets is None:
            return logits
        return F.cross_entropy(logits[..., : self.V].reshape(-1, self.V).float(), targets.reshape(-1))

    def flops_per_token(self, T):
        return 6 * sum(p.numel() for p in self.parameters()) + 6 * self.L * self.C * T


def adamw(model, lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, **kw):
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and not n.startswith(("wte", "wpe"))]
    rest = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and not n.startswith(("wte", "wpe")))]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}],
                             lr=lr, betas=betas, eps=eps, **kw)


def lr_at(step, warmup, total, max_lr, min_lr, kind="cosine"):
    """modu's optim::LrSchedule::at (step counts from 0)."""
    if warmup > 0 and step < warmup:
        return max_lr * (step + 1) / warmup
    if kind == "constant":
        return max_lr
    if step >= total:
        return min_lr
    progress = (step - warmup) / max(1, total - warmup)
    if kind == "linear":
        return max_lr + (min_lr - max_lr) * progress
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * progress))
