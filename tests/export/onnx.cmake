# tests/export/onnx.cmake — tests of `modu export --format onnx` (export/onnx.cpp):
#   onnx_export_test        GoogleTest: the written model read back with the protoc classes (CI + ASan)
#   onnx_runtime_logits     ONNX Runtime (PyPI, venv .venv-onnx) runs the export of a tiny GPT-2 and a
#                           tiny Llama-style model; logits must match modu's within 1e-4 (f32)
#                           (labels python + engines: Release build only, see scripts/test.sh)
modu_add_test(onnx_export_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_onnx_export.cpp
              LIBS modu_export modu_recipes)

add_executable(modu_onnx_reference_tool ${CMAKE_CURRENT_LIST_DIR}/onnx_reference_tool.cpp)
target_link_libraries(modu_onnx_reference_tool PRIVATE modu_recipes modu_checkpoint modu_flags)
target_include_directories(modu_onnx_reference_tool PRIVATE ${PROJECT_SOURCE_DIR})

add_test(NAME onnx_python_env COMMAND ${PROJECT_SOURCE_DIR}/scripts/python-env.sh --set onnx)
set_tests_properties(onnx_python_env PROPERTIES FIXTURES_SETUP onnx_python_env LABELS "python;engines"
                     TIMEOUT 900)
add_test(NAME onnx_runtime_logits
         COMMAND ${PROJECT_SOURCE_DIR}/.venv-onnx/bin/python ${CMAKE_CURRENT_LIST_DIR}/onnx_runtime_check.py
                 --modu $<TARGET_FILE:modu> --tool $<TARGET_FILE:modu_onnx_reference_tool>
                 --work ${CMAKE_CURRENT_BINARY_DIR}/onnx_runtime_check)
set_tests_properties(onnx_runtime_logits PROPERTIES FIXTURES_REQUIRED "gpt2_vocab;onnx_python_env"
                     LABELS "python;engines" TIMEOUT 600
                     ENVIRONMENT "MODU_GPT2_VOCAB=${MODU_GPT2_VOCAB_DIR}")
