"""bench/recipes/train_gpt_torch.py — trains the PyTorch GPT-2 (bench/torch/gpt.py) with a modu recipe's
model, optimizer and schedule, on the exact token windows modu trains on (bench/recipes/dump_batches),
evaluating on the same validation windows (the first eval_batches x micro_batch_size sequential windows
of the val shards), and writes metrics.jsonl like `modu train` does.
Usage: train_gpt_torch.py RECIPE.toml BATCHES.bin OUT_DIR [--threads N]"""
import argparse, json, math, os, struct, sys, time, tomllib

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "torch"))
from gpt import GPT, adamw, lr_at  # noqa: E402


def read_split(shard_dir, split):
    """The token stream of a modu shard set's split (data/token_shard.h: 64-byte header, then tokens)."""
    meta = json.load(open(os.path.join(shard_dir, "meta.json")))
    parts = []
    for sh in meta["splits"][split]["shards"]:
        raw = open(os.path.join(shard_dir, sh["file"]), "rb").read()
        assert raw[:8] == b"MODUTOKS", sh["file"]
        width = struct.unpack_from("<I", raw, 12)[0]
        n = struct.unpack_from("<Q", raw, 16)[0]
        parts.append(np.frombuffer(raw, dtype=np.uint16 if width == 2 else np.uint32, count=n, offset=64))
    return np.concatenate(parts).astype(np.int64)


ap = argparse.ArgumentParser()
ap.add_argument("recipe")
ap.add_argument("batches")
ap.add_argument("out")
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()
torch.set_num_threads(a.threads)
r = tomllib.load(open(a.recipe, "rb"))
m, t, o = r["model"], r["train"], r["optim"]
T, B, steps = t["seq_len"], t["batch_size"], t["steps"]
micro = t.get("micro_batch_size", 0) or B  # 0 means the whole batch (one process)
torch.manual_seed(t.get("seed", 1337))
model = GPT(V=m["vocab_size"], pad=m.get("pad_vocab_to", 128), L=m["n_layer"], C=m["n_embd"], NH=m["n_head"],
            block=m["block_size"], dropout=m.get("dropout", 0.0))
opt = adamw(model, o["lr"], betas=(o["beta1"], o["beta2"]), eps=o.get("eps", 1e-8), weight_decay=o["weight_decay"])
windows = np.fromfile(a.batches, dtype=np.int32).reshape(steps, B, T + 1)
val_dir = os.path.dirname(r["data"]["val"].rstrip("/"))
val = torch.from_numpy(read_split(val_dir, "val"))
n_val = min(t.get("eval_batches", 20), ((len(val) - 1) // T) // micro)
val_windows = torch.stack([val[i * T: i * T + T + 1] for i in range(n_val * micro)]).view(n_val, micro, T + 1)


def evaluate():
    model.eval()
    with torch.no_grad():
        loss = sum(model(w[:, :T], w[:, 1:]).item() for w in val_windows) / n_val
    model.train()
    return loss


os.makedirs(a.out, exist_ok=True)
log = open(os.path.join(a.out, "metrics.jsonl"), "w")
log.write(json.dumps({"step": 0, "val_loss": evaluate()}) + "\n")
start = time.time()
for s in range(steps):
    lr = lr_at(s, o["warmup_steps"], steps, o["lr"], o["min_lr"], o.get("schedule", "cosine"))
    for g in opt.param_groups:
        g["lr"] = lr
    opt.zero_grad(set_to_none=True)
    w = torch.from_numpy(windows[s].astype(np.int64))
    total = 0.0
    for k in range(B // micro):
        part = w[k * micro:(k + 1) * micro]
        loss = model(part[:, :T], part[:, 1:]) / (B // micro)
        loss.backward()
        total += loss.item()
    gn = torch.nn.utils.clip_grad_norm_(model.parameters(), o["grad_clip"]).item()
    opt.step()
    done = s + 1
    rec = {"step": done, "loss": total, "lr": lr, "grad_norm": gn,
           "tokens_per_s": done * B * T / (time.time() - start)}
    if done % t["eval_every"] == 0 or done == steps:
        rec["val_loss"] = evaluate()
    log.write(json.dumps(rec) + "\n")
    log.flush()
    if done % 100 == 0 or done == steps:
        print("torch step %d/%d loss %.4f val %s %.0f tok/s" % (done, steps, total, rec.get("val_loss", "-"),
                                                                rec["tokens_per_s"]), flush=True)
