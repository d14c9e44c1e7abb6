// export/hf_import.cpp — `modu import hf` (not written yet; see
// export/export.h).
#include "core/check.h"
#include "export/export.h"

namespace modu::exporting {

int run_import_hf(const ImportHfOptions &opts) {
  MODU_FAIL("import hf: not implemented yet");
}

} // namespace modu::exporting
