// parallel/nccl_stub.cpp — builds without the CUDA backend: no NCCL communicator.
#include "parallel/comm.h"

namespace modu::parallel {

bool has_nccl() { return false; }

std::unique_ptr<Communicator> make_nccl_communicator(Communicator&, Device device) {
  MODU_FAIL("the NCCL communicator (for ", device.str(),
            ") needs a build with the CUDA backend: configure with "
            "-DMODU_CUDA=ON on a machine with the "
            "CUDA toolkit (which ships NCCL), or train on the CPU "
            "(train.device = cpu) over MPI");
}

}  // namespace modu::parallel
