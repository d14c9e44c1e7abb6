// bench/recipes/dump_batches.cpp — writes the exact token windows a recipe trains on, so a peer
// framework can train on the same tokens in the same order:
//   dump_batches DATA_SPEC SEQ_LEN SEED BATCH STEPS OUT.bin
// OUT.bin = int32 little-endian, STEPS x BATCH x (SEQ_LEN + 1): step s, row b is the window of global
// sample s*BATCH + b of data::TokenLoader (shuffled with SEED), i.e. inputs = [:T], targets = [1:].
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "data/token_loader.h"

int main(int argc, char** argv) {
  if (argc != 7) {
    std::fprintf(stderr, "usage: dump_batches DATA_SPEC SEQ_LEN SEED BATCH STEPS OUT.bin\n");
    return 2;
  }
  try {
    int64_t T = std::stoll(argv[2]), B = std::stoll(argv[4]), steps = std::stoll(argv[5]);
    modu::data::TokenLoader loader(argv[1], "train", {T, static_cast<uint64_t>(std::stoull(argv[3])), true});
    std::ofstream out(argv[6], std::ios::binary);
    std::vector<int64_t> in(static_cast<size_t>(B * T)), tgt(static_cast<size_t>(B * T));
    std::vector<int32_t> row(static_cast<size_t>(T + 1));
    for (int64_t s = 0; s < steps; ++s) {
      loader.fill_at(static_cast<uint64_t>(s * B), B, in.data(), tgt.data());
      for (int64_t b = 0; b < B; ++b) {
        for (int64_t t = 0; t < T; ++t) row[static_cast<size_t>(t)] = static_cast<int32_t>(in[static_cast<size_t>(b * T + t)]);
        row[static_cast<size_t>(T)] = static_cast<int32_t>(tgt[static_cast<size_t>(b * T + T - 1)]);
        out.write(reinterpret_cast<const char*>(row.data()), static_cast<std::streamsize>(row.size() * 4));
      }
    }
    if (!out) throw std::runtime_error(std::string("could not write ") + argv[6]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dump_batches: %s\n", e.what());
    return 1;
  }
  return 0;
}
