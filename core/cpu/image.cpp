// core/cpu/image.cpp — conv2d by im2col + GEMM (forward and backward), nearest upsampling and average
// pooling with their backward. Layout NCHW; weights (O, C, KH, KW). 16-bit inputs are widened to f32.
// Outputs and gradients are written (=); gw and gb sum over the batch inside the kernel.

#include <vector>

#include "core/cpu/blas.h"
#include "core/cpu/kernels.h"
#include "core/cpu/loops.h"
#include "core/ops/layout.h"

namespace modu::cpu {

namespace {

// col (C*KH*KW, OH*OW) from one image (C, H, W); zero where the window hangs over the padding.
template <class T>
void im2col(const T* img, const ConvGeometry& g, T* col) {
  parallel_for(g.ckk(), g.ohw(), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      int64_t c = r / (g.KH * g.KW), kh = (r / g.KW) % g.KH, kw = r % g.KW;
      T* dst = col + r * g.ohw();
      for (int64_t oh = 0; oh < g.OH; ++oh) {
        int64_t ih = oh * g.SH - g.PH + kh;
        for (int64_t ow = 0; ow < g.OW; ++ow) {
          int64_t iw = ow * g.SW - g.PW + kw;
          dst[oh * g.OW + ow] = (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W) ? img[(c * g.H + ih) * g.W + iw] : T(0);
        }
      }
    }
  });
}

// The adjoint of im2col: adds col entries back into the image (C, H, W), which must start at zero.
template <class T>
void col2im(const T* col, const ConvGeometry& g, T* img) {
  parallel_for(g.C, g.KH * g.KW * g.ohw(), [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c)
      for (int64_t kh = 0; kh < g.KH; ++kh)
        for (int64_t kw = 0; kw < g.KW; ++kw) {
          const T* src = col + ((c * g.KH + kh) * g.KW + kw) * g.ohw();
          for (int64_t oh = 0; oh < g.OH; ++oh) {
            int64_t ih = oh * g.SH - g.PH + kh;
            if (ih < 0 || ih >= g.H) continue;
            for (int64_t ow = 0; ow < g.OW; ++ow) {
              int64_t iw = ow * g.SW - g.PW + kw;
              if (iw >= 0 && iw < g.W) img[(c * g.H + ih) * g.W + iw] += src[oh * g.OW + ow];
            }
          }
        }
  });
}

template <class T>
void conv_forward(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, Tensor& y, const ConvAttrs& a) {
  Tensor x = as_contiguous(x_in), w = as_contiguous(w_in), b = as_contiguous(b_in);
  ConvGeometry g = conv_geometry(x, w, a);
  Scratch<T> col(g.ckk() * g.ohw());
  const T* X = static_cast<const T*>(x.data_ptr());
  const T* Wt = static_cast<const T*>(w.data_ptr());
  const T* Bs = static_cast<const T*>(b.data_ptr());
  T* Y = static_cast<T*>(y.data_ptr());
  for (int64_t n = 0; n < g.N; ++n) {
    T* yn = Y + n * g.O * g.ohw();
    for (int64_t o = 0; o < g.O; ++o) std::fill(yn + o * g.ohw(), yn + (o + 1) * g.ohw(), Bs[o]);
    im2col(X + n * g.C * g.H * g.W, g, col.data);
    gemm(false, false, g.O, g.ohw(), g.ckk(), T(1), Wt, g.ckk(), col.data, g.ohw(), T(1), yn, g.ohw());
  }
}

template <class T>
void conv_backward(const Tensor& gy_in, const Tensor& x_in, const Tensor& w_in, Tensor& gx, Tensor& gw, Tensor& gb,
                   const ConvAttrs& a) {
  Tensor gy = as_contiguous(gy_in), x = as_contiguous(x_in), w = as_contiguous(w_in);
  ConvGeometry g = conv_geometry(x, w, a);
  Scratch<T> col(g.ckk() * g.ohw());
  const T* GY = static_cast<const T*>(gy.data_ptr());
  const T* X = static_cast<const T*>(x.data_ptr());
  const T* Wt = static_cast<const T*>(w.data_ptr());
  T* GX = static_cast<T*>(gx.data_ptr());
  T* GW = static_cast<T*>(gw.data_ptr());
  T* GB = static_cast<T*>(gb.data_ptr());
  std::fill(GX, GX + gx.numel(), T(0));
  std::fill(GB, GB + g.O, T(0));
  for (int64_t n = 0; n < g.N; ++n) {
    const T* gyn = GY + n * g.O * g.ohw();
    im2col(X + n * g.C * g.H * g.W, g, col.data);
    // gw (O, CKK) (+)= gy_n (O, OHW) @ col^T
    gemm(false, true, g.O, g.ckk(), g.ohw(), T(1), gyn, g.ohw(), col.data, g.ohw(), n == 0 ? T(0) : T(1), GW, g.ckk());
    // gcol = w^T (CKK, O) @ gy_n, folded back into gx_n
    gemm(true, false, g.ckk(), g.ohw(), g.O, T(1), Wt, g.ckk(), gyn, g.ohw(), T(0), col.data, g.ohw());
    col2im(col.data, g, GX + n * g.C * g.H * g.W);
    for (int64_t o = 0; o < g.O; ++o) {
      T s = 0;
      for (int64_t k = 0; k < g.ohw(); ++k) s += gyn[o * g.ohw() + k];
      GB[o] += s;
    }
  }
}

Tensor widen(const Tensor& x) {
  Tensor f = Tensor::empty(x.shape(), DType::F32);
  copy_into(f, x);
  return f;
}

void conv2d_kernel(const KernelCall& c) {
  Tensor& y = c.output(0);
  switch (y.dtype()) {
    case DType::F32: return conv_forward<float>(c.input(0), c.input(1), c.input(2), y, c.attrs.conv);
    case DType::F64: return conv_forward<double>(c.input(0), c.input(1), c.input(2), y, c.attrs.conv);
    default: {
      Tensor y32 = Tensor::empty(y.shape(), DType::F32);
      conv_forward<float>(widen(c.input(0)), widen(c.input(1)), widen(c.input(2)), y32, c.attrs.conv);
      copy_into(y, y32);
    }
  }
}

void conv2d_backward_kernel(const KernelCall& c) {
  Tensor &gx = c.output(0), &gw = c.output(1), &gb = c.output(2);
  switch (gx.dtype()) {
    case DType::F32: return conv_backward<float>(c.input(0), c.input(1), c.input(2), gx, gw, gb, c.attrs.conv);
    case DType::F64: return conv_backward<double>(c.input(0), c.input(1), c.input(2), gx, gw, gb, c.attrs.conv);
    default: {
      Tensor gx32 = Tensor::empty(gx.shape(), DType::F32), gw32 = Tensor::empty(gw.shape(), DType::F32),
             gb32 = Tensor::empty(gb.shape(), DType::F32);
      conv_backward<float>(widen(c.input(0)), widen(c.input(1)), widen(c.input(2)), gx32, gw32, gb32, c.attrs.conv);
      copy_into(gx, gx32);
      copy_into(gw, gw32);
      copy_into(gb, gb32);
    }
  }
}

void upsample_kernel(const KernelCall& c) {
  Tensor x = as_contiguous(c.input(0));
  Tensor& y = c.output(0);
  const UpsampleAttrs& u = c.attrs.upsample;
  bool backward = c.op == OpId::upsample_nearest2d_backward;
  // Small image (N, C, h, w), large image (N, C, h*sh, w*sw).
  const Tensor& small = backward ? y : x;
  int64_t NC = small.size(0) * small.size(1), h = small.size(2), w = small.size(3);
  int64_t H = h * u.scale_h, W = w * u.scale_w;
  dispatch_floating(x.dtype(), op_name(c.op), [&](auto tag_) {
    using scalar_t = decltype(tag_);
    using A = acc_t<scalar_t>;
    const scalar_t* in = static_cast<const scalar_t*>(x.data_ptr());
    scalar_t* out = static_cast<scalar_t*>(y.data_ptr());
    parallel_for(NC, H * W, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        if (!backward) {
          for (int64_t i = 0; i < H; ++i)
            for (int64_t j = 0; j < W; ++j)
              out[(p * H + i) * W + j] = in[(p * h + i / u.scale_h) * w + j / u.scale_w];
        } else {
          for (int64_t i = 0; i < h; ++i)
            for (int64_t j = 0; j < w; ++j) {
              A s = 0;
              for (int64_t di = 0; di < u.scale_h; ++di)
                for (int64_t dj = 0; dj < u.scale_w; ++dj)
                  s += load(in + (p * H + i * u.scale_h + di) * W + j * u.scale_w + dj);
              store(out + (p * h + i) * w + j, s);
            }
        }
      }
    });
  });
}

void avg_pool_kernel(const KernelCall& c) {
  Tensor x = as_contiguous(c.input(0));
  Tensor& y = c.output(0);
  const PoolAttrs& pa = c.attrs.pool;
  bool backward = c.op == OpId::avg_pool2d_backward;
  const Tensor& big = backward ? y : x;
  const Tensor& small = backward ? x : y;
  int64_t NC = big.size(0) * big.size(1), H = big.size(2), W = big.size(3), OH = small.size(2), OW = small.size(3);
  dispatch_floating(x.dtype(), op_name(c.op), [&](auto tag_) {
    using scalar_t = decltype(tag_);
    using A = acc_t<scalar_t>;
    const scalar_t* in = static_cast<const scalar_t*>(x.data_ptr());
    scalar_t* out = static_cast<scalar_t*>(y.data_ptr());
    A inv = A(1) / A(pa.kernel_h * pa.kernel_w);
    const int slots = max_threads();
    Scratch<A> scratch(backward ? slots * H * W : 1);
    parallel_for(NC, H * W, [&](int64_t p0, int64_t p1) {
      A* acc = scratch.data + (backward ? static_cast<int64_t>(thread_slot(slots)) * H * W : 0);
      for (int64_t p = p0; p < p1; ++p) {
        if (!backward) {
          for (int64_t oh = 0; oh < OH; ++oh)
            for (int64_t ow = 0; ow < OW; ++ow) {
              A s = 0;
              for (int64_t i = 0; i < pa.kernel_h; ++i)
                for (int64_t j = 0; j < pa.kernel_w; ++j)
                  s += load(in + (p * H + oh * pa.stride_h + i) * W + ow * pa.stride_w + j);
              store(out + (p * OH + oh) * OW + ow, s * inv);
            }
        } else {
          std::fill(acc, acc + H * W, A(0));
          for (int64_t oh = 0; oh < OH; ++oh)
            for (int64_t ow = 0; ow < OW; ++ow) {
              A g = load(in + (p * OH + oh) * OW + ow) * inv;
              for (int64_t i = 0; i < pa.kernel_h; ++i)
                for (int64_t j = 0; j < pa.kernel_w; ++j)
                  acc[(oh * pa.stride_h + i) * W + ow * pa.stride_w + j] += g;
            }
          for (int64_t k = 0; k < H * W; ++k) store(out + p * H * W + k, acc[k]);
        }
      }
    });
  });
}

}  // namespace

void register_image_kernels(KernelRegistry& r) {
  r.set(DeviceType::CPU, OpId::conv2d, conv2d_kernel, kFloatTypes);
  r.set(DeviceType::CPU, OpId::conv2d_backward, conv2d_backward_kernel, kFloatTypes);
  r.set(DeviceType::CPU, OpId::upsample_nearest2d, upsample_kernel, kFloatTypes);
  r.set(DeviceType::CPU, OpId::upsample_nearest2d_backward, upsample_kernel, kFloatTypes);
  r.set(DeviceType::CPU, OpId::avg_pool2d, avg_pool_kernel, kFloatTypes);
  r.set(DeviceType::CPU, OpId::avg_pool2d_backward, avg_pool_kernel, kFloatTypes);
}

}  // namespace modu::cpu
