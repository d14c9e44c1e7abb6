// parallel/mesh.h — the DP x TP x PP layout of the ranks, and the sub-communicators of its groups.
//
// world = TP x DP x PP. Mesh order, fastest-varying first: TP, then DP, then PP (TP neighbours are
// adjacent ranks, so they share a node):
//     rank = tp + TP * (dp + DP * pp)
//
// Example: 16 ranks = TP2 x DP4 x PP2.
//
//                    tp=0  tp=1
//     pp=0  dp=0  [   0     1  ]   <- one TP group: ranks that split each layer's matrices
//           dp=1  [   2     3  ]
//           dp=2  [   4     5  ]
//           dp=3  [   6     7  ]
//     pp=1  dp=0  [   8     9  ]   <- pipeline stage 1 holds the second half of the layers
//           dp=1  [  10    11  ]
//           dp=2  [  12    13  ]
//           dp=3  [  14    15  ]
//
//   TP groups (same dp, pp):  {0,1} {2,3} {4,5} {6,7} {8,9} {10,11} {12,13} {14,15}
//   DP groups (same tp, pp):  {0,2,4,6} {1,3,5,7} {8,10,12,14} {9,11,13,15}
//   PP groups (same tp, dp):  {0,8} {1,9} {2,10} {3,11} {4,12} {5,13} {6,14} {7,15}
//
// Invariants:
//  - A Mesh is only ever constructed valid: world divisible by TP x PP, every size >= 1 (Mesh::make
//    throws otherwise, saying which recipe key or mpirun -np to change).
//  - Within each group, a rank's index is its coordinate along that axis (its rank in the group's
//    communicator), so group rank 0 of a DP group is dp = 0.
//  - check_model / check_batch refuse layouts the model or the batch cannot be split into, before any
//    work starts.

#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "parallel/comm.h"

namespace modu::parallel {

struct MeshCoord {
  int tp = 0, dp = 0, pp = 0;
  bool operator==(const MeshCoord&) const = default;
};

// What the layout must divide (from the model config).
struct ModelDims {
  int64_t n_head = 1;
  int64_t n_kv_head = 1;
  int64_t n_layer = 1;
  int64_t padded_vocab = 1;  // embedding rows after padding
};

class Mesh {
 public:
  // world ranks laid out as TP x DP x PP with DP = world / (tp * pp).
  static Mesh make(int world, int tp, int pp);

  int world() const { return tp_ * dp_ * pp_; }
  int tp() const { return tp_; }
  int dp() const { return dp_; }
  int pp() const { return pp_; }

  MeshCoord coord(int rank) const;
  int rank_of(MeshCoord c) const;

  // The world ranks of `rank`'s group along each axis, in group-rank order.
  std::vector<int> tp_group(int rank) const;
  std::vector<int> dp_group(int rank) const;
  std::vector<int> pp_group(int rank) const;

  // Refuses a layout the model cannot be split into (TP must divide heads, key/value heads and the padded
  // vocabulary; PP at most the layer count).
  void check_model(const ModelDims& m) const;
  // Refuses a global batch that DP ranks cannot share evenly: batch = DP x micro x accumulation.
  void check_batch(int64_t global_batch, int64_t micro_batch) const;

  // "TP2 x DP4 x PP2 = 16 ranks" and the table of the file comment, for logs.
  std::string describe() const;
  std::string draw() const;

 private:
  Mesh(int tp, int dp, int pp) : tp_(tp), dp_(dp), pp_(pp) {}
  int tp_ = 1, dp_ = 1, pp_ = 1;
};

// This rank's communicators along each axis (split from `world`, collective over it).
struct MeshGroups {
  std::unique_ptr<Communicator> tp, dp, pp;
};
MeshGroups make_groups(Communicator& world, const Mesh& mesh);

}  // namespace modu::parallel
