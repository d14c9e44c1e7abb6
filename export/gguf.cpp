// export/gguf.cpp — the gguf writer of `modu export` (not written yet; see
// export/export.h).
#include "core/check.h"
#include "export/export.h"

namespace modu::exporting {

void write_gguf_export(const ExportSource &src, const fs::path &dir,
                       const std::string &dtype) {
  MODU_FAIL("export: --format gguf is not implemented yet");
}

} // namespace modu::exporting
