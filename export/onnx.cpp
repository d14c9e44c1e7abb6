// export/onnx.cpp — the onnx writer of `modu export` (not written yet; see
// export/export.h).
#include "core/check.h"
#include "export/export.h"

namespace modu::exporting {

void write_onnx_export(const ExportSource &src, const fs::path &dir,
                       const std::string &dtype) {
  MODU_FAIL("export: --format onnx is not implemented yet");
}

} // namespace modu::exporting
