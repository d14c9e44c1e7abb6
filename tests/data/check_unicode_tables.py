#!/usr/bin/env python3
"""Checks that data/tokenizer/unicode_tables.cpp is exactly what gen_unicode_tables.py generates now
(from the pinned unicodedata2 16.0.0 in the venv), so the committed tables cannot drift from their source."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
gen = os.path.join(REPO, "data", "tokenizer", "gen_unicode_tables.py")
committed = os.path.join(REPO, "data", "tokenizer", "unicode_tables.cpp")
args = [sys.executable, gen]
if os.path.isfile("/usr/share/unicode/PropList.txt"):  # Debian unicode-data: cross-check White_Space
    args += ["--proplist", "/usr/share/unicode/PropList.txt"]
fresh = subprocess.run(args, check=True, capture_output=True).stdout
if fresh != open(committed, "rb").read():
    sys.exit(f"FAIL: {committed} differs from the output of {gen}; rerun: {' '.join(args[1:])} > {committed}")
print(f"unicode tables: {committed} matches its generator ({len(fresh)} bytes)")
