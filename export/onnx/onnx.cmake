# export/onnx/onnx.cmake — the ONNX messages of export/onnx.cpp: protoc compiles export/onnx/onnx.proto
# (modu's own subset of the ONNX schema) at build time into
# BUILD/generated/export/onnx/onnx.pb.{h,cc}, compiled into modu_export (#include "export/onnx/onnx.pb.h").
# Included by export/CMakeLists.txt.
find_package(Protobuf REQUIRED)  # Debian: libprotobuf-dev + protobuf-compiler (scripts/install-deps.sh)
set(MODU_ONNX_GENERATED_DIR ${PROJECT_BINARY_DIR}/generated)
set(MODU_ONNX_PB ${MODU_ONNX_GENERATED_DIR}/export/onnx/onnx.pb)
add_custom_command(
  OUTPUT ${MODU_ONNX_PB}.h ${MODU_ONNX_PB}.cc
  COMMAND ${CMAKE_COMMAND} -E make_directory ${MODU_ONNX_GENERATED_DIR}
  COMMAND protobuf::protoc --cpp_out=${MODU_ONNX_GENERATED_DIR} --proto_path=${PROJECT_SOURCE_DIR}
          ${PROJECT_SOURCE_DIR}/export/onnx/onnx.proto
  DEPENDS ${PROJECT_SOURCE_DIR}/export/onnx/onnx.proto protobuf::protoc
  COMMENT "protoc: export/onnx/onnx.proto"
  VERBATIM)
target_sources(modu_export PRIVATE ${MODU_ONNX_PB}.cc ${MODU_ONNX_PB}.h)
target_include_directories(modu_export SYSTEM PUBLIC ${MODU_ONNX_GENERATED_DIR})
target_link_libraries(modu_export PUBLIC protobuf::libprotobuf)
target_compile_definitions(modu_export PRIVATE MODU_VERSION_STRING="${PROJECT_VERSION}")
