// Placeholder entry points (recipes/entry.h) so that the `modu` binary links before the GPT recipe
// exists; each throws a "not implemented yet" modu::Error. Remove this file from
// recipes/CMakeLists.txt when the real implementations land.
#include "core/check.h"
#include "recipes/entry.h"

namespace modu::recipes {

void declare_recipe_schema(Config&) {
  throw Error("modu train: no recipe is implemented yet (recipes/entry_stub.cpp is linked)");
}

int train_main(const Config&) {
  throw Error("modu train: not implemented yet (recipes/entry_stub.cpp is linked)");
}

int generate_main(const GenerateOptions&) {
  throw Error("modu generate: not implemented yet (recipes/entry_stub.cpp is linked)");
}

}  // namespace modu::recipes
