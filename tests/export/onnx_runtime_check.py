#!/usr/bin/env python3
"""tests/export/onnx_runtime_check.py — ONNX Runtime runs `modu export --format onnx`; logits must
match modu's own forward.

For each case: modu_onnx_reference_tool makes a tiny random checkpoint (gpt2, or llama with rotary,
SwiGLU and grouped-query attention; GPT-2's 50257-token vocabulary padded to 128), the real CLI
`modu export CKPT --format onnx --out DIR [--dtype f16]` writes model.onnx (with MODU_ONNX_EXTERNAL_DATA
=always: + model.onnx.data), onnx.checker validates the file (full_check: shape inference too), ONNX
Runtime (CPU) computes logits for token batches, and modu_onnx_reference_tool computes modu's logits for
the same tokens. Every case must agree within 1e-4 (max abs difference) with the same argmax; for the
f16 exports (weights stored as half, math in f32) modu's side runs with its weights rounded to half
the same way. Prints one line per case with the figures.

Usage: onnx_runtime_check.py --modu BIN --tool BIN --work DIR   (needs MODU_GPT2_VOCAB or .cache/gpt2)
"""
import argparse
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort

VOCAB = 50257
BLOCK = 64  # block_size of the tool's tiny models


def run(cmd, env=None):
    result = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        sys.exit(f"FAILED ({result.returncode}): {' '.join(cmd)}\n{result.stdout}")
    return result.stdout


def modu_logits(tool, ckpt, tokens, work, round_f16):
    out = os.path.join(work, "modu_logits.bin")
    rows = ";".join(",".join(str(int(t)) for t in row) for row in tokens)
    run([tool, "logits", "--checkpoint", ckpt, "--tokens", rows, "--out", out] +
        (["--round-f16"] if round_f16 else []))
    return np.fromfile(out, dtype="<f4").reshape(tokens.shape[0], tokens.shape[1], VOCAB)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--modu", required=True)
    ap.add_argument("--tool", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    rng = np.random.default_rng(1234)
    # (B, T) batches: a short prompt batch, a single token, and the full context.
    batches = [rng.integers(0, VOCAB, size=(2, 12)), rng.integers(0, VOCAB, size=(1, 1)),
               rng.integers(0, VOCAB, size=(1, BLOCK))]
    cases = [  # name, arch, dtype, external data, tolerance
        ("gpt2-f32", "gpt2", "f32", False, 1e-4),
        ("llama-f32", "llama", "f32", False, 1e-4),
        ("gpt2-f32-external", "gpt2", "f32", True, 1e-4),
        ("llama-f32-external", "llama", "f32", True, 1e-4),
        ("gpt2-f16", "gpt2", "f16", False, 1e-4),
        ("llama-f16", "llama", "f16", False, 1e-4),
    ]
    failures = []
    checkpoints = {}
    reference = {}  # (arch, f16-rounded weights, batch index) -> modu's logits
    for name, arch, dtype, external, tol in cases:
        start = time.time()
        case_dir = os.path.join(args.work, name)
        os.makedirs(case_dir)
        if arch not in checkpoints:
            ckpt = os.path.join(args.work, f"ckpt-{arch}")
            run([args.tool, "make-checkpoint", "--arch", arch, "--out", ckpt, "--seed", "3"])
            checkpoints[arch] = ckpt
        ckpt = checkpoints[arch]
        out = os.path.join(case_dir, "export")
        env = dict(os.environ, MODU_ONNX_EXTERNAL_DATA="always" if external else "never")
        run([args.modu, "export", ckpt, "--format", "onnx", "--out", out, "--dtype", dtype], env=env)
        model_path = os.path.join(out, "model.onnx")
        has_data = os.path.exists(os.path.join(out, "model.onnx.data"))
        if has_data != external:
            failures.append(f"{name}: model.onnx.data present={has_data}, expected {external}")
        onnx.checker.check_model(model_path, full_check=True)  # the path form also checks external data
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
        worst = 0.0
        for index, tokens in enumerate(batches):
            theirs = session.run(["logits"], {"input_ids": tokens.astype(np.int64)})[0]
            key = (arch, dtype == "f16", index)
            if key not in reference:
                reference[key] = modu_logits(args.tool, ckpt, tokens, case_dir, dtype == "f16")
            ours = reference[key]
            if theirs.shape != ours.shape:
                failures.append(f"{name}: ONNX Runtime logits {theirs.shape} vs modu {ours.shape}")
                continue
            worst = max(worst, float(np.max(np.abs(theirs - ours))))
            if not np.array_equal(theirs.argmax(-1), ours.argmax(-1)):
                failures.append(f"{name}: argmax differs for a batch of shape {tokens.shape}")
        scale = float(np.max(np.abs(ours)))
        status = "ok" if worst <= tol else "FAIL"
        print(f"onnx_runtime_check: {name}: max |logits diff| = {worst:.3e} (tolerance {tol:g}, "
              f"max |logit| {scale:.2f}), {time.time() - start:.1f}s  {status}", flush=True)
        if worst > tol:
            failures.append(f"{name}: max abs logit difference {worst:.3e} > {tol:g}")
    print(f"onnx_runtime_check: onnxruntime {ort.__version__}, onnx {onnx.__version__}, opset "
          f"{onnx.load(os.path.join(args.work, 'gpt2-f32', 'export', 'model.onnx')).opset_import[0].version}")
    if failures:
        sys.exit("onnx_runtime_check: FAILED\n  " + "\n  ".join(failures))
    print("onnx_runtime_check: all cases passed")


if __name__ == "__main__":
    main()
