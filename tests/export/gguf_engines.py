#!/usr/bin/env python3
"""tests/export/gguf_engines.py — `modu export --format gguf` checked by others' code.

Three steps, each a CTest entry (tests/export/gguf.cmake):

  prepare  (fixture gguf_models) trains two tiny models with `modu train` on a real book (a
           512-token BPE made by `modu prepare tokenizer`, ~200 steps each: greedy decoding of an
           untrained model is degenerate and fragile), exports each to GGUF in f32, f16, bf16 and
           q8_0, and records modu's side: `modu generate --temperature 0` texts, greedy ids and
           logits (tests/export/logits_tool.cpp) on held-out text (the book's val tail).
  reader   the `gguf` PyPI package (llama.cpp's own gguf-py, pure Python) reads every export:
           keys, tokenizer, tensor names/types/shapes/offsets; f16 and bf16 bytes equal numpy's /
           gguf-py's conversion of the f32 export, q8_0 bytes equal gguf-py's reference q8_0
           quantiser, dequantised values within the codec bounds.
  engines  llama.cpp through llama-cpp-python loads every export: its tokenizer gives modu's ids;
           greedy continuations of 32 tokens equal modu's (ids and `modu generate` text) for f32
           and f16; f32 logits equal modu's (within 1e-4 for llama; 5e-3 for gpt2, whose GELU ggml
           evaluates through an f16 table); bf16 and q8_0 agreement (tokens matched) and
           perplexity on held-out text against f32 are reported (asserted only within sane bounds).

Exit status 0 when every assertion holds; figures go to stdout and WORK/<step>-summary.json.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

PROMPTS = [
    "It was a dark night, and",
    "Holmes looked at me and said",
    "The door opened, and",
]
NEW_TOKENS = 32
DTYPES = ["f32", "f16", "bf16", "q8_0"]
VOCAB = 512
CONTEXT = 128
HELDOUT_BYTES = 6000

RECIPES = {
    "gpt2": """
[model]
arch = "gpt2"
vocab_size = {vocab}
pad_vocab_to = 64
n_layer = 2
n_head = 4
n_embd = 64
block_size = {ctx}
dropout = 0.0
""",
    "llama": """
[model]
arch = "llama"
vocab_size = {vocab}
pad_vocab_to = 64
n_layer = 2
n_head = 4
n_kv_head = 2
n_embd = 64
block_size = {ctx}
norm_eps = 1e-5
rope_theta = 10000.0
""",
}
TRAIN = """
[data]
train = "{data}/train"
val = "{data}/val"
tokenizer = "{tok}"
[train]
steps = 200
batch_size = 16
micro_batch_size = 16
seq_len = 64
out_dir = "{out}"
seed = 1
log_every = 50
eval_every = 200
eval_batches = 4
checkpoint_every = 200
[optim]
lr = 1e-2
min_lr = 1e-3
warmup_steps = 20
"""


def log(*a):
    print(*a, flush=True)


def run(cmd, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1")  # tiny models: threads only contend
    r = subprocess.run([str(c) for c in cmd], capture_output=True, env=env, **kw)
    if r.returncode != 0:
        sys.stderr.write(r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace"))
        raise SystemExit(f"FAILED: {' '.join(map(str, cmd))} exited {r.returncode}")
    return r.stdout


class Checks:
    """Collects failures so one run reports all of them."""

    def __init__(self):
        self.failures = []
        self.count = 0

    def check(self, ok, what):
        self.count += 1
        if not ok:
            self.failures.append(what)
            log(f"  FAIL: {what}")
        return ok

    def finish(self, name):
        if self.failures:
            log(f"{name}: {len(self.failures)} of {self.count} checks failed")
            for f in self.failures:
                log(f"  - {f}")
            return 1
        log(f"{name}: all {self.count} checks passed")
        return 0


def export_path(work, arch, dtype):
    return work / arch / f"gguf-{dtype}" / "model.gguf"


# ---- prepare ----------------------------------------------------------------------------------


def prepare(a):
    work = Path(a.work)
    book = Path(a.book)
    if not book.is_file():
        raise SystemExit(f"prepare: the book {book} is missing (Debian golang-github-pierrec-lz4-dev;"
                         " scripts/install-deps.sh)")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    t0 = time.time()
    modu = a.modu
    tok, data = work / "tok", work / "data"
    run([modu, "prepare", "tokenizer", "--input", book, "--vocab-size", VOCAB, "--out", tok, "-q"])
    run([modu, "prepare", "text", "--input", book, "--tokenizer", tok, "--out", data,
         "--val-fraction", "0.1", "-q"])
    meta = json.loads((data / "meta.json").read_text())
    val_start = meta["inputs"][0]["val_start_byte"]
    heldout = book.read_bytes()[val_start:val_start + HELDOUT_BYTES]
    heldout = heldout[:heldout.rfind(b" ")]  # whole words
    (work / "heldout.txt").write_bytes(heldout)
    heldout_ids = [int(x) for x in run([modu, "tokenize", "--tokenizer", tok,
                                        work / "heldout.txt"]).split()]
    summary = {"heldout_tokens": len(heldout_ids)}
    for arch in ("gpt2", "llama"):
        d = work / arch
        d.mkdir()
        recipe = d / "recipe.toml"
        recipe.write_text(RECIPES[arch].format(vocab=VOCAB, ctx=CONTEXT) +
                          TRAIN.format(data=data, tok=tok, out=d / "run"))
        t = time.time()
        out = run([a.modu, "train", recipe]).decode()
        val_loss = [ln for ln in out.splitlines() if "val_loss" in ln][-1]
        log(f"prepare: trained {arch} in {time.time() - t:.1f}s ({val_loss.strip()})")
        summary[f"{arch}_train_s"] = round(time.time() - t, 1)
        summary[f"{arch}_final"] = val_loss.strip()
        for dtype in DTYPES:
            run([modu, "export", d / "run", "--format", "gguf", "--dtype", dtype,
                 "--out", d / f"gguf-{dtype}"])
        # modu's side of the comparisons.
        side = {"prompts": []}
        for p in PROMPTS:
            pf = d / "prompt.txt"
            pf.write_text(p)
            ids = [int(x) for x in run([modu, "tokenize", "--tokenizer", tok, pf]).split()]
            text = run([modu, "generate", d / "run", "--prompt", p, "--temperature", "0",
                        "--max-new-tokens", NEW_TOKENS])
            greedy = json.loads(run([a.logits_tool, d / "run", "--tokens", ",".join(map(str, ids)),
                                     "--greedy", NEW_TOKENS, "--no-logits"]))["greedy"]
            side["prompts"].append({"prompt": p, "ids": ids, "generate_stdout": text.decode("latin-1"),
                                    "greedy": greedy})
        # modu's logits over held-out windows (for its own perplexity and the f32 comparison).
        windows = []
        for start in range(0, len(heldout_ids) - 1, CONTEXT):
            w = heldout_ids[start:start + CONTEXT]
            if len(w) < 2:
                break
            windows.append(w)
        side["windows"] = windows
        logits_dir = d / "modu-logits"
        logits_dir.mkdir()
        for k, w in enumerate(windows):
            (logits_dir / f"{k}.json").write_bytes(
                run([a.logits_tool, d / "run", "--tokens", ",".join(map(str, w))]))
        (d / "modu.json").write_text(json.dumps(side))
    summary["prepare_s"] = round(time.time() - t0, 1)
    (work / "prepare-summary.json").write_text(json.dumps(summary, indent=1))
    (work / "heldout_ids.json").write_text(json.dumps(heldout_ids))
    log(f"prepare: done in {summary['prepare_s']}s; held-out text {len(heldout_ids)} tokens")
    return 0


# ---- reader (gguf-py) -------------------------------------------------------------------------


def field_value(reader, key):
    f = reader.fields[key]
    from gguf import GGUFValueType

    if f.types[0] == GGUFValueType.ARRAY:
        if f.types[-1] == GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        return [f.parts[i].tolist()[0] for i in f.data]
    if f.types[0] == GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    return f.parts[f.data[0]].tolist()[0]


def reader_check(a):
    import numpy as np
    import gguf
    from gguf import GGMLQuantizationType as Q

    work = Path(a.work)
    c = Checks()
    summary = {}
    t0 = time.time()
    for arch in ("gpt2", "llama"):
        manifest = next((work / arch / "run" / "checkpoints").glob("step_*/manifest.json"))
        model = json.loads(manifest.read_text())["metadata"]["model"]
        files = {dt: gguf.GGUFReader(export_path(work, arch, dt)) for dt in DTYPES}
        ref = files["f32"]
        ref_tensors = {t.name: t for t in ref.tensors}
        for dtype, r in files.items():
            where = f"{arch}/{dtype}"
            c.check(field_value(r, "general.architecture") == arch, f"{where}: general.architecture")
            want_ft = {"f32": 0, "f16": 1, "bf16": 32, "q8_0": 7}[dtype]
            c.check(field_value(r, "general.file_type") == want_ft, f"{where}: general.file_type")
            hs = model["n_embd"] // model["n_head"]
            kv = model["n_kv_head"] or model["n_head"]
            expect = {
                f"{arch}.context_length": model["block_size"],
                f"{arch}.embedding_length": model["n_embd"],
                f"{arch}.block_count": model["n_layer"],
                f"{arch}.attention.head_count": model["n_head"],
                f"{arch}.attention.head_count_kv": kv if arch == "llama" else model["n_head"],
                f"{arch}.vocab_size": model["vocab_size"],
                "tokenizer.ggml.model": "gpt2",
                "tokenizer.ggml.pre": "gpt-2",
                "tokenizer.ggml.bos_token_id": VOCAB - 1,
                "tokenizer.ggml.eos_token_id": VOCAB - 1,
            }
            if arch == "llama":
                expect["llama.rope.dimension_count"] = hs
            for k, v in expect.items():
                c.check(k in r.fields and field_value(r, k) == v,
                        f"{where}: {k} = {field_value(r, k) if k in r.fields else None}, expected {v}")
            eps_key = f"{arch}.attention.layer_norm_{'rms_' if arch == 'llama' else ''}epsilon"
            c.check(abs(field_value(r, eps_key) - model["norm_eps"]) < 1e-9, f"{where}: {eps_key}")
            tokens = field_value(r, "tokenizer.ggml.tokens")
            types = field_value(r, "tokenizer.ggml.token_type")
            merges = field_value(r, "tokenizer.ggml.merges")
            c.check(len(tokens) == VOCAB and tokens[-1] == "<|endoftext|>", f"{where}: tokens")
            c.check(types == [1] * (VOCAB - 1) + [3], f"{where}: token types")
            c.check(len(merges) == VOCAB - 257 and all(len(m.split(" ")) == 2 for m in merges),
                    f"{where}: {len(merges)} merges")
            # Merged tokens are the concatenation of their merge pair (rank order = ids after 256).
            c.check(all(tokens[256 + k] == m.replace(" ", "", 1) for k, m in enumerate(merges)),
                    f"{where}: merges build tokens 256..")
            # Tensors: same names and shapes as f32; llama.cpp's type rules; aligned data.
            c.check([t.name for t in r.tensors] == [t.name for t in ref.tensors], f"{where}: tensor names")
            for t in r.tensors:
                rt = ref_tensors[t.name]
                c.check(list(t.shape) == list(rt.shape), f"{where}: {t.name} shape")
                c.check(t.data_offset % 32 == 0, f"{where}: {t.name} offset {t.data_offset}")
                keep_f32 = len(t.shape) == 1 or t.name == "position_embd.weight"
                want = Q.F32 if keep_f32 or dtype == "f32" else {"f16": Q.F16, "bf16": Q.BF16,
                                                                 "q8_0": Q.Q8_0}[dtype]
                c.check(t.tensor_type == want, f"{where}: {t.name} is {t.tensor_type.name}, expected {want.name}")
                x = np.asarray(rt.data, dtype=np.float32).reshape(-1)
                raw = np.asarray(t.data).tobytes()
                if t.tensor_type == Q.F16:
                    c.check(raw == x.astype(np.float16).tobytes(), f"{where}: {t.name} f16 bytes = numpy's")
                elif t.tensor_type == Q.BF16:
                    c.check(raw == gguf.quants.quantize(x, Q.BF16).tobytes(),
                            f"{where}: {t.name} bf16 bytes = gguf-py's")
                elif t.tensor_type == Q.Q8_0:
                    rows = x.reshape(-1, int(t.shape[0]))
                    c.check(raw == gguf.quants.quantize(rows, Q.Q8_0).tobytes(),
                            f"{where}: {t.name} q8_0 bytes = gguf-py's reference quantiser")
                    back = gguf.quants.dequantize(np.asarray(t.data), Q.Q8_0).reshape(-1)
                    amax = np.abs(x.reshape(-1, 32)).max(axis=1, keepdims=True)
                    err = np.abs(back.reshape(-1, 32) - x.reshape(-1, 32))
                    c.check(bool((err <= amax / 127 * 0.57 + 1e-12).all()), f"{where}: {t.name} q8_0 error")
                else:
                    c.check(raw == x.tobytes(), f"{where}: {t.name} f32 bytes")
        summary[arch] = {dt: os.path.getsize(export_path(work, arch, dt)) for dt in DTYPES}
        log(f"reader: {arch}: file bytes " + ", ".join(f"{k} {v}" for k, v in summary[arch].items()))
    summary["reader_s"] = round(time.time() - t0, 1)
    (work / "reader-summary.json").write_text(json.dumps(summary, indent=1))
    return c.finish("reader")


# ---- engines (llama.cpp) ----------------------------------------------------------------------


def engines_check(a):
    import numpy as np
    import llama_cpp

    work = Path(a.work)
    c = Checks()
    heldout_ids = json.loads((work / "heldout_ids.json").read_text())
    heldout = (work / "heldout.txt").read_bytes()
    results = {"llama_cpp_python": llama_cpp.__version__}
    t0 = time.time()
    for arch in ("gpt2", "llama"):
        side = json.loads((work / arch / "modu.json").read_text())
        modu_logits = [np.asarray(json.loads((work / arch / "modu-logits" / f"{k}.json").read_text())["logits"],
                                  dtype=np.float64) for k in range(len(side["windows"]))]
        modu_nll = []
        for w, lg in zip(side["windows"], modu_logits):
            lse = np.log(np.exp(lg - lg.max(axis=1, keepdims=True)).sum(axis=1)) + lg.max(axis=1)
            modu_nll += list(lse[:-1] - lg[np.arange(len(w) - 1), w[1:]])
        modu_ppl = math.exp(sum(modu_nll) / len(modu_nll))
        res = {"modu_ppl": modu_ppl}
        greedy_by_dtype = {}
        for dtype in DTYPES:
            where = f"{arch}/{dtype}"
            llm = llama_cpp.Llama(model_path=str(export_path(work, arch, dtype)), n_ctx=CONTEXT,
                                  n_batch=CONTEXT, n_threads=1, n_threads_batch=1, logits_all=True,
                                  type_k=0, type_v=0, verbose=False)  # KV cache in f32 (ggml type 0)
            c.check(llm.n_vocab() == VOCAB, f"{where}: n_vocab {llm.n_vocab()}")
            # Tokenizer: llama.cpp's own BPE from the GGUF metadata gives modu's ids.
            c.check(llm.tokenize(heldout, add_bos=False, special=False) == heldout_ids,
                    f"{where}: llama.cpp tokenizes the held-out text like modu")
            greedy_by_dtype[dtype] = []
            for p in side["prompts"]:
                c.check(llm.tokenize(p["prompt"].encode(), add_bos=False, special=False) == p["ids"],
                        f"{where}: prompt ids")
                llm.reset()
                llm.eval(p["ids"])
                out = []
                for _ in range(NEW_TOKENS):
                    nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))  # greedy, ties to lowest id
                    out.append(nxt)
                    llm.eval([nxt])
                greedy_by_dtype[dtype].append(out)
                if dtype in ("f32", "f16"):
                    c.check(out == p["greedy"], f"{where}: greedy ids {out} != modu's {p['greedy']} "
                                                f"for {p['prompt']!r}")
                    eot = VOCAB - 1
                    upto = out[:out.index(eot)] if eot in out else out
                    text = p["prompt"].encode() + llm.detokenize(upto) + b"\n"
                    c.check(text == p["generate_stdout"].encode("latin-1"),
                            f"{where}: text {text!r} != modu generate's {p['generate_stdout']!r}")
            # Perplexity over the held-out windows (and f32 logits against modu's).
            nll, worst = [], 0.0
            for w, ml in zip(side["windows"], modu_logits):
                llm.reset()
                llm.eval(w)
                lg = np.asarray(llm.scores[:len(w)], dtype=np.float64)
                worst = max(worst, float(np.abs(lg - ml).max()))
                lse = np.log(np.exp(lg - lg.max(axis=1, keepdims=True)).sum(axis=1)) + lg.max(axis=1)
                nll += list(lse[:-1] - lg[np.arange(len(w) - 1), w[1:]])
            ppl = math.exp(sum(nll) / len(nll))
            matched = sum(int(x == y) for o, p in zip(greedy_by_dtype[dtype], side["prompts"])
                          for x, y in zip(o, p["greedy"]))
            prefix = sum(next((i for i, (x, y) in enumerate(zip(o, p["greedy"])) if x != y), len(o))
                         for o, p in zip(greedy_by_dtype[dtype], side["prompts"]))
            total = NEW_TOKENS * len(side["prompts"])
            res[dtype] = {"ppl": ppl, "max_abs_logit_diff_vs_modu": worst,
                          "greedy_tokens_matched": f"{matched}/{total}",
                          "greedy_common_prefix": f"{prefix}/{total}"}
            log(f"engines: {where}: ppl {ppl:.4f} (modu f32 {modu_ppl:.4f}), max |logit - modu| {worst:.2e}, "
                f"greedy tokens matched {matched}/{total} (common prefix {prefix}/{total})")
            if dtype == "f32":
                # ggml evaluates GELU through an f16 lookup table (GGML_GELU_FP16): ~1e-3 on gpt2's
                # logits; the llama architecture has no such approximation.
                bound = 5e-3 if arch == "gpt2" else 1e-4
                c.check(worst < bound, f"{where}: f32 logits differ from modu's by {worst:.2e} (bound {bound})")
            bound = {"f32": 1e-4, "f16": 5e-3, "bf16": 3e-2, "q8_0": 3e-2}[dtype]
            c.check(abs(ppl / modu_ppl - 1) < bound,
                    f"{where}: perplexity {ppl:.4f} vs modu {modu_ppl:.4f} (bound {bound})")
            c.check(ppl < VOCAB / 4, f"{where}: perplexity {ppl:.1f} is not that of a trained model")
            del llm
        res["q8_0_ppl_vs_f32"] = res["q8_0"]["ppl"] / res["f32"]["ppl"]
        results[arch] = res
    results["engines_s"] = round(time.time() - t0, 1)
    (work / "engines-summary.json").write_text(json.dumps(results, indent=1))
    log(json.dumps(results, indent=1))
    return c.finish("engines")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("step", choices=["prepare", "reader", "engines"])
    ap.add_argument("--work", required=True, help="scratch folder shared by the steps")
    ap.add_argument("--modu", help="the modu binary (prepare)")
    ap.add_argument("--logits-tool", help="modu_logits_tool (prepare)")
    ap.add_argument("--book", default="/usr/share/gocode/src/github.com/pierrec/lz4/testdata/pg1661.txt",
                    help="plain text to train on (prepare)")
    a = ap.parse_args()
    if a.step == "prepare":
        if not a.modu or not a.logits_tool:
            ap.error("prepare needs --modu and --logits-tool")
        return prepare(a)
    if not (Path(a.work) / "prepare-summary.json").exists():
        raise SystemExit(f"{a.step}: {a.work} holds no prepared models; run the prepare step "
                         "(CTest fixture gguf_models) first")
    return reader_check(a) if a.step == "reader" else engines_check(a)


if __name__ == "__main__":
    sys.exit(main())
