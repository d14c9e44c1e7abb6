#!/usr/bin/env python3
"""Tokenizer benchmark: modu's GPT-2 encoder vs tiktoken, single thread, same text, same run.

The text is the bundled corpus (scripts/extract-corpus.sh: Austen, Moby-Dick, Sherlock Holmes, Tom
Sawyer; about 6 MB), read as bytes and concatenated in name order. tiktoken runs encode_ordinary (its
Rust core, one thread: a single call does not fan out); modu runs BpeTokenizer::encode_ordinary in
modu_bench_tokenizer. Both: one warm-up, then the best of --reps. Token counts must agree. Also times
the BPE trainer (whole corpus to a 4096 vocabulary) for reference; it has no peer here.
Usage: bench_tokenizer.py --bench PATH [--vocab DIR] [--corpus DIR] [--reps N] [--train-vocab V]
"""
import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", required=True, help="modu_bench_tokenizer binary")
    ap.add_argument("--vocab", default=os.path.join(REPO, ".cache", "gpt2"))
    ap.add_argument("--corpus", default=os.path.join(REPO, ".cache", "corpus"))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--train-vocab", type=int, default=4096)
    args = ap.parse_args()

    subprocess.run([os.path.join(REPO, "scripts", "extract-corpus.sh"), args.corpus], check=True)
    files = sorted(f for f in os.listdir(args.corpus) if f.endswith(".txt"))
    data = b"".join(open(os.path.join(args.corpus, f), "rb").read() for f in files)
    text = data.decode("utf-8")

    # tiktoken's own "gpt2" encoding, offline: seed its cache under the sha1-of-URL names it looks up.
    cache = os.path.join(REPO, ".cache", "tiktoken-cache")
    os.makedirs(cache, exist_ok=True)
    for name, url in [("vocab.bpe", "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe"),
                      ("encoder.json", "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json")]:
        with open(os.path.join(args.vocab, name), "rb") as src:
            blob = src.read()
        with open(os.path.join(cache, hashlib.sha1(url.encode()).hexdigest()), "wb") as dst:
            dst.write(blob)
    os.environ["TIKTOKEN_CACHE_DIR"] = cache
    import tiktoken

    enc = tiktoken.get_encoding("gpt2")
    ref_tokens = len(enc.encode_ordinary(text))  # warm-up
    best = float("inf")
    for _ in range(args.reps):
        t0 = time.perf_counter()
        enc.encode_ordinary(text)
        best = min(best, time.perf_counter() - t0)
    tiktoken_mbs = len(data) / best / 1e6

    with tempfile.NamedTemporaryFile(suffix=".txt") as tmp:
        tmp.write(data)
        tmp.flush()
        cmd = [args.bench, "--vocab", args.vocab, "--text", tmp.name, "--reps", str(args.reps)]
        if args.train_vocab:
            cmd += ["--train-vocab", str(args.train_vocab)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    modu = json.loads(out)
    if modu["tokens"] != ref_tokens:
        sys.exit(f"FAIL: modu produced {modu['tokens']} tokens, tiktoken {ref_tokens}")

    print(f"environment: {cpu_model()}; Linux {platform.release()}; Python {platform.python_version()}; "
          f"tiktoken {tiktoken.__version__}; both single-threaded")
    print(f"text: {len(files)} corpus files, {len(data) / 1e6:.2f} MB, {ref_tokens} tokens (GPT-2)")
    print(f"tiktoken encode_ordinary : {tiktoken_mbs:8.2f} MB/s (best of {args.reps})")
    print(f"modu     encode_ordinary : {modu['mb_per_s']:8.2f} MB/s (best of {args.reps})")
    print(f"ratio modu / tiktoken    : {modu['mb_per_s'] / tiktoken_mbs:8.2f}x")
    if args.train_vocab:
        print(f"modu BpeTrainer: {modu['train_bytes'] / 1e6:.2f} MB -> vocab {modu['train_vocab']} in "
              f"{modu['train_s']:.2f} s (counting {modu['train_count_s']:.2f} s, "
              f"merging {modu['train_merge_s']:.2f} s, "
              f"{modu['train_unique_pieces']} distinct pieces); no peer trainer in this run")


if __name__ == "__main__":
    main()
