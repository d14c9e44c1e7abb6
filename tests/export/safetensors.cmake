# safetensors / Hugging Face: the format and the mapping in C++ (every build, ASan included), and
# the comparison against transformers itself (label "engines", only with MODU_TEST_ENGINES=ON:
# scripts/test-engines.sh; its venv is torch + transformers, ~4.9 GB).
option(MODU_TEST_ENGINES "Register the engine comparisons too heavy for CI (transformers + torch)" OFF)

modu_add_test(export_safetensors_test SOURCES test_safetensors.cpp LIBS modu_export modu_recipes)

# modu's logits and greedy tokens for a checkpoint, as JSON (test-only; any engine test may use it).
add_executable(modu_logits_tool logits_tool.cpp)
target_link_libraries(modu_logits_tool PRIVATE modu_recipes modu_flags)
target_include_directories(modu_logits_tool PRIVATE ${PROJECT_SOURCE_DIR})

if(MODU_TEST_ENGINES)
  set(MODU_HF_VENV_DIR "${PROJECT_SOURCE_DIR}/.venv-hf")
  add_test(NAME export_hf_python_env COMMAND ${PROJECT_SOURCE_DIR}/scripts/python-env.sh --set hf)
  set_tests_properties(export_hf_python_env PROPERTIES FIXTURES_SETUP hf_env LABELS "python;engines"
                       TIMEOUT 1800)
  add_test(NAME export_hf_transformers
           COMMAND ${MODU_HF_VENV_DIR}/bin/python ${CMAKE_CURRENT_SOURCE_DIR}/hf_transformers_test.py
                   --modu $<TARGET_FILE:modu> --logits-tool $<TARGET_FILE:modu_logits_tool>
                   --extract-corpus ${PROJECT_SOURCE_DIR}/scripts/extract-corpus.sh --corpus ${MODU_CORPUS_DIR}
                   --work ${CMAKE_CURRENT_BINARY_DIR}/hf_transformers)
  set_tests_properties(export_hf_transformers PROPERTIES FIXTURES_REQUIRED "hf_env;gpt2_vocab"
                       LABELS "python;engines" TIMEOUT 1800
                       ENVIRONMENT "HF_HUB_OFFLINE=1;TRANSFORMERS_OFFLINE=1;MODU_GPT2_VOCAB=${MODU_GPT2_VOCAB_DIR}")
endif()
