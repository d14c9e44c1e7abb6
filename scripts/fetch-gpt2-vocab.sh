#!/usr/bin/env bash
# Fetches GPT-2's byte-level BPE vocabulary at set-up time (modu never downloads it at run time).
# Writes into DEST (default $REPO/.cache/gpt2):
#   gpt2.tiktoken  GPT-2's ranks in tiktoken format, taken from the PyPI sdist of openai-whisper==20250625
#                  (whisper/assets/gpt2.tiktoken); sha256 must equal tiktoken's pinned hash for r50k_base.
#   encoder.json   token string (GPT-2 byte-to-unicode form) -> id; = Hugging Face gpt2 vocab.json
#   vocab.bpe      "#version: 0.2" then the 50000 merges in rank order; = Hugging Face gpt2 merges.txt
# encoder.json and vocab.bpe are rebuilt from the ranks (python3, standard library only) and must be
# byte-identical to OpenAI's files (sha256 checked). Idempotent: exits early when all three files are
# present with the right hashes. Safe to run concurrently (flock on DEST/.lock).
# Usage: scripts/fetch-gpt2-vocab.sh [DEST] [--from FILE]   (--from: use a local gpt2.tiktoken, no PyPI)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST=""
FROM="${MODU_GPT2_TIKTOKEN:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --from) FROM="$2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    -*) echo "fetch-gpt2-vocab: unknown option '$1'" >&2; exit 2 ;;
    *) DEST="$1"; shift ;;
  esac
done
DEST="${DEST:-$REPO/.cache/gpt2}"

WHISPER_VERSION=20250625
SHA_TIKTOKEN=306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930  # tiktoken: r50k_base
SHA_ENCODER=196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783   # OpenAI encoder.json
SHA_VOCAB=1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5     # OpenAI vocab.bpe

log() { echo "fetch-gpt2-vocab: $*" >&2; }
die() { log "error: $*"; exit 1; }
hash_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }
all_ok() {
  hash_ok "$DEST/gpt2.tiktoken" "$SHA_TIKTOKEN" && hash_ok "$DEST/encoder.json" "$SHA_ENCODER" &&
    hash_ok "$DEST/vocab.bpe" "$SHA_VOCAB"
}

mkdir -p "$DEST"
exec 9>"$DEST/.lock"
flock 9
if all_ok; then
  log "up to date ($DEST)"
  exit 0
fi
command -v python3 >/dev/null || die "python3 is needed (scripts/install-deps.sh installs it)"

tmp="$(mktemp -d "$DEST/.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

if ! hash_ok "$DEST/gpt2.tiktoken" "$SHA_TIKTOKEN"; then
  if [ -n "$FROM" ]; then
    log "copying $FROM"
    cp "$FROM" "$tmp/gpt2.tiktoken"
  else
    if python3 -m pip --version >/dev/null 2>&1; then
      pip=(python3 -m pip)
    else
      pip=("$("$REPO/scripts/python-env.sh" --python)" -m pip)
    fi
    log "downloading the openai-whisper==$WHISPER_VERSION sdist from PyPI (${pip[*]} download)"
    "${pip[@]}" download --disable-pip-version-check -q --no-deps --no-binary :all: \
      -d "$tmp" "openai-whisper==$WHISPER_VERSION" >&2 ||
      die "pip download openai-whisper==$WHISPER_VERSION failed (no PyPI access? use --from FILE)"
    python3 - "$tmp" <<'PY' || die "could not extract whisper/assets/gpt2.tiktoken from the sdist"
import glob, sys, tarfile
tmp = sys.argv[1]
sdists = glob.glob(tmp + "/openai_whisper-*.tar.gz") + glob.glob(tmp + "/openai-whisper-*.tar.gz")
if len(sdists) != 1:
    sys.exit(f"expected one openai-whisper sdist in {tmp}, found {sdists}")
with tarfile.open(sdists[0]) as tar:
    member = [m for m in tar.getmembers() if m.name.endswith("/whisper/assets/gpt2.tiktoken")]
    if len(member) != 1:
        sys.exit(f"{sdists[0]}: no single whisper/assets/gpt2.tiktoken inside")
    with open(tmp + "/gpt2.tiktoken", "wb") as out:
        out.write(tar.extractfile(member[0]).read())
PY
  fi
  hash_ok "$tmp/gpt2.tiktoken" "$SHA_TIKTOKEN" ||
    die "gpt2.tiktoken has sha256 $(sha256sum "$tmp/gpt2.tiktoken" | cut -d' ' -f1)," \
      "expected $SHA_TIKTOKEN (tiktoken's r50k_base)"
  mv "$tmp/gpt2.tiktoken" "$DEST/gpt2.tiktoken"
fi

log "rebuilding encoder.json and vocab.bpe from the ranks"
python3 - "$DEST/gpt2.tiktoken" "$tmp" <<'PY'
# GPT-2's byte-to-unicode map: the 188 printable Latin-1 bytes map to themselves; the other 68 bytes
# (controls, space, 0x7F-0xA0, 0xAD) map, in byte order, to U+0100 onwards.
# Merges: for each token of rank r with 2+ bytes, in rank order, byte-pair-encode its bytes using only
# tokens of rank < r (tiktoken's rule: merge the adjacent pair whose concatenation has the lowest rank,
# leftmost first); a well-formed vocabulary leaves exactly two parts, the merge that created the token.
import base64, json, sys
src, out = sys.argv[1], sys.argv[2]
ranks = {}
with open(src, "rb") as f:
    for n, line in enumerate(f, 1):
        fields = line.split()
        if len(fields) != 2:
            sys.exit(f"{src}:{n}: expected '<base64 token> <rank>'")
        ranks[base64.b64decode(fields[0], validate=True)] = int(fields[1])
printable = [b for b in range(256) if 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or 0xAE <= b <= 0xFF]
b2u = {b: chr(b) for b in printable}
for b in range(256):
    if b not in b2u:
        b2u[b] = chr(256 + len(b2u) - len(printable))
to_u = lambda bs: "".join(b2u[b] for b in bs)

def parts_below(token, limit):
    parts = [bytes([b]) for b in token]
    while len(parts) > 1:
        best = None
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < limit and (best is None or r < best[0]):
                best = (r, i)
        if best is None:
            break
        i = best[1]
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return parts

by_rank = sorted(ranks.items(), key=lambda kv: kv[1])
merges = []
for token, rank in by_rank:
    if len(token) > 1:
        parts = parts_below(token, rank)
        if len(parts) != 2:
            sys.exit(f"{src}: token of rank {rank} ({token!r}) does not split into two lower-ranked tokens: {parts}")
        merges.append(f"{to_u(parts[0])} {to_u(parts[1])}\n")
encoder = {to_u(token): rank for token, rank in by_rank}
encoder["<|endoftext|>"] = len(by_rank)
# OpenAI's encoder.json is Python's json.dumps with default settings (ASCII escapes, ", " and ": ").
with open(out + "/encoder.json", "w", encoding="ascii") as f:
    f.write(json.dumps(encoder))
with open(out + "/vocab.bpe", "w", encoding="utf-8", newline="\n") as f:
    f.write("#version: 0.2\n" + "".join(merges))
PY
hash_ok "$tmp/encoder.json" "$SHA_ENCODER" ||
  die "rebuilt encoder.json has sha256 $(sha256sum "$tmp/encoder.json" | cut -d' ' -f1), expected $SHA_ENCODER"
hash_ok "$tmp/vocab.bpe" "$SHA_VOCAB" ||
  die "rebuilt vocab.bpe has sha256 $(sha256sum "$tmp/vocab.bpe" | cut -d' ' -f1), expected $SHA_VOCAB"
mv "$tmp/encoder.json" "$DEST/encoder.json"
mv "$tmp/vocab.bpe" "$DEST/vocab.bpe"
all_ok || die "files in $DEST changed while writing"
log "ready: $DEST/{gpt2.tiktoken,encoder.json,vocab.bpe} (sha256 verified)"
