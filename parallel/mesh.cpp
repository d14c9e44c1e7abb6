// parallel/mesh.cpp — the rank layout (see mesh.h).
#include "parallel/mesh.h"

#include <iomanip>
#include <sstream>

namespace modu::parallel {

Mesh Mesh::make(int world, int tp, int pp) {
  MODU_CHECK(world >= 1, "the job has ", world, " ranks; it needs at least 1");
  MODU_CHECK(tp >= 1, "parallel.tp = ", tp, ": it must be at least 1");
  MODU_CHECK(pp >= 1, "parallel.pp = ", pp, ": it must be at least 1");
  MODU_CHECK(world % (tp * pp) == 0, "the job has ", world, " ranks, which parallel.tp x parallel.pp = ", tp, " x ", pp,
             " = ", tp * pp, " does not divide; start a multiple of ", tp * pp,
             " ranks (mpirun -np), or change parallel.tp / parallel.pp so that "
             "their product divides ",
             world);
  return Mesh(tp, world / (tp * pp), pp);
}

MeshCoord Mesh::coord(int rank) const {
  MODU_CHECK(rank >= 0 && rank < world(), "rank ", rank, " is outside the mesh of ", world(), " ranks");
  return MeshCoord{rank % tp_, (rank / tp_) % dp_, rank / (tp_ * dp_)};
}

int Mesh::rank_of(MeshCoord c) const {
  MODU_CHECK(c.tp >= 0 && c.tp < tp_ && c.dp >= 0 && c.dp < dp_ && c.pp >= 0 && c.pp < pp_, "mesh coordinate (tp ",
             c.tp, ", dp ", c.dp, ", pp ", c.pp, ") is outside ", describe());
  return c.tp + tp_ * (c.dp + dp_ * c.pp);
}

std::vector<int> Mesh::tp_group(int rank) const {
  MeshCoord c = coord(rank);
  std::vector<int> g;
  for (c.tp = 0; c.tp < tp_; ++c.tp) g.push_back(rank_of(c));
  return g;
}

std::vector<int> Mesh::dp_group(int rank) const {
  MeshCoord c = coord(rank);
  std::vector<int> g;
  for (c.dp = 0; c.dp < dp_; ++c.dp) g.push_back(rank_of(c));
  return g;
}

std::vector<int> Mesh::pp_group(int rank) const {
  MeshCoord c = coord(rank);
  std::vector<int> g;
  for (c.pp = 0; c.pp < pp_; ++c.pp) g.push_back(rank_of(c));
  return g;
}

void Mesh::check_model(const ModelDims& m) const {
  MODU_CHECK(m.n_head % tp_ == 0, "parallel.tp = ", tp_, " does not divide model.n_head = ", m.n_head,
             ": tensor parallelism gives each rank whole attention heads; "
             "choose parallel.tp dividing ",
             m.n_head);
  MODU_CHECK(m.n_kv_head % tp_ == 0, "parallel.tp = ", tp_, " does not divide the ", m.n_kv_head,
             " key/value heads (model.n_kv_head); choose parallel.tp dividing ", m.n_kv_head);
  MODU_CHECK(m.padded_vocab % tp_ == 0, "parallel.tp = ", tp_, " does not divide the padded vocabulary of ",
             m.padded_vocab, " rows; set model.pad_vocab_to to a multiple of 128 x ", tp_);
  MODU_CHECK(pp_ <= m.n_layer, "parallel.pp = ", pp_, " pipeline stages for ", m.n_layer,
             " layers (model.n_layer): each stage needs at least one layer; "
             "lower parallel.pp");
}

void Mesh::check_batch(int64_t global_batch, int64_t micro_batch) const {
  MODU_CHECK(micro_batch >= 1, "train.micro_batch_size = ", micro_batch, ": it must be at least 1");
  MODU_CHECK(global_batch % (static_cast<int64_t>(dp_) * micro_batch) == 0, "train.batch_size = ", global_batch,
             " (the global batch) is not a multiple of DP x train.micro_batch_size = ", dp_, " x ", micro_batch, " = ",
             dp_ * micro_batch, ": each of the ", dp_,
             " data-parallel ranks takes an equal share in whole micro-batches; "
             "change train.batch_size, "
             "train.micro_batch_size (at most ",
             global_batch / dp_, " here) or the number of ranks");
}

std::string Mesh::describe() const {
  std::ostringstream os;
  os << "TP" << tp_ << " x DP" << dp_ << " x PP" << pp_ << " = " << world() << " rank" << (world() == 1 ? "" : "s");
  return os.str();
}

std::string Mesh::draw() const {
  std::ostringstream os;
  os << std::setw(12) << "";
  for (int t = 0; t < tp_; ++t) os << std::setw(5) << ("tp=" + std::to_string(t));
  os << "\n";
  for (int p = 0; p < pp_; ++p)
    for (int d = 0; d < dp_; ++d) {
      os << std::left << std::setw(6) << (d == 0 ? "pp=" + std::to_string(p) : std::string()) << std::setw(6)
         << ("dp=" + std::to_string(d)) << std::right;
      for (int t = 0; t < tp_; ++t) os << std::setw(5) << rank_of({t, d, p});
      os << "\n";
    }
  return os.str();
}

MeshGroups make_groups(Communicator& world, const Mesh& mesh) {
  MODU_CHECK(world.size() == mesh.world(), "make_groups: the communicator has ", world.size(), " ranks but the mesh ",
             mesh.describe());
  MeshCoord c = mesh.coord(world.rank());
  MeshGroups g;
  // Colors number the groups along each axis; keys order the ranks inside a group by their coordinate.
  g.tp = world.split(c.dp + mesh.dp() * c.pp, c.tp);
  g.dp = world.split(c.tp + mesh.tp() * c.pp, c.dp);
  g.pp = world.split(c.tp + mesh.tp() * c.dp, c.pp);
  return g;
}

}  // namespace modu::parallel
