// core/cpu/register.cpp — fills the CPU column of the kernel registry.
#include "core/cpu/kernels.h"

namespace modu {

void register_cpu_kernels(KernelRegistry& r) {
  cpu::register_elementwise_kernels(r);
  cpu::register_reduce_kernels(r);
  cpu::register_matmul_kernels(r);
  cpu::register_nn_kernels(r);
  cpu::register_index_kernels(r);
  cpu::register_attention_kernels(r);
  cpu::register_image_kernels(r);
  cpu::register_optim_kernels(r);
}

}  // namespace modu
