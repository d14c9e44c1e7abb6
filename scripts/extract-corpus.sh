#!/usr/bin/env bash
# Writes modu's bundled real-text corpus (public-domain books shipped by Debian packages) as UTF-8 .txt
# files into OUTDIR (default $REPO/.cache/corpus):
#   austen-{emma,mansfieldpark,northangerabbey,persuasion,prideprejudice,sensesensibility}.txt
#        r-cran-janeaustenr, one line per element of the R character vector (Rscript writeLines)
#   melville-mobydick.txt    r-cran-tokenizers (tokenizers::mobydick, one string)
#   doyle-sherlock.txt       golang-github-pierrec-lz4-dev testdata/pg1661.txt (plain copy)
#   twain-tomsawyer.txt      golang-github-pierrec-lz4-dev testdata/Mark.Twain-Tom.Sawyer.txt (plain copy)
# Idempotent: a file already present and non-empty is kept; each file is written to a temporary name and
# renamed, so an interrupted run leaves no partial file. Packages: scripts/install-deps.sh.
# Usage: scripts/extract-corpus.sh [OUTDIR]
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$REPO/.cache/corpus}"
LZ4_TESTDATA=/usr/share/gocode/src/github.com/pierrec/lz4/testdata

log() { echo "extract-corpus: $*" >&2; }
die() { log "error: $*"; exit 1; }

mkdir -p "$OUT"
exec 9>"$OUT/.lock"
flock 9

# write NAME CMD...: runs CMD with stdout to OUT/NAME unless that file is already there.
write() {
  local name="$1"; shift
  if [ -s "$OUT/$name" ]; then return 0; fi
  "$@" > "$OUT/.$name.tmp" || die "could not produce $name (command: $*)"
  [ -s "$OUT/.$name.tmp" ] || die "$name came out empty (command: $*)"
  mv "$OUT/.$name.tmp" "$OUT/$name"
  log "wrote $OUT/$name ($(wc -c < "$OUT/$name") bytes)"
}
rscript() {
  command -v Rscript >/dev/null || die "Rscript not found (Debian: r-cran-janeaustenr pulls in r-base-core)"
  Rscript -e "$1"
}
copy() {
  [ -f "$1" ] || die "$1 not found (Debian package golang-github-pierrec-lz4-dev)"
  cat "$1"
}

for book in emma mansfieldpark northangerabbey persuasion prideprejudice sensesensibility; do
  write "austen-$book.txt" rscript "writeLines(janeaustenr::$book)"
done
write melville-mobydick.txt rscript 'writeLines(tokenizers::mobydick)'
write doyle-sherlock.txt copy "$LZ4_TESTDATA/pg1661.txt"
write twain-tomsawyer.txt copy "$LZ4_TESTDATA/Mark.Twain-Tom.Sawyer.txt"
log "corpus ready in $OUT ($(cat "$OUT"/*.txt | wc -c) bytes)"
