// Weight gradient of a stride-1, "same"-padded depthwise convolution on channels-last CPU
// tensors: the k x k token mixer of MambaOut's Gated CNN block (Yu & Wang, arXiv 2405.07992).
//
//   grad_w[c, ky, kx] = sum_{b, h, w} grad[b, h, w, c] * x[b, h + ky - p, w + kx - p, c]
//
// PyTorch's CPU convolution backward computes this an order of magnitude slower than the
// forward convolution. Here every (b, h) row is one task (parallel over rows); a task adds the
// products of one output row with the k input rows it sees into a per-thread accumulator of
// k * k * C floats, with the innermost loop running over the contiguous channels (vectorised by
// the compiler); the accumulators are summed at the end. Padding positions contribute zero.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <mutex>
#include <vector>

namespace {

template <typename T>
void accumulate_row(const T* __restrict__ x, const T* __restrict__ g, double* __restrict__ acc,
                    T* __restrict__ p, int64_t b, int64_t h, int64_t height, int64_t width,
                    int64_t channels, int64_t k) {
  const int64_t pad = k / 2;
  const T* grow = g + (b * height + h) * width * channels;
  for (int64_t ky = 0; ky < k; ++ky) {
    const int64_t hy = h + ky - pad;
    if (hy < 0 || hy >= height) continue;
    const T* xrow = x + (b * height + hy) * width * channels;
    for (int64_t kx = 0; kx < k; ++kx) {
      double* a = acc + (ky * k + kx) * channels;
      const int64_t w0 = std::max<int64_t>(0, pad - kx);
      const int64_t w1 = std::min<int64_t>(width, width + pad - kx);
      // sum over the row in the input precision, then flush to double: vectorised, accurate
      std::fill(p, p + channels, T(0));
      for (int64_t w = w0; w < w1; ++w) {
        const T* gp = grow + w * channels;
        const T* xp = xrow + (w + kx - pad) * channels;
#pragma omp simd
        for (int64_t c = 0; c < channels; ++c) p[c] += gp[c] * xp[c];
      }
      for (int64_t c = 0; c < channels; ++c) a[c] += p[c];
    }
  }
}

}  // namespace

// x, grad: (B, H, W, C) contiguous -> grad_weight (C, 1, k, k)
torch::Tensor depthwise_weight_grad(const torch::Tensor& x_, const torch::Tensor& grad_,
                                    int64_t k) {
  TORCH_CHECK(x_.dim() == 4 && grad_.sizes() == x_.sizes(),
              "depthwise_weight_grad: x and grad must both be (B, H, W, C)");
  TORCH_CHECK(k % 2 == 1 && k > 0, "depthwise_weight_grad: the kernel size must be odd");
  const auto x = x_.contiguous();
  const auto grad = grad_.contiguous().to(x.scalar_type());
  const int64_t batch = x.size(0), height = x.size(1), width = x.size(2), channels = x.size(3);
  std::vector<double> total(k * k * channels, 0.0);
  std::mutex lock;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "depthwise_weight_grad", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* gp = grad.data_ptr<scalar_t>();
    at::parallel_for(0, batch * height, 1, [&](int64_t begin, int64_t end) {
      std::vector<double> acc(k * k * channels, 0.0);
      std::vector<scalar_t> part(channels);
      for (int64_t bh = begin; bh < end; ++bh) {
        accumulate_row(xp, gp, acc.data(), part.data(), bh / height, bh % height, height,
                       width, channels, k);
      }
      std::lock_guard<std::mutex> guard(lock);
      for (size_t i = 0; i < acc.size(); ++i) total[i] += acc[i];
    });
  });
  // (k, k, C) -> (C, 1, k, k)
  auto out = torch::from_blob(total.data(), {k, k, channels}, torch::kFloat64)
                 .permute({2, 0, 1})
                 .unsqueeze(1)
                 .to(x.scalar_type())
                 .contiguous();
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("weight_grad", &depthwise_weight_grad,
        "weight gradient of a same-padded stride-1 depthwise convolution, channels-last");
}
