# GGUF (llama.cpp) export tests, included by tests/export/CMakeLists.txt.
#   gguf_test: the container and the writer read back in C++ (no Python; runs under ASan too).
#   gguf_reader: the `gguf` PyPI package (pure Python, llama.cpp's own gguf-py) reads exports of
#     freshly trained tiny models independently (label python; venv set "gguf-reader").
#   gguf_engines: llama.cpp itself through llama-cpp-python (labels python, engines): greedy text
#     equals `modu generate`, q8_0 agreement and perplexity; runs from scripts/test-engines.sh.
modu_add_test(gguf_test SOURCES test_gguf.cpp LIBS modu_export modu_recipes)
