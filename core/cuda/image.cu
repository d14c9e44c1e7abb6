// core/cuda/image.cu — conv2d by im2col + cuBLAS GEMM (forward and backward), nearest upsampling and
// average pooling with their backward, on CUDA. Layout NCHW; weights (O, C, KH, KW).
//
// conv2d: images are processed in chunks whose column buffer (chunk, C*KH*KW, OH*OW) stays under 256 MiB;
// the forward is one strided-batched GEMM per chunk, y_n (O, OH*OW) = w (O, CKK) @ col_n, starting from the
// broadcast bias (beta = 1). The backward writes gw = sum_n gy_n @ col_n^T with one GEMM per image
// accumulating in image order (deterministic), gcol_n = w^T @ gy_n as one batched GEMM, and folds gcol back
// with a gather kernel (one thread per input pixel, summing its (kh, kw) taps in the CPU's order, no
// atomics); gb sums gy per channel. 16-bit inputs are widened to f32 and results rounded once, as on the CPU.
// Pooling and upsampling backward are gathers too. Outputs and gradients are written (=).
#include "core/cuda/common.cuh"
#include "core/ops/layout.h"

namespace modu::cuda {

namespace {

// col (nc, CKK, OHW) from images (nc, C, H, W).
template <class A>
__global__ void im2col_kernel(const A* img, A* col, int64_t nc, ConvGeometry g) {
  int64_t ckk = g.ckk(), ohw = g.ohw(), total = nc * ckk * ohw;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t p = e % ohw, r = (e / ohw) % ckk, n = e / (ohw * ckk);
    int64_t c = r / (g.KH * g.KW), kh = (r / g.KW) % g.KH, kw = r % g.KW;
    int64_t ih = (p / g.OW) * g.SH - g.PH + kh, iw = (p % g.OW) * g.SW - g.PW + kw;
    col[e] = (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W) ? img[((n * g.C + c) * g.H + ih) * g.W + iw] : A(0);
  }
}

// img (nc, C, H, W) = the adjoint of im2col applied to col (nc, CKK, OHW): a gather per pixel.
template <class A>
__global__ void col2im_kernel(const A* col, A* img, int64_t nc, ConvGeometry g) {
  int64_t ohw = g.ohw(), total = nc * g.C * g.H * g.W;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t iw = e % g.W, ih = (e / g.W) % g.H, c = (e / (g.W * g.H)) % g.C, n = e / (g.W * g.H * g.C);
    const A* base = col + (n * g.ckk() + c * g.KH * g.KW) * ohw;
    A acc = A(0);
    for (int64_t kh = 0; kh < g.KH; ++kh) {
      int64_t th = ih + g.PH - kh;
      if (th < 0 || th % g.SH) continue;
      int64_t oh = th / g.SH;
      if (oh >= g.OH) continue;
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        int64_t tw = iw + g.PW - kw;
        if (tw < 0 || tw % g.SW) continue;
        int64_t ow = tw / g.SW;
        if (ow >= g.OW) continue;
        acc += base[(kh * g.KW + kw) * ohw + oh * g.OW + ow];
      }
    }
    img[e] = acc;
  }
}

// gb[o] = sum over n, p of gy (N, O, OHW): block per channel.
template <class A>
__global__ void conv_bias_grad_kernel(const A* gy, A* gb, int64_t N, int64_t O, int64_t ohw) {
  __shared__ A scratch[32];
  int64_t o = blockIdx.x;
  A s = A(0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t p = threadIdx.x; p < ohw; p += blockDim.x) s += gy[(n * O + o) * ohw + p];
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) gb[o] = s;
}

constexpr int64_t kColBudget = int64_t(256) << 20;

int64_t chunk_images(const ConvGeometry& g, size_t es) {
  int64_t per = std::max<int64_t>(1, g.ckk() * g.ohw() * static_cast<int64_t>(es));
  return std::max<int64_t>(1, std::min<int64_t>(g.N, kColBudget / per));
}

template <class A>
void conv_forward(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, const ConvAttrs& attrs) {
  DType ct = std::is_same_v<A, double> ? DType::F64 : DType::F32;
  ConvGeometry g = conv_geometry(x, w, attrs);
  Device dev = y.device();
  // y starts as the broadcast bias; the GEMMs accumulate onto it.
  Tensor bias_view = Tensor::make_view(b.storage(), Dims{g.N, g.O, g.ohw()}, Dims{0, b.stride(0), 0}, b.offset(),
                                       b.dtype());
  Tensor y3 = Tensor::make_view(y.storage(), Dims{g.N, g.O, g.ohw()}, Dims{g.O * g.ohw(), g.ohw(), 1}, y.offset(),
                                y.dtype());
  copy_into(y3, bias_view);
  if (g.N == 0 || g.ckk() == 0) return;
  Tensor xc = to_dtype(x, ct), wc = to_dtype(w, ct);
  int64_t nc_max = chunk_images(g, sizeof(A));
  Tensor col = Tensor::empty(Dims{nc_max, g.ckk(), g.ohw()}, ct, dev);
  const A* X = static_cast<const A*>(xc.data_ptr());
  A* Y = static_cast<A*>(y.data_ptr());
  for (int64_t n0 = 0; n0 < g.N; n0 += nc_max) {
    int64_t nc = std::min(nc_max, g.N - n0);
    im2col_kernel<A><<<grid_for(nc * g.ckk() * g.ohw()), kThreads, 0, cur_stream()>>>(
        X + n0 * g.C * g.H * g.W, static_cast<A*>(col.data_ptr()), nc, g);
    MODU_CUDA_LAUNCH_CHECK("conv2d (im2col)");
    gemm(ct, ct, false, false, g.O, g.ohw(), g.ckk(), 1.0, wc.data_ptr(), g.ckk(), 0, col.data_ptr(), g.ohw(),
         g.ckk() * g.ohw(), 1.0, Y + n0 * g.O * g.ohw(), g.ohw(), g.O * g.ohw(), nc);
  }
}

template <class A>
void conv_backward(const Tensor& gy_in, const Tensor& x_in, const Tensor& w_in, Tensor& gx, Tensor& gw, Tensor& gb,
                   const ConvAttrs& attrs) {
  DType ct = std::is_same_v<A, double> ? DType::F64 : DType::F32;
  ConvGeometry g = conv_geometry(x_in, w_in, attrs);
  Device dev = gx.device();
  if (g.N == 0) {
    fill(gw, 0.0);
    fill(gb, 0.0);
    return;
  }
  Tensor gy = to_dtype(gy_in, ct), x = to_dtype(x_in, ct), w = to_dtype(w_in, ct);
  const A* GY = static_cast<const A*>(gy.data_ptr());
  const A* X = static_cast<const A*>(x.data_ptr());
  A* GX = static_cast<A*>(gx.data_ptr());
  A* GW = static_cast<A*>(gw.data_ptr());
  conv_bias_grad_kernel<A><<<static_cast<unsigned>(g.O), kThreads, 0, cur_stream()>>>(
      GY, static_cast<A*>(gb.data_ptr()), g.N, g.O, g.ohw());
  MODU_CUDA_LAUNCH_CHECK("conv2d_backward (bias)");
  if (g.ckk() == 0 || g.ohw() == 0) {
    fill(gw, 0.0);
    fill(gx, 0.0);
    return;
  }
  int64_t nc_max = chunk_images(g, sizeof(A));
  Tensor col = Tensor::empty(Dims{nc_max, g.ckk(), g.ohw()}, ct, dev);
  A* COL = static_cast<A*>(col.data_ptr());
  for (int64_t n0 = 0; n0 < g.N; n0 += nc_max) {
    int64_t nc = std::min(nc_max, g.N - n0);
    im2col_kernel<A><<<grid_for(nc * g.ckk() * g.ohw()), kThreads, 0, cur_stream()>>>(X + n0 * g.C * g.H * g.W, COL,
                                                                                      nc, g);
    MODU_CUDA_LAUNCH_CHECK("conv2d_backward (im2col)");
    for (int64_t i = 0; i < nc; ++i) {  // gw (O, CKK) (+)= gy_n (O, OHW) @ col_n^T, images in order
      int64_t n = n0 + i;
      gemm(ct, ct, false, true, g.O, g.ckk(), g.ohw(), 1.0, GY + n * g.O * g.ohw(), g.ohw(), 0,
           COL + i * g.ckk() * g.ohw(), g.ohw(), 0, n == 0 ? 0.0 : 1.0, GW, g.ckk(), 0, 1);
    }
    // gcol_n (CKK, OHW) = w^T (CKK, O) @ gy_n (O, OHW), written over the column buffer, then folded into gx.
    gemm(ct, ct, true, false, g.ckk(), g.ohw(), g.O, 1.0, w.data_ptr(), g.ckk(), 0, GY + n0 * g.O * g.ohw(), g.ohw(),
         g.O * g.ohw(), 0.0, COL, g.ohw(), g.ckk() * g.ohw(), nc);
    col2im_kernel<A><<<grid_for(nc * g.C * g.H * g.W), kThreads, 0, cur_stream()>>>(COL, GX + n0 * g.C * g.H * g.W,
                                                                                    nc, g);
    MODU_CUDA_LAUNCH_CHECK("conv2d_backward (col2im)");
  }
}

void conv2d_kernel(const KernelCall& c) {
  Tensor& y = c.output(0);
  switch (y.dtype()) {
    case DType::F32: return conv_forward<float>(c.input(0), c.input(1), c.input(2), y, c.attrs.conv);
    case DType::F64: return conv_forward<double>(c.input(0), c.input(1), c.input(2), y, c.attrs.conv);
    default: {
      Tensor y32 = Tensor::empty(y.shape(), DType::F32, y.device());
      conv_forward<float>(c.input(0), c.input(1), c.input(2), y32, c.attrs.conv);
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
      Device d = gx.device();
      Tensor gx32 = Tensor::empty(gx.shape(), DType::F32, d), gw32 = Tensor::empty(gw.shape(), DType::F32, d),
             gb32 = Tensor::empty(gb.shape(), DType::F32, d);
      conv_backward<float>(c.input(0), c.input(1), c.input(2), gx32, gw32, gb32, c.attrs.conv);
      copy_into(gx, gx32);
      copy_into(gw, gw32);
      copy_into(gb, gb32);
    }
  }
}

// ---- upsample_nearest2d ------------------------------------------------------------------------------------------
template <class T>
__global__ void upsample_kernel(const T* in, T* out, int64_t NC, int64_t h, int64_t w, int sh, int sw) {
  int64_t H = h * sh, W = w * sw, total = NC * H * W;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t j = e % W, i = (e / W) % H, p = e / (W * H);
    out[e] = in[(p * h + i / sh) * w + j / sw];
  }
}

template <class T>
__global__ void upsample_bwd_kernel(const T* gy, T* gx, int64_t NC, int64_t h, int64_t w, int sh, int sw) {
  using A = acc_t<T>;
  int64_t H = h * sh, W = w * sw, total = NC * h * w;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t j = e % w, i = (e / w) % h, p = e / (w * h);
    A s = A(0);
    for (int di = 0; di < sh; ++di)
      for (int dj = 0; dj < sw; ++dj) s += ld(gy + (p * H + i * sh + di) * W + j * sw + dj);
    st(gx + e, s);
  }
}

void upsample_launch(const KernelCall& c) {
  Tensor x = contiguous(c.input(0));
  Tensor& y = c.output(0);
  const UpsampleAttrs& u = c.attrs.upsample;
  bool backward = c.op == OpId::upsample_nearest2d_backward;
  const Tensor& small = backward ? y : x;
  int64_t NC = small.size(0) * small.size(1), h = small.size(2), w = small.size(3);
  if (NC * h * w == 0) return;
  dispatch_floating(x.dtype(), op_name(c.op), [&](auto tag) {
    using T = decltype(tag);
    const T* in = static_cast<const T*>(x.data_ptr());
    T* out = static_cast<T*>(y.data_ptr());
    if (!backward) {
      upsample_kernel<T><<<grid_for(y.numel()), kThreads, 0, cur_stream()>>>(in, out, NC, h, w, u.scale_h, u.scale_w);
    } else {
      upsample_bwd_kernel<T><<<grid_for(y.numel()), kThreads, 0, cur_stream()>>>(in, out, NC, h, w, u.scale_h,
                                                                                  u.scale_w);
    }
    MODU_CUDA_LAUNCH_CHECK(op_name(c.op));
  });
}

// ---- avg_pool2d ------------------------------------------------------------------------------------------------------
struct PoolGeom {
  int64_t NC, H, W, OH, OW;
  int KH, KW, SH, SW;
};

template <class T>
__global__ void avg_pool_kernel(const T* in, T* out, PoolGeom g, acc_t<T> inv) {
  using A = acc_t<T>;
  int64_t total = g.NC * g.OH * g.OW;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t ow = e % g.OW, oh = (e / g.OW) % g.OH, p = e / (g.OW * g.OH);
    A s = A(0);
    for (int i = 0; i < g.KH; ++i)
      for (int j = 0; j < g.KW; ++j) s += ld(in + (p * g.H + oh * g.SH + i) * g.W + ow * g.SW + j);
    st(out + e, s * inv);
  }
}

template <class T>
__global__ void avg_pool_bwd_kernel(const T* gy, T* gx, PoolGeom g, acc_t<T> inv) {
  using A = acc_t<T>;
  int64_t total = g.NC * g.H * g.W;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t iw = e % g.W, ih = (e / g.W) % g.H, p = e / (g.W * g.H);
    // windows oh with oh*SH <= ih < oh*SH + KH, in increasing (oh, ow) order like the CPU's scatter
    int64_t oh0 = ih - g.KH + 1 > 0 ? (ih - g.KH + 1 + g.SH - 1) / g.SH : 0, oh1 = ih / g.SH;
    int64_t ow0 = iw - g.KW + 1 > 0 ? (iw - g.KW + 1 + g.SW - 1) / g.SW : 0, ow1 = iw / g.SW;
    if (oh1 >= g.OH) oh1 = g.OH - 1;
    if (ow1 >= g.OW) ow1 = g.OW - 1;
    A acc = A(0);
    for (int64_t oh = oh0; oh <= oh1; ++oh)
      for (int64_t ow = ow0; ow <= ow1; ++ow) acc += ld(gy + (p * g.OH + oh) * g.OW + ow) * inv;
    st(gx + e, acc);
  }
}

void avg_pool_launch(const KernelCall& c) {
  Tensor x = contiguous(c.input(0));
  Tensor& y = c.output(0);
  const PoolAttrs& pa = c.attrs.pool;
  bool backward = c.op == OpId::avg_pool2d_backward;
  const Tensor& big = backward ? y : x;
  const Tensor& small = backward ? x : y;
  PoolGeom g{big.size(0) * big.size(1), big.size(2), big.size(3), small.size(2), small.size(3),
             pa.kernel_h, pa.kernel_w, pa.stride_h, pa.stride_w};
  if (y.numel() == 0) return;
  dispatch_floating(x.dtype(), op_name(c.op), [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    A inv = A(1) / A(pa.kernel_h * pa.kernel_w);
    const T* in = static_cast<const T*>(x.data_ptr());
    T* out = static_cast<T*>(y.data_ptr());
    if (!backward) avg_pool_kernel<T><<<grid_for(y.numel()), kThreads, 0, cur_stream()>>>(in, out, g, inv);
    else avg_pool_bwd_kernel<T><<<grid_for(y.numel()), kThreads, 0, cur_stream()>>>(in, out, g, inv);
    MODU_CUDA_LAUNCH_CHECK(op_name(c.op));
  });
}

}  // namespace

void register_image_kernels(KernelRegistry& r) {
  const auto cuda = DeviceType::CUDA;
  r.set(cuda, OpId::conv2d, guarded<conv2d_kernel>, kFloatTypes);
  r.set(cuda, OpId::conv2d_backward, guarded<conv2d_backward_kernel>, kFloatTypes);
  r.set(cuda, OpId::upsample_nearest2d, guarded<upsample_launch>, kFloatTypes);
  r.set(cuda, OpId::upsample_nearest2d_backward, guarded<upsample_launch>, kFloatTypes);
  r.set(cuda, OpId::avg_pool2d, guarded<avg_pool_launch>, kFloatTypes);
  r.set(cuda, OpId::avg_pool2d_backward, guarded<avg_pool_launch>, kFloatTypes);
}

}  // namespace modu::cuda
