// tests/core/test_fixtures.cpp — modu's ops against PyTorch's values (ARCHITECTURE §10).
//
// tests/fixtures/ops.json is written by tests/fixtures/gen_op_fixtures.py with a pinned torch; this test
// needs no torch. For each fixture it builds the inputs (dtype as given; an input with "perm" becomes a
// non-contiguous view holding the same values), runs the modu op named by the fixture (front ends where
// they expose every output, modu::call_op for derivative ops and multi-output ops), compares every
// output, and for fixtures with "grads" back-propagates sum(out0 * proj) through modu's autograd and
// compares each gradient.
//
// Invariants:
//  - One GTest test per fixture (TorchFixture/Matches/<name>), so a failure names the op and the case.
//  - Tolerances are per dtype (kTolerances below, each with its reason), never per fixture; selection and
//    data-movement ops and casts must match exactly.
//  - TorchFixtures.EveryOpCoveredOrSkipped fails when an op of op_table.def has neither a fixture nor an
//    entry with a reason in the JSON's "skipped" list, so a new op without a torch fixture fails here.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <iostream>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "autograd/autograd.h"
#include "core/ops/ops.h"

namespace modu {
namespace {

using json = nlohmann::json;

// ---- the fixture file ----------------------------------------------------------------------------------

struct FixtureFile {
  json doc;
  std::string error;  // non-empty when the file could not be read
  std::map<std::string, const json*> by_name;
  std::vector<std::string> names;
};

const FixtureFile& fixture_file() {
  static const FixtureFile* file = [] {
    auto* f = new FixtureFile;
    const std::string path = std::string(MODU_SOURCE_DIR) + "/tests/fixtures/ops.json";
    std::ifstream in(path);
    if (!in) {
      f->error = "cannot open " + path + " (regenerate it with tests/fixtures/gen_op_fixtures.py)";
      return f;
    }
    try {
      f->doc = json::parse(in);
      for (const json& fx : f->doc.at("fixtures")) {
        const std::string name = fx.at("name").get<std::string>();
        if (f->by_name.count(name)) f->error = "duplicate fixture name " + name;
        f->by_name[name] = &fx;
        f->names.push_back(name);
      }
    } catch (const std::exception& e) {
      f->error = path + ": " + e.what();
      f->names.clear();
    }
    return f;
  }();
  return *file;
}

std::vector<std::string> fixture_names() { return fixture_file().names; }

// ---- JSON -> values and tensors ------------------------------------------------------------------------

double number(const json& v) {
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    if (s == "nan") return NAN;
    if (s == "inf") return INFINITY;
    if (s == "-inf") return -INFINITY;
    MODU_FAIL("fixture: unknown number text '", s, "'");
  }
  return v.get<double>();
}

DType dtype_named(const json& v) {
  DType dt;
  MODU_CHECK(parse_dtype(v.get<std::string>(), &dt), "fixture: unknown dtype ", v.dump());
  return dt;
}

Dims dims_of(const json& v) {
  Dims d;
  for (const json& x : v) d.push_back(x.get<int64_t>());
  return d;
}

// v rounded to dtype (the fixture's values are already representable; this only canonicalises).
double as_dtype(double v, DType dt) {
  switch (dt) {
    case DType::F32: return static_cast<float>(v);
    case DType::BF16: return bf16_bits_to_float(float_to_bf16_bits(static_cast<float>(v)));
    case DType::F16: return f16_bits_to_float(float_to_f16_bits(static_cast<float>(v)));
    default: return v;
  }
}

template <class T, class F>
Tensor from_json(const json& data, const Dims& shape, DType dt, F convert) {
  std::vector<T> v;
  v.reserve(data.size());
  for (const json& x : data) v.push_back(convert(x));
  return Tensor::from_blob_copy(v.data(), shape, dt);
}

// A contiguous tensor holding exactly the fixture's values; no modu op is involved in building it.
Tensor make_tensor(const json& spec) {
  const Dims shape = dims_of(spec.at("shape"));
  const DType dt = dtype_named(spec.at("dtype"));
  const json& data = spec.at("data");
  MODU_CHECK(static_cast<int64_t>(data.size()) == shape.numel(), "fixture: ", data.size(), " values for shape ",
             shape.str());
  // The generator writes the shortest text that rounds back to the value in its dtype.
  auto round_to = [dt](double v) { return as_dtype(v, dt); };
  switch (dt) {
    case DType::F64: return from_json<double>(data, shape, dt, [](const json& x) { return number(x); });
    case DType::F32:
      return from_json<float>(data, shape, dt, [&](const json& x) { return static_cast<float>(round_to(number(x))); });
    case DType::BF16:
      return from_json<uint16_t>(data, shape, dt, [&](const json& x) {
        return float_to_bf16_bits(static_cast<float>(round_to(number(x))));
      });
    case DType::F16:
      return from_json<uint16_t>(data, shape, dt, [&](const json& x) {
        return float_to_f16_bits(static_cast<float>(round_to(number(x))));
      });
    case DType::I32: return from_json<int32_t>(data, shape, dt, [](const json& x) { return x.get<int32_t>(); });
    case DType::I64: return from_json<int64_t>(data, shape, dt, [](const json& x) { return x.get<int64_t>(); });
    case DType::U8: return from_json<uint8_t>(data, shape, dt, [](const json& x) { return x.get<uint8_t>(); });
    case DType::Bool:
      return from_json<uint8_t>(data, shape, dt, [](const json& x) { return uint8_t(x.get<int>() != 0); });
  }
  MODU_FAIL("fixture: unhandled dtype");
}

// An input: the fixture's values, laid out as contiguous(x.permute(P^-1)).permute(P) when "perm" is P (a
// non-contiguous view with the same logical values), then marked requires_grad when asked (a leaf).
Tensor make_input(const json& spec) {
  Tensor t = make_tensor(spec);
  if (spec.contains("perm")) {
    NoGradGuard no_grad;
    const Dims p = dims_of(spec.at("perm"));
    Dims inv = Dims::filled(p.size(), 0);
    for (int i = 0; i < p.size(); ++i) inv[static_cast<int>(p[i])] = i;
    t = t.permute(inv).contiguous().permute(p);
  }
  if (spec.value("requires_grad", false)) t.set_requires_grad(true);
  return t;
}

// ---- attributes ----------------------------------------------------------------------------------------

struct Attrs {
  const json& j;
  double d(const char* k) const { return number(j.at(k)); }
  int64_t i(const char* k) const { return j.at(k).get<int64_t>(); }
  bool b(const char* k) const { return j.at(k).get<bool>(); }
  bool has(const char* k) const { return j.contains(k); }
  Dims dims(const char* k) const { return dims_of(j.at(k)); }
  std::vector<int64_t> list(const char* k) const { return j.at(k).get<std::vector<int64_t>>(); }
  DType dtype(const char* k) const { return dtype_named(j.at(k)); }
};

// ---- op name -> modu call ------------------------------------------------------------------------------

using Inputs = std::vector<Tensor>;
using Outputs = std::vector<Tensor>;
using Runner = std::function<Outputs(const Inputs&, const Attrs&)>;

template <size_t N>
Outputs to_vec(const std::array<Tensor, N>& a) {
  return Outputs(a.begin(), a.end());
}

Tensor var_front_end(const Tensor& x, const std::vector<int64_t>& d, int64_t correction, bool keepdim) {
  switch (d.size()) {  // the front end takes an initializer_list
    case 0: return var(x, {}, correction, keepdim);
    case 1: return var(x, {d[0]}, correction, keepdim);
    case 2: return var(x, {d[0], d[1]}, correction, keepdim);
    case 3: return var(x, {d[0], d[1], d[2]}, correction, keepdim);
  }
  MODU_FAIL("var fixture: more than 3 dims");
}

NormAttrs norm_attrs(const Attrs& a) {
  NormAttrs n;
  n.eps = a.d("eps");
  n.groups = a.has("groups") ? a.i("groups") : 1;
  if (a.has("y_dtype")) {
    n.y_dtype_set = true;
    n.y_dtype = a.dtype("y_dtype");
  }
  if (a.has("r_dtype")) n.r_dtype = a.dtype("r_dtype");
  return n;
}
CrossEntropyAttrs ce_attrs(const Attrs& a) {
  CrossEntropyAttrs c;
  c.ignore_index = a.i("ignore_index");
  c.mean = a.b("mean");
  return c;
}
AttentionAttrs attention_attrs(const Attrs& a) {
  AttentionAttrs at;
  at.scale = a.d("scale");
  at.causal = a.b("causal");
  if (a.has("n_head")) at.n_head = static_cast<int32_t>(a.i("n_head"));
  return at;
}
ConvAttrs conv_attrs(const Attrs& a) {
  ConvAttrs c;
  c.stride_h = static_cast<int32_t>(a.i("stride_h"));
  c.stride_w = static_cast<int32_t>(a.i("stride_w"));
  c.pad_h = static_cast<int32_t>(a.i("pad_h"));
  c.pad_w = static_cast<int32_t>(a.i("pad_w"));
  return c;
}
UpsampleAttrs upsample_attrs(const Attrs& a) {
  UpsampleAttrs u;
  u.scale_h = static_cast<int32_t>(a.i("scale_h"));
  u.scale_w = static_cast<int32_t>(a.i("scale_w"));
  return u;
}
PoolAttrs pool_attrs(const Attrs& a) {
  PoolAttrs p;
  p.kernel_h = static_cast<int32_t>(a.i("kernel_h"));
  p.kernel_w = static_cast<int32_t>(a.i("kernel_w"));
  p.stride_h = static_cast<int32_t>(a.i("stride_h"));
  p.stride_w = static_cast<int32_t>(a.i("stride_w"));
  if (a.has("in_h")) p.in_h = a.i("in_h"), p.in_w = a.i("in_w");
  return p;
}

const std::map<std::string, Runner>& runners() {
  static const std::map<std::string, Runner>* table = [] {
    auto* r = new std::map<std::string, Runner>;
    using Unary = Tensor (*)(const Tensor&);
    using Binary = Tensor (*)(const Tensor&, const Tensor&);
    const std::pair<const char*, Unary> unary[] = {
        {"neg", &modu::neg},         {"exp", &modu::exp},         {"log", &modu::log},
        {"sqrt", &modu::sqrt},       {"rsqrt", &modu::rsqrt},     {"abs", &modu::abs},
        {"sign", &modu::sign},       {"sin", &modu::sin},         {"cos", &modu::cos},
        {"tanh", &modu::tanh},       {"sigmoid", &modu::sigmoid}, {"log_sigmoid", &modu::log_sigmoid},
        {"relu", &modu::relu},       {"silu", &modu::silu},       {"gelu_tanh", &modu::gelu_tanh},
        {"gelu_erf", &modu::gelu_erf}, {"copy", &modu::copy},
    };
    for (const auto& [name, f] : unary) (*r)[name] = [f](const Inputs& x, const Attrs&) { return Outputs{f(x[0])}; };
    const std::pair<const char*, Binary> binary[] = {
        {"add", &modu::add},
        {"sub", &modu::sub},
        {"mul", &modu::mul},
        {"div", &modu::div},
        {"pow", &modu::pow},
        {"maximum", &modu::maximum},
        {"minimum", &modu::minimum},
        {"sigmoid_backward", &modu::sigmoid_backward},
        {"tanh_backward", &modu::tanh_backward},
        {"relu_backward", &modu::relu_backward},
        {"silu_backward", &modu::silu_backward},
        {"gelu_tanh_backward", &modu::gelu_tanh_backward},
        {"gelu_erf_backward", &modu::gelu_erf_backward},
        {"log_sigmoid_backward", &modu::log_sigmoid_backward},
        {"eq", &modu::eq},
        {"ne", &modu::ne},
        {"lt", &modu::lt},
        {"le", &modu::le},
        {"gt", &modu::gt},
        {"ge", &modu::ge},
        {"matmul", &modu::matmul},
        {"embedding", &modu::embedding},
    };
    for (const auto& [name, f] : binary)
      (*r)[name] = [f](const Inputs& x, const Attrs&) { return Outputs{f(x[0], x[1])}; };

    auto& R = *r;
    R["matmul"] = [](const Inputs& x, const Attrs& a) {
      const bool acc = a.has("accumulate_out") && a.b("accumulate_out");
      return Outputs{acc ? matmul_accumulate(x[0], x[1]) : matmul(x[0], x[1])};
    };
    R["add_scalar"] = [](const Inputs& x, const Attrs& a) { return Outputs{add_scalar(x[0], a.d("value"))}; };
    R["mul_scalar"] = [](const Inputs& x, const Attrs& a) { return Outputs{mul_scalar(x[0], a.d("value"))}; };
    R["pow_scalar"] = [](const Inputs& x, const Attrs& a) { return Outputs{pow_scalar(x[0], a.d("value"))}; };
    R["clamp"] = [](const Inputs& x, const Attrs& a) { return Outputs{clamp(x[0], a.d("lo"), a.d("hi"))}; };
    R["where"] = [](const Inputs& x, const Attrs&) { return Outputs{where(x[0], x[1], x[2])}; };
    R["masked_fill"] = [](const Inputs& x, const Attrs& a) { return Outputs{masked_fill(x[0], x[1], a.d("value"))}; };

    R["sum"] = [](const Inputs& x, const Attrs& a) {
      if (a.has("accumulate_out") && a.b("accumulate_out")) {  // one dim, as the fixture has it
        std::vector<int64_t> dims = a.list("dims");
        MODU_CHECK(dims.size() == 1, "sum fixture with accumulate_out: one dim");
        return Outputs{sum_accumulate(x[0], {dims[0]}, a.b("keepdim"))};
      }
      return Outputs{sum(x[0], a.list("dims"), a.b("keepdim"))};
    };
    R["mean"] = [](const Inputs& x, const Attrs& a) { return Outputs{mean(x[0], a.list("dims"), a.b("keepdim"))}; };
    R["var"] = [](const Inputs& x, const Attrs& a) {
      return Outputs{var_front_end(x[0], a.list("dims"), a.i("correction"), a.b("keepdim"))};
    };
    R["max"] = [](const Inputs& x, const Attrs& a) {
      auto [v, i] = max(x[0], a.i("dim"), a.b("keepdim"));
      return Outputs{v, i};
    };
    R["argmax"] = [](const Inputs& x, const Attrs& a) { return Outputs{argmax(x[0], a.i("dim"), a.b("keepdim"))}; };
    R["linear"] = [](const Inputs& x, const Attrs&) { return Outputs{linear(x[0], x[1], x[2])}; };

    R["softmax"] = [](const Inputs& x, const Attrs& a) { return Outputs{softmax(x[0], a.i("dim"))}; };
    R["log_softmax"] = [](const Inputs& x, const Attrs& a) { return Outputs{log_softmax(x[0], a.i("dim"))}; };
    R["softmax_backward"] = [](const Inputs& x, const Attrs& a) {
      return Outputs{softmax_backward(x[0], x[1], a.i("dim"))};
    };
    R["log_softmax_backward"] = [](const Inputs& x, const Attrs& a) {
      return Outputs{log_softmax_backward(x[0], x[1], a.i("dim"))};
    };
    // (loss, lse): the front end returns only the loss
    R["cross_entropy"] = [](const Inputs& x, const Attrs& a) {
      return to_vec(call_op<2>(OpId::cross_entropy, ce_attrs(a), {&x[0], &x[1]}));
    };
    R["cross_entropy_backward"] = [](const Inputs& x, const Attrs& a) {
      return to_vec(call_op<1>(OpId::cross_entropy_backward, ce_attrs(a), {&x[0], &x[1], &x[2], &x[3]}));
    };

    // norms: (y, mean, rstd) / (y, rstd); the front ends return only y
    R["layer_norm"] = [](const Inputs& x, const Attrs& a) {
      return to_vec(call_op<3>(OpId::layer_norm, norm_attrs(a), {&x[0], &x[1], &x[2]}));
    };
    R["add_layer_norm"] = [](const Inputs& x, const Attrs& a) {
      return to_vec(call_op<4>(OpId::add_layer_norm, norm_attrs(a), {&x[0], &x[1], &x[2], &x[3]}));
    };
    R["add_layer_norm_backward"] = [](const Inputs& x, const Attrs& a) {
      return to_vec(
          call_op<4>(OpId::add_layer_norm_backward, norm_attrs(a), {&x[0], &x[1], &x[2], &x[3], &x[4], &x[5]}));
    };
    R["rms_norm"] = [](const Inputs& x, const Attrs& a) {
      return to_vec(call_op<2>(OpId::rms_norm, norm_attrs(a), {&x[0], &x[1]}));
    };
    R["group_norm"] = [](const Inputs& x, const Attrs& a) {
      return to_vec(call_op<3>(OpId::group_norm, norm_attrs(a), {&x[0], &x[1], &x[2]}));
    };
    R["layer_norm_backward"] = [](const Inputs& x, const Attrs& a) {
      return to_vec(call_op<3>(OpId::layer_norm_backward, norm_attrs(a), {&x[0], &x[1], &x[2], &x[3], &x[4]}));
    };
    R["rms_norm_backward"] = [](const Inputs& x, const Attrs& a) {
      return to_vec(call_op<2>(OpId::rms_norm_backward, norm_attrs(a), {&x[0], &x[1], &x[2], &x[3]}));
    };
    R["group_norm_backward"] = [](const Inputs& x, const Attrs& a) {
      return to_vec(call_op<3>(OpId::group_norm_backward, norm_attrs(a), {&x[0], &x[1], &x[2], &x[3], &x[4]}));
    };

    R["embedding_backward"] = [](const Inputs& x, const Attrs& a) {
      return Outputs{embedding_backward(x[0], x[1], a.i("rows"))};
    };
    R["index_select"] = [](const Inputs& x, const Attrs& a) { return Outputs{index_select(x[0], a.i("dim"), x[1])}; };
    R["index_add"] = [](const Inputs& x, const Attrs& a) { return Outputs{index_add(x[0], a.i("dim"), x[1], x[2])}; };
    R["gather"] = [](const Inputs& x, const Attrs& a) { return Outputs{gather(x[0], a.i("dim"), x[1])}; };
    R["scatter_add"] = [](const Inputs& x, const Attrs& a) {
      return Outputs{scatter_add(x[0], a.i("dim"), x[1], x[2])};
    };
    R["concat"] = [](const Inputs& x, const Attrs& a) { return Outputs{concat(x, a.i("dim"))}; };
    R["sum_squares"] = [](const Inputs& x, const Attrs&) {
      return Outputs{sum_squares(std::span<const Tensor>(x.data(), x.size()))};
    };

    // p = 0 through the kernel itself (the front end returns x unchanged for p = 0); p > 0 through the front end
    R["dropout"] = [](const Inputs& x, const Attrs& a) {
      Generator gen(1234, stream_id("torch-fixtures"));
      double p = a.d("p");
      if (p > 0) return Outputs{dropout(x[0], p, gen)};
      DropoutAttrs d;
      d.p = 0;
      d.key = gen.key();
      d.counter = gen.advance(static_cast<uint64_t>((x[0].numel() + 3) / 4));
      return to_vec(call_op<1>(OpId::dropout, d, {&x[0]}));
    };

    // (o, lse) with an explicit scale; without one, the front end's default scale (o only)
    R["attention"] = [](const Inputs& x, const Attrs& a) {
      if (!a.has("scale")) return Outputs{attention(x[0], x[1], x[2], a.b("causal"))};
      return to_vec(call_op<2>(OpId::attention, attention_attrs(a), {&x[0], &x[1], &x[2]}));
    };
    R["attention_backward"] = [](const Inputs& x, const Attrs& a) {
      return to_vec(
          call_op<3>(OpId::attention_backward, attention_attrs(a), {&x[0], &x[1], &x[2], &x[3], &x[4], &x[5]}));
    };
    R["attention_packed"] = [](const Inputs& x, const Attrs& a) {
      return to_vec(call_op<2>(OpId::attention_packed, attention_attrs(a), {&x[0]}));
    };
    R["attention_packed_backward"] = [](const Inputs& x, const Attrs& a) {
      return to_vec(call_op<1>(OpId::attention_packed_backward, attention_attrs(a), {&x[0], &x[1], &x[2], &x[3]}));
    };
    R["rotary"] = [](const Inputs& x, const Attrs& a) { return Outputs{rotary(x[0], x[1], x[2], a.b("inverse"))}; };

    R["conv2d"] = [](const Inputs& x, const Attrs& a) {
      ConvAttrs c = conv_attrs(a);
      if (c.stride_h == c.stride_w && c.pad_h == c.pad_w) return Outputs{conv2d(x[0], x[1], x[2], c.stride_h, c.pad_h)};
      return to_vec(call_op<1>(OpId::conv2d, c, {&x[0], &x[1], &x[2]}));
    };
    R["conv2d_backward"] = [](const Inputs& x, const Attrs& a) {
      return to_vec(call_op<3>(OpId::conv2d_backward, conv_attrs(a), {&x[0], &x[1], &x[2]}));
    };
    R["upsample_nearest2d"] = [](const Inputs& x, const Attrs& a) {
      UpsampleAttrs u = upsample_attrs(a);
      if (u.scale_h == u.scale_w) return Outputs{upsample_nearest2d(x[0], u.scale_h)};
      return to_vec(call_op<1>(OpId::upsample_nearest2d, u, {&x[0]}));
    };
    R["upsample_nearest2d_backward"] = [](const Inputs& x, const Attrs& a) {
      return to_vec(call_op<1>(OpId::upsample_nearest2d_backward, upsample_attrs(a), {&x[0]}));
    };
    R["avg_pool2d"] = [](const Inputs& x, const Attrs& a) {
      PoolAttrs p = pool_attrs(a);
      if (p.kernel_h == p.kernel_w && p.stride_h == p.stride_w) return Outputs{avg_pool2d(x[0], p.kernel_h, p.stride_h)};
      return to_vec(call_op<1>(OpId::avg_pool2d, p, {&x[0]}));
    };
    R["avg_pool2d_backward"] = [](const Inputs& x, const Attrs& a) {
      return to_vec(call_op<1>(OpId::avg_pool2d_backward, pool_attrs(a), {&x[0]}));
    };

    R["cast"] = [](const Inputs& x, const Attrs& a) { return Outputs{cast(x[0], a.dtype("dtype"))}; };
    R["to_device"] = [](const Inputs& x, const Attrs&) { return Outputs{to_device(x[0], Device::cpu())}; };

    R["view"] = [](const Inputs& x, const Attrs& a) { return Outputs{x[0].view(a.dims("shape"))}; };
    R["permute"] = [](const Inputs& x, const Attrs& a) { return Outputs{x[0].permute(a.dims("dims"))}; };
    R["expand"] = [](const Inputs& x, const Attrs& a) { return Outputs{x[0].expand(a.dims("shape"))}; };
    R["slice"] = [](const Inputs& x, const Attrs& a) {
      return Outputs{x[0].slice(a.i("dim"), a.i("start"), a.i("end"), a.i("step"))};
    };
    R["split"] = [](const Inputs& x, const Attrs& a) { return x[0].split_sizes(a.list("sizes"), a.i("dim")); };

    // in place: on a clone of input 0 (the fixture's inputs stay intact)
    R["copy_"] = [](const Inputs& x, const Attrs&) {
      Tensor d = x[0].clone();
      d.copy_(x[1]);
      return Outputs{d};
    };
    R["fill_"] = [](const Inputs& x, const Attrs& a) {
      Tensor d = x[0].clone();
      d.fill_(a.d("value"));
      return Outputs{d};
    };
    R["add_"] = [](const Inputs& x, const Attrs& a) {
      Tensor d = x[0].clone();
      d.add_(x[1], a.d("alpha"));
      return Outputs{d};
    };
    R["mul_scalar_"] = [](const Inputs& x, const Attrs& a) {
      Tensor d = x[0].clone();
      d.mul_(a.d("value"));
      return Outputs{d};
    };
    // inputs (param, exp_avg, exp_avg_sq, grad_1, ..., grad_steps) -> (param, exp_avg, exp_avg_sq)
    // torch.optim.AdamW's hyperparameters, and the bias corrections of update number t (1-based).
    auto adamw_hyper = [](const Attrs& a) {
      AdamWAttrs w;
      w.lr = a.d("lr");
      w.beta1 = a.d("beta1");
      w.beta2 = a.d("beta2");
      w.eps = a.d("eps");
      w.weight_decay = a.d("weight_decay");
      return w;
    };
    auto at_step = [](AdamWAttrs& w, double t) {
      w.bias_correction1 = 1 - std::pow(w.beta1, t);
      w.bias_correction2 = 1 - std::pow(w.beta2, t);
    };
    R["adamw_"] = [adamw_hyper, at_step](const Inputs& x, const Attrs& a) {
      Tensor p = x[0].clone(), m = x[1].clone(), v = x[2].clone();
      AdamWAttrs w = adamw_hyper(a);
      const int64_t step0 = a.i("step0"), steps = a.i("steps");
      MODU_CHECK(static_cast<int64_t>(x.size()) == 3 + steps, "adamw_ fixture: ", x.size(), " inputs for ", steps,
                 " steps");
      for (int64_t s = 0; s < steps; ++s) {
        at_step(w, static_cast<double>(step0 + s + 1));
        adamw_(p, x[static_cast<size_t>(3 + s)], m, v, w);
      }
      return Outputs{p, m, v};
    };

    // inputs (p_0..p_N-1, then per step g_0..g_N-1) -> (p.., exp_avg.., exp_avg_sq..), zero initial state
    R["adamw_multi_"] = [adamw_hyper, at_step](const Inputs& x, const Attrs& a) {
      const int64_t n = a.i("tensors"), steps = a.i("steps");
      MODU_CHECK(static_cast<int64_t>(x.size()) == n * (1 + steps), "adamw_multi_ fixture: ", x.size(), " inputs for ",
                 n, " tensors and ", steps, " steps");
      std::vector<Tensor> p, m, v;
      for (int64_t i = 0; i < n; ++i) {
        p.push_back(x[static_cast<size_t>(i)].clone());
        m.push_back(Tensor::zeros(p.back().shape(), p.back().dtype()));
        v.push_back(Tensor::zeros(p.back().shape(), p.back().dtype()));
      }
      AdamWAttrs w = adamw_hyper(a);
      w.decayed = a.i("decayed");
      for (int64_t s = 0; s < steps; ++s) {
        at_step(w, static_cast<double>(s + 1));
        std::span<const Tensor> grads(x.data() + n * (1 + s), static_cast<size_t>(n));
        adamw_multi_(p, grads, m, v, w);
      }
      Outputs out = p;
      out.insert(out.end(), m.begin(), m.end());
      out.insert(out.end(), v.begin(), v.end());
      return out;
    };

    R["full"] = [](const Inputs&, const Attrs& a) {
      return Outputs{Tensor::full(a.dims("shape"), a.d("value"), a.dtype("dtype"))};
    };
    R["arange"] = [](const Inputs&, const Attrs& a) {
      FactoryAttrs f;
      f.shape = Dims{a.i("n")};
      f.dtype = a.dtype("dtype");
      f.device = Device::cpu();
      f.a = a.d("start");
      f.b = a.d("step");
      return to_vec(call_op<1>(OpId::arange, f, {}));
    };
    return r;
  }();
  return *table;
}

// ---- comparison ------------------------------------------------------------------------------------------

// Relative tolerances (max |modu - torch| over one output / max |torch| of that output, floor 1e-6), by dtype:
struct Tolerance {
  DType dtype;
  double rel;
  const char* why;
};
constexpr Tolerance kTolerances[] = {
    {DType::F64, 1e-10,
     "both compute in double; summation order and libm differ by ~1e-15, while a constant or a step done in f32 "
     "would show up at ~1e-8"},
    {DType::F32, 1e-5,
     "unit roundoff 6e-8; torch (SLEEF, its own reduction order) and modu differ by a few ulps per element, times "
     "short reductions"},
    {DType::BF16, 1e-2,
     "both compute in f32 and round once to bf16 (ulp 2^-8 = 3.9e-3 relative): an f32 difference straddling a "
     "rounding boundary flips one ulp; allows ~2.5 ulps of the largest element"},
    {DType::F16, 2e-3, "as bf16, with the f16 ulp 2^-10 = 9.8e-4: two ulps of the largest element"},
};
double tolerance(DType dt) {
  for (const Tolerance& t : kTolerances)
    if (t.dtype == dt) return t.rel;
  return 0;  // integer and bool outputs: exact
}

// Ops whose outputs select, move or convert values without arithmetic: every element must equal torch's.
bool exact_op(const std::string& op) {
  static const std::set<std::string> ops = {
      "neg",   "abs",   "sign",        "relu",  "clamp",   "maximum",   "minimum",  "eq",    "ne",
      "lt",    "le",    "gt",          "ge",    "where",   "masked_fill", "max",    "argmax", "embedding",
      "index_select", "gather", "concat", "cast", "copy",  "to_device", "view",     "permute", "expand",
      "slice", "split", "copy_",       "fill_", "full",    "upsample_nearest2d"};
  return ops.count(op) > 0;
}
// Ops whose job is the value's exact bit pattern: the sign of zero must match too.
bool sign_of_zero_matters(const std::string& op) {
  return op == "cast" || op == "copy_" || op == "fill_" || op == "full" || op == "copy";
}

std::string index_str(const Dims& shape, int64_t linear) {
  std::vector<int64_t> idx(static_cast<size_t>(shape.size()));
  for (int d = shape.size() - 1; d >= 0; --d) {
    idx[static_cast<size_t>(d)] = linear % shape[d];
    linear /= shape[d];
  }
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < idx.size(); ++i) os << (i ? ", " : "") << idx[i];
  os << "]";
  return os.str();
}

enum class Mode { Tolerance, Exact, ZeroOrEqual };

// Compares a modu tensor to a fixture tensor; returns an empty string when they agree, else a description.
std::string compare(const Tensor& got, const json& want, Mode mode, bool signed_zero) {
  std::ostringstream err;
  const DType dt = dtype_named(want.at("dtype"));
  const Dims shape = dims_of(want.at("shape"));
  if (!got.defined()) return "modu returned no tensor";
  if (got.dtype() != dt) err << "dtype " << dtype_name(got.dtype()) << ", torch " << dtype_name(dt) << "; ";
  if (got.shape() != shape) {
    err << "shape " << got.shape().str() << ", torch " << shape.str();
    return err.str();
  }
  const json& data = want.at("data");
  const bool floating = is_floating(dt);
  if (!floating) mode = Mode::Exact;
  const double tol = tolerance(dt);
  double max_ref = 1e-6, max_diff = 0;
  int64_t worst = -1, bad = 0;
  std::vector<int64_t> bad_at;  // the first few elements that differ
  for (int64_t i = 0; i < shape.numel(); ++i) {
    const double g = read_element(got, i);
    const double w = floating ? as_dtype(number(data[static_cast<size_t>(i)]), dt)
                              : static_cast<double>(data[static_cast<size_t>(i)].get<int64_t>());
    bool ok;
    if (std::isnan(w) || std::isnan(g) || std::isinf(w) || std::isinf(g)) {
      ok = (std::isnan(w) && std::isnan(g)) || g == w || (mode == Mode::ZeroOrEqual && g == 0);
    } else if (mode == Mode::Exact) {
      ok = g == w && (!signed_zero || std::signbit(g) == std::signbit(w));
    } else {
      max_ref = std::max(max_ref, std::abs(w));
      const double diff = mode == Mode::ZeroOrEqual && g == 0 ? 0.0 : std::abs(g - w);
      if (diff > max_diff) max_diff = diff, worst = i;
      ok = true;  // judged by the norm below
    }
    if (!ok && ++bad <= 6) bad_at.push_back(i);
  }
  if (bad > 0) {
    err.precision(17);
    err << bad << " of " << shape.numel() << " elements differ"
        << (mode == Mode::Exact ? " (exact comparison)" : " (NaN/inf positions)") << ":";
    for (int64_t i : bad_at) {
      const double g = read_element(got, i);
      err << "\n    at " << index_str(shape, i) << ": modu " << (std::signbit(g) && g == 0 ? "-" : "") << g
          << ", torch " << data[static_cast<size_t>(i)].dump();
    }
    return err.str();
  }
  if (mode == Mode::ZeroOrEqual) {  // all zeros would pass vacuously
    bool any_kept = false;
    for (int64_t i = 0; i < shape.numel() && !any_kept; ++i) any_kept = read_element(got, i) != 0;
    if (!any_kept) return "every element is 0: the scaling of kept elements was not checked";
  }
  if (mode != Mode::Exact && std::getenv("MODU_FIXTURES_VERBOSE"))
    std::cout << "    relative error " << max_diff / max_ref << " (" << dtype_name(dt) << ", tolerance " << tol << ")\n";
  if (mode != Mode::Exact && max_diff / max_ref > tol) {
    err.precision(17);
    err << "relative error " << max_diff / max_ref << " > " << tol << " (max |torch| " << max_ref
        << "); worst at " << index_str(shape, worst) << ": modu " << read_element(got, worst) << ", torch "
        << number(data[static_cast<size_t>(worst)]);
    return err.str();
  }
  return err.str();
}

// The inputs' shapes, and their values when small (so a failure message shows the whole case).
std::string shape_list(const Inputs& in) {
  std::ostringstream os;
  os.precision(17);
  for (size_t i = 0; i < in.size(); ++i) {
    os << (i ? ", " : "") << describe(in[i]);
    if (in[i].numel() <= 8) {
      os << " = [";
      for (int64_t k = 0; k < in[i].numel(); ++k) os << (k ? " " : "") << read_element(in[i], k);
      os << "]";
    }
  }
  return os.str();
}

// ---- the tests --------------------------------------------------------------------------------------------

class TorchFixture : public testing::TestWithParam<std::string> {};

TEST_P(TorchFixture, Matches) {
  const FixtureFile& file = fixture_file();
  ASSERT_TRUE(file.error.empty()) << file.error;
  const json& fx = *file.by_name.at(GetParam());
  const std::string op = fx.at("op").get<std::string>();
  auto it = runners().find(op);
  ASSERT_NE(it, runners().end()) << "no modu call for op '" << op << "' in test_fixtures.cpp's table";
  if (fx.contains("note")) RecordProperty("note", fx.at("note").get<std::string>());

  Inputs in;
  for (const json& spec : fx.at("inputs")) in.push_back(make_input(spec));
  const Attrs attrs{fx.at("attrs")};
  const std::string context = "op " + op + " on (" + shape_list(in) + "), attrs " + fx.at("attrs").dump();

  Outputs out;
  try {
    out = it->second(in, attrs);
  } catch (const std::exception& e) {
    FAIL() << context << ": modu threw: " << e.what();
  }
  const json& want = fx.at("outputs");
  ASSERT_EQ(out.size(), want.size()) << context << ": modu returned " << out.size() << " outputs, torch "
                                     << want.size();
  const Mode mode = fx.value("compare", "") == "zero_or_equal" ? Mode::ZeroOrEqual
                    : exact_op(op)                              ? Mode::Exact
                                                                : Mode::Tolerance;
  for (size_t o = 0; o < out.size(); ++o) {
    const std::string e = compare(out[o], want[o], mode, sign_of_zero_matters(op));
    EXPECT_TRUE(e.empty()) << context << "\n  output " << o << ": " << e;
  }

  if (!fx.contains("grads")) return;
  // gradients of sum(out0 * proj) with respect to the inputs marked requires_grad
  const Tensor proj = make_tensor(fx.at("proj"));
  std::vector<Tensor> leaves;
  for (const json& g : fx.at("grads")) leaves.push_back(in.at(g.at("input").get<size_t>()));
  std::vector<Tensor> grads;
  try {
    const Tensor loss = sum(mul(out[0], proj));
    const Tensor roots[] = {loss};
    grads = autograd::grad(roots, leaves);
  } catch (const std::exception& e) {
    FAIL() << context << ": modu's backward threw: " << e.what();
  }
  ASSERT_EQ(grads.size(), leaves.size());
  for (size_t k = 0; k < grads.size(); ++k) {
    Tensor g = grads[k];
    if (!g.defined()) g = Tensor::zeros(leaves[k].shape(), leaves[k].dtype());  // not reached: zero gradient
    const json& gw = fx.at("grads")[k];
    const std::string e = compare(g, gw, Mode::Tolerance, false);
    EXPECT_TRUE(e.empty()) << context << "\n  gradient of input " << gw.at("input").get<int>() << ": " << e;
  }
}

INSTANTIATE_TEST_SUITE_P(Ops, TorchFixture, testing::ValuesIn(fixture_names()),
                         [](const testing::TestParamInfo<std::string>& info) { return info.param; });

TEST(TorchFixtures, EveryOpCoveredOrSkipped) {
  const FixtureFile& file = fixture_file();
  ASSERT_TRUE(file.error.empty()) << file.error;
  std::set<std::string> table;
  for (int i = 0; i < kNumOps; ++i) table.insert(op_name(static_cast<OpId>(i)));

  std::set<std::string> covered;
  for (const json& fx : file.doc.at("fixtures")) {
    const std::string op = fx.at("op").get<std::string>();
    EXPECT_TRUE(table.count(op)) << "fixture " << fx.at("name") << " names op '" << op << "', not in op_table.def";
    EXPECT_TRUE(runners().count(op)) << "fixture " << fx.at("name") << ": no modu call for op '" << op << "'";
    covered.insert(op);
  }
  std::map<std::string, std::string> skipped;
  for (const json& s : file.doc.at("skipped")) {
    const std::string op = s.at("op").get<std::string>(), reason = s.value("reason", "");
    EXPECT_TRUE(table.count(op)) << "skipped op '" << op << "' is not in op_table.def";
    EXPECT_FALSE(reason.empty()) << "skipped op '" << op << "' gives no reason";
    skipped[op] = reason;
  }
  std::string missing;
  for (const std::string& op : table)
    if (!covered.count(op) && !skipped.count(op)) missing += " " + op;
  EXPECT_TRUE(missing.empty()) << "ops with neither a torch fixture nor a reason in \"skipped\" (add them to "
                                  "tests/fixtures/gen_op_fixtures.py and regenerate ops.json):"
                               << missing;
  for (const auto& [op, reason] : skipped) std::cout << "[ skipped  ] " << op << ": " << reason << "\n";
  std::cout << "[ coverage ] " << covered.size() << " of " << table.size() << " ops have torch fixtures ("
            << file.names.size() << " fixtures)\n";
}

}  // namespace
}  // namespace modu
