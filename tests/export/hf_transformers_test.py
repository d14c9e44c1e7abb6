#!/usr/bin/env python3
"""modu <-> Hugging Face transformers, checked by transformers itself (offline, no downloads).

1. Trains a tiny GPT-2 and a tiny Llama-style model (grouped-query attention) with `modu train` on a
   book of the bundled corpus, with a 1000-id tokenizer from `modu prepare tokenizer` (padded to 1024
   rows in the checkpoint, so the export must strip the padding).
2. `modu export --format safetensors` (f32, f16, bf16); AutoTokenizer and AutoModelForCausalLM load
   the folders with local_files_only; the tokenizer gives modu's ids; fp32 logits for a prompt match
   modu's (tests/export/logits_tool.cpp) within 1e-4; greedy generate() of 32 tokens equals
   `modu generate --temperature 0` (the text it prints, and the ids).
3. GPT2LMHeadModel / LlamaForCausalLM built from a config with random weights, saved with
   save_pretrained (the Llama one sharded: model.safetensors.index.json): `modu import hf` gives a
   checkpoint whose logits equal transformers' within 1e-4; exporting it again gives transformers
   the same weights; `modu train` with train.init_from fine-tunes it and `modu generate` samples it.
4. GPT-2's own vocabulary ($MODU_GPT2_VOCAB): exported tokenizer files equal OpenAI's, same ids.
Prints the measured figures as one JSON line ("figures: {...}"); exits non-zero on any mismatch.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from transformers import (AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel,  # noqa: E402
                          LlamaConfig, LlamaForCausalLM)

REPO = Path(__file__).resolve().parents[2]
TOL = 1e-4
PROMPT = "To Sherlock Holmes she is always the woman. I have seldom heard him"
failures = []
figures = {}


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


def run(cmd, **kw):
    """Runs cmd; returns its stdout as text (bytes kept as they are: no newline translation; invalid
    UTF-8 becomes U+FFFD, as in transformers' decode)."""
    res = subprocess.run([str(c) for c in cmd], capture_output=True, **kw)
    out, err = res.stdout.decode("utf-8", "replace"), res.stderr.decode("utf-8", "replace")
    if res.returncode != 0:
        sys.stderr.write(out[-3000:] + err[-3000:])
        raise SystemExit(f"command failed ({res.returncode}): {' '.join(map(str, cmd))}")
    return out


def modu_logits(tool, ckpt, ids, greedy=0):
    out = run([tool, ckpt, "--tokens", ",".join(map(str, ids)), "--greedy", greedy])
    return json.loads(out)


def hf_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float()


def train(a, work, arch, tok_dir, data_dir):
    out = work / f"run-{arch}"
    recipe = REPO / "recipes" / ("gpt-tiny.toml" if arch == "gpt2" else "llama-tiny.toml")
    sets = [f"model.vocab_size=1000", "model.n_layer=2", "model.n_head=4", "model.n_embd=64",
            "model.block_size=96", "train.seq_len=64", "train.steps=120", "train.batch_size=8",
            "train.micro_batch_size=8", "train.eval_every=0", "train.eval_batches=2",
            "train.checkpoint_every=0", "train.sample_every=0", "train.log_every=20", "optim.warmup_steps=5",
            f"data.train={data_dir}/train", f"data.val={data_dir}/val", f"data.tokenizer={tok_dir}",
            f"train.out_dir={out}", "train.resume=never"]
    if arch == "llama":
        sets.append("model.n_kv_head=2")
    cmd = [a.modu, "train", recipe]
    for s in sets:
        cmd += ["--set", s]
    t0 = time.time()
    run(cmd)
    figures[f"train_{arch}_s"] = round(time.time() - t0, 1)
    return out


def compare_export(a, work, arch, run_dir, tok_dir):
    hf_dir = work / f"hf-{arch}"
    run([a.modu, "export", run_dir, "--format", "safetensors", "--out", hf_dir])
    for f in ["model.safetensors", "config.json", "generation_config.json", "vocab.json", "merges.txt",
              "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]:
        check((hf_dir / f).is_file(), f"{arch}: export wrote {f}")
    cfg = json.loads((hf_dir / "config.json").read_text())
    if arch == "gpt2":
        check(cfg["n_ctx"] == cfg["n_positions"] == 96, "gpt2: config.json has n_ctx and n_positions")
    check(cfg["vocab_size"] == 1000, f"{arch}: config.json vocab_size is the real vocabulary (1000)")

    tok = AutoTokenizer.from_pretrained(hf_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, local_files_only=True, dtype=torch.float32).eval()
    want_cls = "GPT2LMHeadModel" if arch == "gpt2" else "LlamaForCausalLM"
    check(type(model).__name__ == want_cls, f"{arch}: AutoModelForCausalLM made a {type(model).__name__}")

    # The tokenizer: transformers' ids == modu's ids.
    corpus_text = (Path(a.corpus) / "doyle-sherlock.txt").read_text(encoding="utf-8")
    samples = [PROMPT, corpus_text[5000:7000], "  Unicode: café — naïve 😀 <|endoftext|> tail\n\n x"]
    same = True
    for i, s in enumerate(samples):
        f = work / f"tok-sample-{i}.txt"
        f.write_text(s, encoding="utf-8")
        modu_ids = [int(x) for x in run([a.modu, "tokenize", "--tokenizer", tok_dir, "--allow-special", f]).split()]
        same &= tok(s)["input_ids"] == modu_ids
    check(same, f"{arch}: AutoTokenizer ids == modu tokenize ids on {len(samples)} texts")

    # Logits (fp32).
    ids = tok(PROMPT)["input_ids"]
    mine = modu_logits(a.logits_tool, run_dir, ids, greedy=32)
    diff = (hf_logits(model, ids) - torch.tensor(mine["logits"])).abs().max().item()
    figures[f"{arch}_export_max_abs_logit_diff_f32"] = diff
    check(diff < TOL, f"{arch}: transformers logits == modu logits (max abs diff {diff:.3g} < {TOL})")

    # Greedy generation: 32 tokens, transformers vs `modu generate --temperature 0`.
    eos = tok.eos_token_id
    with torch.no_grad():
        gen = model.generate(torch.tensor([ids]), max_new_tokens=32, do_sample=False, pad_token_id=eos)
    hf_new = gen[0][len(ids):].tolist()
    modu_new = mine["greedy"]
    if eos in modu_new:  # modu generate stops after the end-of-text token, as generate() does
        modu_new = modu_new[: modu_new.index(eos) + 1]
    check(hf_new == modu_new, f"{arch}: greedy ids equal ({len(hf_new)} tokens)")
    figures[f"{arch}_greedy_equal_tokens"] = f"{sum(x == y for x, y in zip(hf_new, modu_new))}/{len(hf_new)}"
    printed = run([a.modu, "generate", run_dir, "--prompt", PROMPT, "--temperature", "0", "--max-new-tokens", "32"])
    check(printed.rstrip("\n") == PROMPT + tok.decode(hf_new),
          f"{arch}: `modu generate --temperature 0` prints transformers' greedy text")

    # f16 / bf16 exports load and stay close (rounding only).
    for dt, torch_dt in [("f16", torch.float16), ("bf16", torch.bfloat16)]:
        d = work / f"hf-{arch}-{dt}"
        run([a.modu, "export", run_dir, "--format", "safetensors", "--out", d, "--dtype", dt])
        m = AutoModelForCausalLM.from_pretrained(d, local_files_only=True, dtype=torch.float32).eval()
        header_len = int.from_bytes((d / "model.safetensors").read_bytes()[:8], "little")
        header = json.loads((d / "model.safetensors").read_bytes()[8:8 + header_len])
        want = {"f16": "F16", "bf16": "BF16"}[dt]
        check(all(v["dtype"] == want for k, v in header.items() if k != "__metadata__"),
              f"{arch}: --dtype {dt} writes {want} tensors")
        d_diff = (hf_logits(m, ids) - torch.tensor(mine["logits"])).abs().max().item()
        figures[f"{arch}_export_max_abs_logit_diff_{dt}"] = d_diff
        check(d_diff < 0.25, f"{arch}: {dt} export logits within rounding of f32 ({d_diff:.3g})")
    return hf_dir


def compare_import(a, work, arch, tok_source):
    torch.manual_seed(1234 if arch == "gpt2" else 4321)
    if arch == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(vocab_size=1000, n_positions=80, n_embd=64, n_layer=2, n_head=4,
                                           bos_token_id=999, eos_token_id=999))
    else:
        model = LlamaForCausalLM(LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=160,
                                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                             max_position_embeddings=80, rope_theta=5000.0, rms_norm_eps=1e-5,
                                             bos_token_id=999, eos_token_id=999))
    # Random init is N(0, 0.02): widen it so the logits spread and a mistake cannot hide.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(5.0)
    model.eval()
    src = work / f"hf-random-{arch}"
    # The Llama one in several shards (model.safetensors.index.json).
    model.save_pretrained(src, max_shard_size="200KB" if arch == "llama" else "5GB")
    AutoTokenizer.from_pretrained(tok_source, local_files_only=True).save_pretrained(src)
    if arch == "llama":
        check((src / "model.safetensors.index.json").is_file(), "llama: save_pretrained wrote a sharded model")
    ckpt = work / f"imported-{arch}"
    run([a.modu, "import", "hf", src, "--out", ckpt])
    ids = list(range(3, 40, 2)) + [999, 5, 998, 17]
    mine = modu_logits(a.logits_tool, ckpt, ids)
    diff = (hf_logits(model, ids) - torch.tensor(mine["logits"])).abs().max().item()
    figures[f"{arch}_import_max_abs_logit_diff"] = diff
    check(diff < TOL, f"{arch}: imported checkpoint's logits == transformers' (max abs diff {diff:.3g})")

    # Export the imported checkpoint: transformers gets the same function back.
    again = work / f"hf-reexport-{arch}"
    run([a.modu, "export", ckpt, "--format", "safetensors", "--out", again])
    m2 = AutoModelForCausalLM.from_pretrained(again, local_files_only=True, dtype=torch.float32).eval()
    rediff = (hf_logits(m2, ids) - hf_logits(model, ids)).abs().max().item()
    check(rediff == 0.0, f"{arch}: import -> export gives transformers identical logits ({rediff:.3g})")

    # Fine-tuning from the import (train.init_from) and sampling it.
    data_dir = work / "data"
    recipe = REPO / "recipes" / ("gpt-tiny.toml" if arch == "gpt2" else "llama-tiny.toml")
    sets = ["model.vocab_size=1000", "model.n_layer=2", "model.n_head=4", "model.n_embd=64", "model.block_size=80",
            "train.seq_len=64", "train.steps=3", "train.batch_size=4", "train.micro_batch_size=4",
            "train.eval_every=0", "train.checkpoint_every=0", "train.sample_every=0", "optim.warmup_steps=1",
            f"data.train={data_dir}/train", f"data.val={data_dir}/val", "train.eval_batches=1",
            f"data.tokenizer={ckpt}/tokenizer", f"train.out_dir={work}/finetune-{arch}", "train.resume=never",
            f"train.init_from={ckpt}"]
    if arch == "llama":
        sets += ["model.n_kv_head=2", "model.ffn_hidden=160", "model.rope_theta=5000.0"]
    cmd = [a.modu, "train", recipe]
    for s in sets:
        cmd += ["--set", s]
    out = run(cmd)
    check("initialised the weights from" in out, f"{arch}: modu train fine-tunes the import (train.init_from)")
    text = run([a.modu, "generate", ckpt, "--prompt", "The", "--max-new-tokens", "8", "--temperature", "0"])
    check(text.startswith("The"), f"{arch}: modu generate samples the imported checkpoint")


def check_gpt2_vocabulary(a, work):
    """GPT-2's own 50257-id vocabulary: a random GPT2LMHeadModel saved without tokenizer files imports
    with the "gpt2" tokenizer; its export's vocab.json / merges.txt are OpenAI's encoder.json / vocab.bpe
    byte for byte, and AutoTokenizer gives modu's ids on real text."""
    vocab = Path(os.environ["MODU_GPT2_VOCAB"])
    torch.manual_seed(7)
    model = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, n_positions=64)).eval()
    src, ckpt, out = work / "hf-random-gpt2-vocab", work / "imported-gpt2-vocab", work / "hf-gpt2-vocab"
    model.save_pretrained(src)
    run([a.modu, "import", "hf", src, "--out", ckpt])
    run([a.modu, "export", ckpt, "--format", "safetensors", "--out", out])
    check((out / "vocab.json").read_bytes() == (vocab / "encoder.json").read_bytes(),
          "gpt2 vocabulary: exported vocab.json == OpenAI's encoder.json")
    check((out / "merges.txt").read_bytes() == (vocab / "vocab.bpe").read_bytes(),
          "gpt2 vocabulary: exported merges.txt == OpenAI's vocab.bpe")
    tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    text = (Path(a.corpus) / "melville-mobydick.txt").read_text(encoding="utf-8")[:20000]
    texts = [text, "Hello world, it's 2026!  Multiple   spaces\n\nand lines.", "café naïve 😀 <|endoftext|> 'll 've"]
    same = True
    for i, t in enumerate(texts):
        f = work / f"gpt2-vocab-{i}.txt"
        f.write_text(t, encoding="utf-8")
        same &= tok(t)["input_ids"] == [int(x) for x in run([a.modu, "tokenize", "--tokenizer", "gpt2",
                                                              "--allow-special", f]).split()]
    check(same, "gpt2 vocabulary: AutoTokenizer ids == modu tokenize ids")
    m2 = AutoModelForCausalLM.from_pretrained(out, local_files_only=True, dtype=torch.float32).eval()
    ids = tok(texts[1])["input_ids"]
    check((hf_logits(m2, ids) - hf_logits(model, ids)).abs().max().item() == 0.0,
          "gpt2 vocabulary: import -> export gives transformers identical logits")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--modu", required=True)
    ap.add_argument("--logits-tool", required=True)
    ap.add_argument("--extract-corpus", required=True)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    start = time.time()
    work = Path(a.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    run(["bash", a.extract_corpus, a.corpus])
    book = Path(a.corpus) / "doyle-sherlock.txt"
    tok_dir, data_dir = work / "tok", work / "data"
    run([a.modu, "prepare", "tokenizer", "--input", book, "--vocab-size", "1000", "--out", tok_dir, "-q"])
    run([a.modu, "prepare", "text", "--input", book, "--out", data_dir, "--tokenizer", tok_dir, "-q"])
    for arch in ["gpt2", "llama"]:
        t0 = time.time()
        run_dir = train(a, work, arch, tok_dir, data_dir)
        hf_dir = compare_export(a, work, arch, run_dir, tok_dir)
        compare_import(a, work, arch, hf_dir)
        figures[f"{arch}_total_s"] = round(time.time() - t0, 1)
    check_gpt2_vocabulary(a, work)
    figures["total_s"] = round(time.time() - start, 1)
    print("figures: " + json.dumps(figures), flush=True)
    if failures:
        print(f"{len(failures)} check(s) failed:\n  " + "\n  ".join(failures))
        return 1
    print("all transformers comparisons passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
