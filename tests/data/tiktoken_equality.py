#!/usr/bin/env python3
"""Token-for-token equality of modu's GPT-2 tokenizer (through modu_tokenize_tool) with tiktoken.

Reference: tiktoken (pinned in scripts/requirements-test.txt) with its own "gpt2" and "r50k_base"
encodings, loaded offline: TIKTOKEN_CACHE_DIR is seeded from the fetched vocabulary under the
sha1-of-URL names tiktoken looks up (network reads are refused), so this also checks that the rebuilt
encoder.json / vocab.bpe pass tiktoken's own sha256 pins.

Inputs, each compared id by id (the run fails on the first mismatch and prints its context):
  - the bundled corpus (scripts/extract-corpus.sh: Austen, Moby-Dick, Sherlock Holmes, Tom Sawyer),
    with encode_ordinary;
  - Sherlock Holmes paragraphs joined by "<|endoftext|>", with encode(allowed_special="all");
  - a synthetic stress file: every code point of planes 0-3 and 14 in several contexts, plus random
    runs of whitespace, CRLF, contractions, digits, marks, emoji and mixed scripts;
  - random ill-formed UTF-8: modu's default policy must equal tiktoken on bytes.decode("utf-8",
    "replace"), and the keep-bytes policy must round-trip the raw bytes;
  - a vocabulary trained by modu (4096 ids, on Austen), loaded into tiktoken from its encoder.json +
    vocab.bpe (data_gym_to_mergeable_bpe_ranks), on held-out Moby-Dick: the trainer's output is a
    valid GPT-2-format vocabulary and modu encodes with it exactly as tiktoken does.
Usage: tiktoken_equality.py --tool PATH --vocab DIR [--corpus DIR] [--work DIR]
"""
import argparse
import array
import hashlib
import os
import random
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EOT = "<|endoftext|>"
# tiktoken_ext/openai_public.py: where tiktoken would download each file from.
URLS = {
    "vocab.bpe": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
    "encoder.json": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
    "gpt2.tiktoken": "https://openaipublic.blob.core.windows.net/encodings/r50k_base.tiktoken",
}


def seed_tiktoken_cache(vocab_dir, cache_dir):
    os.makedirs(cache_dir, exist_ok=True)
    for name, url in URLS.items():
        shutil.copyfile(os.path.join(vocab_dir, name), os.path.join(cache_dir, hashlib.sha1(url.encode()).hexdigest()))
    os.environ["TIKTOKEN_CACHE_DIR"] = cache_dir


def load_encodings():
    import tiktoken
    import tiktoken.load

    local_read = tiktoken.load.read_file

    def offline(blobpath):
        if "://" in blobpath:
            raise RuntimeError(f"tiktoken tried to download {blobpath}: the seeded cache missed or failed its hash")
        return local_read(blobpath)

    tiktoken.load.read_file = offline
    return tiktoken.__version__, tiktoken.get_encoding("gpt2"), tiktoken.get_encoding("r50k_base")


def run_tool(tool, vocab, args, data):
    """Encodes bytes with modu_tokenize_tool; returns the ids."""
    proc = subprocess.run([tool, "encode", "--vocab", vocab, *args, "-"], input=data,
                          capture_output=True)
    if proc.returncode != 0:
        sys.exit(f"FAIL: {tool} encode {' '.join(args)} exited {proc.returncode}: "
                 f"{proc.stderr.decode(errors='replace')}")
    ids = array.array("i")
    ids.frombytes(proc.stdout)
    if sys.byteorder == "big":
        ids.byteswap()
    return ids


def compare(name, ours, theirs, enc):
    """Returns the count compared; exits on the first mismatch with context."""
    n = min(len(ours), len(theirs))
    first = next((i for i in range(n) if ours[i] != theirs[i]), None)
    if first is None and len(ours) == len(theirs):
        return n
    i = n if first is None else first
    lo, hi = max(0, i - 8), i + 8
    show = lambda ids: [(t, enc.decode_single_token_bytes(t)) for t in ids[lo:hi]]
    prefix = enc.decode_bytes(list(theirs[:i]))
    print(f"FAIL: {name}: first mismatch at token {i} (byte offset {len(prefix)}); "
          f"modu has {len(ours)} tokens, tiktoken {len(theirs)}", file=sys.stderr)
    print(f"  text around it: {enc.decode_bytes(list(theirs[lo:hi]))!r}", file=sys.stderr)
    print(f"  modu     [{lo}:{hi}]: {show(ours)}", file=sys.stderr)
    print(f"  tiktoken [{lo}:{hi}]: {show(theirs)}", file=sys.stderr)
    sys.exit(1)


def stress_text(seed=20240607):
    rnd = random.Random(seed)
    out = []
    # Every code point of the planes with assigned characters, in contexts where its class shows:
    # a contraction after it, letters and digits around it, doubled, and after spaces.
    for cp in list(range(0x20, 0x40000)) + list(range(0xE0000, 0xE0200)):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        out.append(f"{c}'s a{c}b 1{c}2 {c}{c}  {c}\n")
    pieces = [" ", "  ", "\t", "\n", "\n\n", "\r\n", "\r", "\u00a0", "\u3000", "\u2003", "\u200b", "\x0b", "\x0c",
              "\u0085", "\u2028", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "''", "'", "don't", "1", "42",
              "2024", "3.14", "\u0663", "\u2162", "\u00bd", "e\u0301", "\u0301", "a", "The", "quick", "brown",
              "\u00e9t\u00e9", "\u043f\u0440\u0438\u0432\u0435\u0442", "\u05e9\u05dc\u05d5\u05dd",
              "\u0645\u0631\u062d\u0628\u0627", "\u0928\u092e\u0938\u094d\u0924\u0947", "\u4f60\u597d",
              "\uc548\ub155", "\U0001F600", "\U0001F44D\U0001F3FD", "\U0001F468\u200d\U0001F469\u200d\U0001F467",
              "\U0001F1EB\U0001F1F7", "\u2764\ufe0f", "!", "?!", "...", "--", "\u2014", "\u00ab", "$", "#", "@",
              "<|", "|>", "\\", "\ufffd", "\ufeff", "\U00010D50", "\U0001E4D0", "\x00", "\x1c", "\x7f"]
    for _ in range(60000):
        out.append("".join(rnd.choice(pieces) for _ in range(rnd.randint(1, 12))))
        out.append(rnd.choice(["", " ", "\n", "  ", " \n"]))
    return "".join(out)


def invalid_bytes(seed=7, count=4000):
    rnd = random.Random(seed)
    chunks = [b"ab", b" cd", b"\xc3\xa9", b"\xe2\x82\xac", b"\xf0\x9f\x98\x80", b"\x80", b"\xbf", b"\xc0\xaf",
              b"\xe0\x80\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xf8", b"\xff", b"\xe2\x82", b"\xf0\x9f",
              b"\xc3", b" ", b"\n", b"'s", b"1"]
    out = []
    for _ in range(count):
        out.append(b"".join(rnd.choice(chunks) for _ in range(rnd.randint(1, 10))))
        out.append(bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 6))))
    return b"".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tool", required=True)
    ap.add_argument("--vocab", required=True)
    ap.add_argument("--corpus", default=os.path.join(REPO, ".cache", "corpus"))
    ap.add_argument("--work", default=os.path.join(REPO, ".cache", "tiktoken_equality"))
    args = ap.parse_args()

    for name in URLS:
        if not os.path.isfile(os.path.join(args.vocab, name)):
            sys.exit(f"FAIL: {os.path.join(args.vocab, name)} is missing: run scripts/fetch-gpt2-vocab.sh")
    subprocess.run([os.path.join(REPO, "scripts", "extract-corpus.sh"), args.corpus], check=True)
    os.makedirs(args.work, exist_ok=True)
    seed_tiktoken_cache(args.vocab, os.path.join(args.work, "tiktoken-cache"))
    version, gpt2, r50k = load_encodings()
    print(f"tiktoken {version}; vocabulary {args.vocab}; tool {args.tool}")

    total_tokens = total_bytes = 0
    t0 = time.time()

    def check(name, data, tool_args, reference, vocab=args.vocab, enc=gpt2):
        nonlocal total_tokens, total_bytes
        ours = run_tool(args.tool, vocab, tool_args, data)
        n = compare(name, ours, reference, enc)
        total_tokens += n
        total_bytes += len(data)
        print(f"  {name}: {len(data)} bytes, {n} tokens equal")

    corpus = sorted(f for f in os.listdir(args.corpus) if f.endswith(".txt"))
    if not corpus:
        sys.exit(f"FAIL: no .txt files in {args.corpus}")
    for f in corpus:
        data = open(os.path.join(args.corpus, f), "rb").read()
        text = data.decode("utf-8")
        ref = gpt2.encode_ordinary(text)
        if f == corpus[0]:
            compare(f + " (tiktoken gpt2 vs r50k_base)", ref, r50k.encode_ordinary(text), gpt2)
        check(f, data, ["--ordinary"], ref)

    sherlock = open(os.path.join(args.corpus, "doyle-sherlock.txt"), encoding="utf-8").read()
    docs = EOT.join(p for p in sherlock.split("\n\n") if p.strip())
    check("sherlock paragraphs joined by <|endoftext|>", docs.encode(), [], gpt2.encode(docs, allowed_special="all"))

    stress = stress_text()
    with open(os.path.join(args.work, "stress.txt"), "w", encoding="utf-8", newline="") as f:
        f.write(stress)
    check("synthetic unicode/whitespace stress", stress.encode(), ["--ordinary"], gpt2.encode_ordinary(stress))

    raw = invalid_bytes()
    check("ill-formed UTF-8 (replace policy)", raw, ["--ordinary"],
          gpt2.encode_ordinary(raw.decode("utf-8", "replace")))
    kept = run_tool(args.tool, args.vocab, ["--ordinary", "--invalid", "keep"], raw)
    if gpt2.decode_bytes(list(kept)) != raw:
        sys.exit("FAIL: ill-formed UTF-8 (keep policy): decoding the ids does not give the raw bytes back")
    print(f"  ill-formed UTF-8 (keep policy): {len(raw)} bytes round-trip through {len(kept)} tokens")

    trained = os.path.join(args.work, "trained-4096")
    austen = [os.path.join(args.corpus, f) for f in corpus if f.startswith("austen-")]
    subprocess.run([args.tool, "train", "--vocab-size", "4096", "--out", trained, *austen], check=True)
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    ranks = data_gym_to_mergeable_bpe_ranks(os.path.join(trained, "vocab.bpe"), os.path.join(trained, "encoder.json"))
    mine = tiktoken.Encoding(name="modu-trained-4096", pat_str=gpt2._pat_str, mergeable_ranks=ranks,
                             special_tokens={EOT: 4095})
    data = open(os.path.join(args.corpus, "melville-mobydick.txt"), "rb").read()
    check("modu-trained 4096 vocabulary in tiktoken, on Moby-Dick", data, ["--ordinary"],
          mine.encode_ordinary(data.decode("utf-8")), vocab=trained, enc=mine)

    print(f"tiktoken equality: {total_tokens} tokens compared over {total_bytes / 1e6:.2f} MB, "
          f"0 mismatches ({time.time() - t0:.1f} s)")


if __name__ == "__main__":
    main()
