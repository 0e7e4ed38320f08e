// RoIAlign (He et al., "Mask R-CNN", arXiv 1703.06870) for CPU tensors, average pooling, with
// mmcv's and torchvision's semantics (aligned half-pixel offset, adaptive or fixed sampling
// grid, samples outside [-1, H] x [-1, W] contribute zero, clamping at the border).
//
// mmcv 2.1's CPU kernel is single-threaded and its backward recomputes every sample's bilinear
// weights once per channel. Here the sampling positions and weights of every RoI are computed
// once (in parallel over RoIs) and shared by all channels; the forward runs in parallel over
// RoIs, the backward in parallel over channels, so that every thread writes its own channel
// planes of the input gradient and no write races another.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

struct Sample {
  int64_t pos[4];
  double w[4];
};

// The samples of every RoI, flattened: bins of RoI r are [bin_start[r], bin_start[r + 1]) in
// units of (bins); the samples of bin b are [sample_start[b], sample_start[b + 1]).
struct Plan {
  std::vector<int64_t> batch;         // (R,)
  std::vector<double> inv_count;      // (R,): 1 / samples per bin
  std::vector<int64_t> sample_start;  // (R * bins + 1,)
  std::vector<Sample> samples;
};

template <typename T>
Plan make_plan(const T* rois, int64_t num_rois, int64_t height, int64_t width,
               int64_t pooled_h, int64_t pooled_w, double spatial_scale,
               int64_t sampling_ratio, bool aligned) {
  const int64_t bins = pooled_h * pooled_w;
  Plan plan;
  plan.batch.resize(num_rois);
  plan.inv_count.resize(num_rois);
  std::vector<int64_t> grid_h(num_rois), grid_w(num_rois);
  std::vector<double> start_h(num_rois), start_w(num_rois), bin_h(num_rois), bin_w(num_rois);
  for (int64_t r = 0; r < num_rois; ++r) {
    const T* roi = rois + r * 5;
    plan.batch[r] = static_cast<int64_t>(roi[0]);
    const double offset = aligned ? 0.5 : 0.0;
    const double x1 = roi[1] * spatial_scale - offset, y1 = roi[2] * spatial_scale - offset;
    const double x2 = roi[3] * spatial_scale - offset, y2 = roi[4] * spatial_scale - offset;
    double roi_w = x2 - x1, roi_h = y2 - y1;
    if (aligned) {
      TORCH_CHECK(roi_w >= 0 && roi_h >= 0, "RoIAlign: RoIs must have a non-negative size");
    } else {
      roi_w = std::max(roi_w, 1.0);
      roi_h = std::max(roi_h, 1.0);
    }
    start_h[r] = y1;
    start_w[r] = x1;
    bin_h[r] = roi_h / pooled_h;
    bin_w[r] = roi_w / pooled_w;
    // as the reference kernels: ceil in single precision for the adaptive grid
    grid_h[r] = sampling_ratio > 0 ? sampling_ratio
                                   : static_cast<int64_t>(std::ceil(static_cast<float>(
                                         roi_h / pooled_h)));
    grid_w[r] = sampling_ratio > 0 ? sampling_ratio
                                   : static_cast<int64_t>(std::ceil(static_cast<float>(
                                         roi_w / pooled_w)));
    plan.inv_count[r] = 1.0 / std::max<int64_t>(grid_h[r] * grid_w[r], 1);
  }
  plan.sample_start.resize(num_rois * bins + 1);
  int64_t total = 0;
  for (int64_t r = 0; r < num_rois; ++r) {
    for (int64_t b = 0; b < bins; ++b) {
      plan.sample_start[r * bins + b] = total;
      total += grid_h[r] * grid_w[r];
    }
  }
  plan.sample_start[num_rois * bins] = total;
  plan.samples.resize(total);
  at::parallel_for(0, num_rois, 1, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      Sample* out = plan.samples.data() + plan.sample_start[r * bins];
      for (int64_t ph = 0; ph < pooled_h; ++ph) {
        for (int64_t pw = 0; pw < pooled_w; ++pw) {
          for (int64_t iy = 0; iy < grid_h[r]; ++iy) {
            double y = start_h[r] + ph * bin_h[r] + (iy + 0.5) * bin_h[r] / grid_h[r];
            for (int64_t ix = 0; ix < grid_w[r]; ++ix, ++out) {
              double x = start_w[r] + pw * bin_w[r] + (ix + 0.5) * bin_w[r] / grid_w[r];
              if (y < -1.0 || y > height || x < -1.0 || x > width) {
                *out = Sample{{0, 0, 0, 0}, {0, 0, 0, 0}};
                continue;
              }
              double yy = y <= 0 ? 0 : y, xx = x <= 0 ? 0 : x;
              int64_t y_low = static_cast<int64_t>(yy), x_low = static_cast<int64_t>(xx);
              int64_t y_high, x_high;
              if (y_low >= height - 1) {
                y_high = y_low = height - 1;
                yy = static_cast<double>(y_low);
              } else {
                y_high = y_low + 1;
              }
              if (x_low >= width - 1) {
                x_high = x_low = width - 1;
                xx = static_cast<double>(x_low);
              } else {
                x_high = x_low + 1;
              }
              const double ly = yy - y_low, lx = xx - x_low, hy = 1. - ly, hx = 1. - lx;
              *out = Sample{{y_low * width + x_low, y_low * width + x_high,
                             y_high * width + x_low, y_high * width + x_high},
                            {hy * hx, hy * lx, ly * hx, ly * lx}};
            }
          }
        }
      }
    }
  });
  return plan;
}

void check_inputs(const torch::Tensor& rois, int64_t pooled_h, int64_t pooled_w) {
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5,
              "RoIAlign: rois must be (R, 5) = (batch index, x1, y1, x2, y2)");
  TORCH_CHECK(pooled_h > 0 && pooled_w > 0, "RoIAlign: output size must be positive");
}

}  // namespace

// input (B, C, H, W), rois (R, 5) -> output (R, C, pooled_h, pooled_w)
torch::Tensor roi_align_forward(const torch::Tensor& input_, const torch::Tensor& rois_,
                                int64_t pooled_h, int64_t pooled_w, double spatial_scale,
                                int64_t sampling_ratio, bool aligned) {
  check_inputs(rois_, pooled_h, pooled_w);
  TORCH_CHECK(input_.dim() == 4, "RoIAlign: input must be (B, C, H, W)");
  const auto input = input_.contiguous();
  const auto rois = rois_.to(input.scalar_type()).contiguous();
  const int64_t num_rois = rois.size(0), channels = input.size(1);
  const int64_t height = input.size(2), width = input.size(3), bins = pooled_h * pooled_w;
  auto output = torch::zeros({num_rois, channels, pooled_h, pooled_w}, input.options());
  if (num_rois == 0 || channels == 0) return output;
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "roi_align_forward", [&] {
    const Plan plan = make_plan(rois.data_ptr<scalar_t>(), num_rois, height, width, pooled_h,
                                pooled_w, spatial_scale, sampling_ratio, aligned);
    const scalar_t* in = input.data_ptr<scalar_t>();
    scalar_t* out = output.data_ptr<scalar_t>();
    at::parallel_for(0, num_rois, 1, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t b = plan.batch[r];
        TORCH_CHECK(b >= 0 && b < input.size(0), "RoIAlign: batch index out of range");
        const double inv = plan.inv_count[r];
        for (int64_t c = 0; c < channels; ++c) {
          const scalar_t* plane = in + (b * channels + c) * height * width;
          scalar_t* o = out + (r * channels + c) * bins;
          for (int64_t bin = 0; bin < bins; ++bin) {
            double acc = 0;
            const int64_t s0 = plan.sample_start[r * bins + bin];
            const int64_t s1 = plan.sample_start[r * bins + bin + 1];
            for (int64_t s = s0; s < s1; ++s) {
              const Sample& p = plan.samples[s];
              acc += p.w[0] * plane[p.pos[0]] + p.w[1] * plane[p.pos[1]] +
                     p.w[2] * plane[p.pos[2]] + p.w[3] * plane[p.pos[3]];
            }
            o[bin] = static_cast<scalar_t>(acc * inv);
          }
        }
      }
    });
  });
  return output;
}

// grad_output (R, C, pooled_h, pooled_w) -> grad_input (B, C, H, W)
torch::Tensor roi_align_backward(const torch::Tensor& grad_output_, const torch::Tensor& rois_,
                                 int64_t batch, int64_t channels, int64_t height, int64_t width,
                                 int64_t pooled_h, int64_t pooled_w, double spatial_scale,
                                 int64_t sampling_ratio, bool aligned) {
  check_inputs(rois_, pooled_h, pooled_w);
  const auto grad_output = grad_output_.contiguous();
  const auto rois = rois_.to(grad_output.scalar_type()).contiguous();
  const int64_t num_rois = rois.size(0), bins = pooled_h * pooled_w;
  auto grad_input = torch::zeros({batch, channels, height, width}, grad_output.options());
  if (num_rois == 0 || channels == 0) return grad_input;
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "roi_align_backward", [&] {
    const Plan plan = make_plan(rois.data_ptr<scalar_t>(), num_rois, height, width, pooled_h,
                                pooled_w, spatial_scale, sampling_ratio, aligned);
    const scalar_t* go = grad_output.data_ptr<scalar_t>();
    scalar_t* gi = grad_input.data_ptr<scalar_t>();
    for (int64_t r = 0; r < num_rois; ++r) {
      TORCH_CHECK(plan.batch[r] >= 0 && plan.batch[r] < batch,
                  "RoIAlign: batch index out of range");
    }
    // each thread owns whole channels: its writes never overlap another thread's
    at::parallel_for(0, channels, 1, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        for (int64_t r = 0; r < num_rois; ++r) {
          scalar_t* plane = gi + (plan.batch[r] * channels + c) * height * width;
          const scalar_t* g = go + (r * channels + c) * bins;
          const double inv = plan.inv_count[r];
          for (int64_t bin = 0; bin < bins; ++bin) {
            const double gb = g[bin] * inv;
            if (gb == 0) continue;
            const int64_t s0 = plan.sample_start[r * bins + bin];
            const int64_t s1 = plan.sample_start[r * bins + bin + 1];
            for (int64_t s = s0; s < s1; ++s) {
              const Sample& p = plan.samples[s];
              plane[p.pos[0]] += static_cast<scalar_t>(gb * p.w[0]);
              plane[p.pos[1]] += static_cast<scalar_t>(gb * p.w[1]);
              plane[p.pos[2]] += static_cast<scalar_t>(gb * p.w[2]);
              plane[p.pos[3]] += static_cast<scalar_t>(gb * p.w[3]);
            }
          }
        }
      }
    });
  });
  return grad_input;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &roi_align_forward, "RoIAlign forward (CPU, parallel over RoIs)");
  m.def("backward", &roi_align_backward, "RoIAlign backward (CPU, parallel over channels)");
}
