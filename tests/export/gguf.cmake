# tests/export/gguf.cmake — tests of `modu export --format gguf` (export/gguf.cpp, export/gguf_file.cpp):
#   gguf_test        GoogleTest: the container and the writer read back in C++ (keys, tensors, offsets,
#                    codec error bounds, rotary rows, bad input). No Python; every build, ASan included.
#   gguf_models      fixture: tests/export/gguf_engines.py prepare trains a tiny GPT-2 and a tiny
#                    Llama-style model on a real book (`modu train`, 200 steps each), exports both in
#                    f32/f16/bf16/q8_0 and records modu's greedy texts, ids and logits.
#   gguf_reader      the `gguf` PyPI package (llama.cpp's own gguf-py, pure Python; venv set gguf-reader)
#                    reads every export independently. Label python.
#   gguf_engines     llama.cpp itself through llama-cpp-python (venv set gguf, which compiles the
#                    llama.cpp source it bundles: ~960 CPU-seconds, so ~8-10 min on CI's 2 cores, once
#                    per fresh machine): greedy continuations equal modu's for f32/f16, q8_0 agreement
#                    and perplexity. Labels python + engines: CI (scripts/test.sh, Release build) and
#                    scripts/test-engines.sh both run it.
modu_add_test(gguf_test SOURCES test_gguf.cpp LIBS modu_export modu_recipes)

set(MODU_GGUF_WORK "${CMAKE_CURRENT_BINARY_DIR}/gguf_engines")
set(MODU_GGUF_READER_PYTHON "${PROJECT_SOURCE_DIR}/.venv-gguf-reader/bin/python")

if(TARGET modu_logits_tool)
  add_test(NAME gguf_reader_python_env
           COMMAND ${PROJECT_SOURCE_DIR}/scripts/python-env.sh --set gguf-reader)
  set_tests_properties(gguf_reader_python_env PROPERTIES FIXTURES_SETUP gguf_reader_env
                       LABELS python TIMEOUT 900)

  add_test(NAME gguf_models
           COMMAND ${MODU_GGUF_READER_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/gguf_engines.py prepare
                   --work ${MODU_GGUF_WORK} --modu $<TARGET_FILE:modu>
                   --logits-tool $<TARGET_FILE:modu_logits_tool>)
  set_tests_properties(gguf_models PROPERTIES FIXTURES_SETUP gguf_models
                       FIXTURES_REQUIRED gguf_reader_env LABELS python TIMEOUT 900)

  add_test(NAME gguf_reader
           COMMAND ${MODU_GGUF_READER_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/gguf_engines.py reader
                   --work ${MODU_GGUF_WORK})
  set_tests_properties(gguf_reader PROPERTIES FIXTURES_REQUIRED "gguf_reader_env;gguf_models"
                       LABELS python TIMEOUT 600)

  # llama-cpp-python compiles llama.cpp: CPU only, portable flags, no multimodal library.
  add_test(NAME gguf_python_env COMMAND ${PROJECT_SOURCE_DIR}/scripts/python-env.sh --set gguf)
  set_tests_properties(gguf_python_env PROPERTIES FIXTURES_SETUP gguf_env LABELS "python;engines"
                       TIMEOUT 3600
                       ENVIRONMENT "CMAKE_ARGS=-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DGGML_CUDA=OFF")
  add_test(NAME gguf_engines
           COMMAND ${PROJECT_SOURCE_DIR}/.venv-gguf/bin/python ${CMAKE_CURRENT_SOURCE_DIR}/gguf_engines.py
                   engines --work ${MODU_GGUF_WORK})
  set_tests_properties(gguf_engines PROPERTIES FIXTURES_REQUIRED "gguf_env;gguf_models"
                       LABELS "python;engines" TIMEOUT 900)
endif()
