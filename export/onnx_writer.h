// export/onnx_writer.h — the ONNX writer of `modu export --format onnx` with its knobs exposed for
// tests: the graph from `input_ids` (int64 [batch, sequence]) to `logits` (float [batch, sequence,
// vocab]) for the gpt2 and llama architectures, in standard ONNX operators at opset kOnnxOpset, the
// weights as initializers in modu's own names and layouts (nn::Linear weights (out, in), consumed by
// Gemm transB=1), written into DIR/model.onnx and, for large models, DIR/model.onnx.data.
//
// Invariants:
//   - Output bytes depend only on the ExportSource and the options (no time stamps, no paths).
//   - Every initializer is either inline (raw_data) or external: location kOnnxDataFile, offset a
//     multiple of kOnnxExternalAlignment, length its byte size; the data file holds the tensors in
//     initializer order with zero padding between them.
//   - dtype f16 stores the weights as FLOAT16 initializers, each followed by a Cast to float: the
//     graph computes in f32 either way, so `logits` is always float.
#pragma once

#include <cstdint>
#include <string>

#include "export/export.h"

namespace modu::exporting {

inline constexpr int64_t kOnnxOpset = 21;      // default domain ai.onnx ("")
inline constexpr int64_t kOnnxIrVersion = 10;  // the IR version that introduced opset 21
inline constexpr const char* kOnnxModelFile = "model.onnx";
inline constexpr const char* kOnnxDataFile = "model.onnx.data";
inline constexpr int64_t kOnnxExternalAlignment = 4096;  // page size: lets runtimes mmap each tensor

// Where the weights go. automatic: external when their bytes exceed external_threshold_bytes.
enum class OnnxExternalData { automatic, always, never };

struct OnnxWriteOptions {
  std::string dtype = "f32";  // f32 | f16
  OnnxExternalData external_data = OnnxExternalData::automatic;
  uint64_t external_threshold_bytes = uint64_t{1} << 30;  // 1 GiB (protobuf's hard limit is 2 GiB)
};

// Reads MODU_ONNX_EXTERNAL_DATA (auto | always | never; unset = auto); errors on other values.
OnnxExternalData onnx_external_data_from_env();

// Writes DIR/model.onnx (+ DIR/model.onnx.data). Errors (modu::Error) name the tensor or config field.
void write_onnx_model(const ExportSource& src, const fs::path& dir, const OnnxWriteOptions& options);

}  // namespace modu::exporting
