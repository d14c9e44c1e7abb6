// tests/core/op_cases.h — one case (or more) per op of the table (ARCHITECTURE §3).
//
// A case builds small inputs (odd sizes, non-contiguous views where the op reads strides), runs a
// function of them that exercises its op(s), and says which inputs are differentiated. The same
// cases drive op_coverage (every op's kernel dispatched, forward and backward), gradcheck (f64,
// central differences) and backend_parity (CUDA against CPU, tests/gpu/).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "autograd/gradcheck.h"
#include "core/ops/op_attrs.h"
#include "core/rng.h"
#include "core/tensor.h"

namespace modu::test {

struct OpCase {
  std::string name;
  std::vector<OpId> covers;  // the ops this case exists for
  // Inputs in `dtype` (floating inputs; index and mask inputs keep their own dtype), on the CPU.
  std::function<std::vector<Tensor>(DType dtype, Generator& gen)> make_inputs;
  std::function<Tensor(const std::vector<Tensor>&)> run;
  std::vector<int> grad_inputs;  // positions of inputs whose gradient is checked (empty: none)
  // Relative tolerances (max |a - b| / max |b|) for comparisons of the same function computed two ways.
  double tol_f32 = 1e-5;
  double tol_bf16 = 3e-2;
  autograd::GradcheckOptions gradcheck;
  DTypeSet dtypes = kFloatTypes;  // floating dtypes the case supports
  std::string note;               // why a case skips something
};

const std::vector<OpCase>& op_cases();

// Helpers for building inputs.
// Uniform in [lo, hi) of `shape`; when `transposed`, the last two dims are stored swapped (a
// non-contiguous view of the same logical shape).
Tensor rand_tensor(const Dims& shape, DType dtype, Generator& gen, double lo = -1, double hi = 1,
                   bool transposed = false);
// Like rand_tensor but every |value| >= margin (keeps inputs away from kinks such as relu's 0).
Tensor rand_away_from_zero(const Dims& shape, DType dtype, Generator& gen, double margin = 0.1,
                           bool transposed = false);
Tensor rand_indices(const Dims& shape, int64_t limit, Generator& gen, DType dtype = DType::I64);

// Max |a - b| / max(max |b|, floor), after converting both to f64 on the CPU.
double relative_error(const Tensor& a, const Tensor& b, double floor = 1e-6);

}  // namespace modu::test
