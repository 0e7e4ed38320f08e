// Selective scan (Mamba-1 recurrence) on CPU, float32, forward and backward.
//
// "Mamba: Linear-Time Sequence Modeling with Selective State Spaces" (Gu & Dao,
// arXiv:2312.00752), with the conventions of mamba_ssm's selective_scan_fn:
//   u, delta, z: (batch, dim, L); A: (dim, N); B, C: (batch, groups, N, L); D, delta_bias: (dim)
//   dt = softplus(delta + delta_bias); h[t] = exp(dt A) h[t-1] + dt B[t] u[t]
//   y[t] = sum_n C[t, n] h[t, n] + D u[t]; out = y * silu(z)
//
// One channel (batch b, channel d) is one sequential task; tasks run in parallel through
// at::parallel_for. The sequence is processed in chunks of kChunk steps: the element-wise
// parts (softplus, exp, products) are vectorised over the chunk, the recurrence itself is a
// short serial loop. exp/log1p are evaluated by branch-free polynomial approximations (about
// 1 ulp) so that the compiler can vectorise them. The backward recomputes the states chunk by
// chunk from states saved every kChunk steps.
//
// Built ahead of time by `python -m mambaout_dense.ops.csrc.build`.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#endif

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
// One AVX2+FMA clone and a baseline one, picked at load time by the CPU.
#define SCAN_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define SCAN_CLONES
#endif

namespace {

constexpr int64_t kChunk = 64;

inline float bits_to_float(int32_t i) {
  float f;
  std::memcpy(&f, &i, sizeof(f));
  return f;
}

// exp(x), about 1 ulp, 0 below -104, inf above 88.72, NaN for NaN.
inline float exp_f(float x) {
  x = x < -104.0f ? -104.0f : x;  // the ternaries keep NaN and vectorise
  x = x > 89.0f ? 89.0f : x;
  const float t = x * 1.44269504088896341f + 12582912.0f;  // round(x / ln 2) + 1.5 * 2^23
  const float k = t - 12582912.0f;
  const float r = (x - k * 0.693359375f) + k * 2.12194440e-4f;  // Cody-Waite reduction
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t ki = static_cast<int32_t>(k);
  const int32_t k1 = ki / 2, k2 = ki - k1;  // 2^k as two factors keeps both exponents valid
  return p * bits_to_float((k1 + 127) << 23) * bits_to_float((k2 + 127) << 23);
}

// log1p(y) for y in [0, 1]: 2 atanh(y / (2 + y)), accurate for small y.
inline float log1p_unit(float y) {
  const float s = y / (2.0f + y);
  const float s2 = s * s;
  float p = 2.0f / 13.0f;
  p = p * s2 + 2.0f / 11.0f;
  p = p * s2 + 2.0f / 9.0f;
  p = p * s2 + 2.0f / 7.0f;
  p = p * s2 + 2.0f / 5.0f;
  p = p * s2 + 2.0f / 3.0f;
  p = p * s2 + 2.0f;
  return s * p;
}

// softplus with torch's threshold of 20.
inline float softplus_f(float x) {
  const float sp = std::max(x, 0.0f) + log1p_unit(exp_f(-std::fabs(x)));
  return x > 20.0f ? x : sp;
}

inline float sigmoid_f(float x) { return 1.0f / (1.0f + exp_f(-x)); }

struct Fwd {
  const float *u, *delta, *A, *B, *C, *D, *z, *bias;
  float *out, *last;
  int64_t dim, L, G, N;
  bool softplus;
};

struct Bwd {
  Fwd f;
  const float *dout, *dlast;
  float *du, *ddelta, *dz, *dA, *dD, *dbias, *dB, *dC;  // dA (b, d, N); dD, dbias (b, d)
  int64_t slabs;                                         // dB, dC: (b, G, slabs, N, L)
};

// Denormals flushed to zero inside a parallel task (decays underflow all the time, and
// arithmetic on denormals is very slow); the caller's mode is restored afterwards.
struct FlushDenormals {
#if defined(__SSE__) || defined(__x86_64__)
  unsigned int saved = _mm_getcsr();
  FlushDenormals() { _mm_setcsr(saved | 0x8040); }  // FTZ | DAZ
  ~FlushDenormals() { _mm_setcsr(saved); }
#endif
};

// Per-chunk work arrays of one channel.
struct Work {
  std::vector<float> buf;
  float *h, *raw, *dt, *x, *y, *da, *bx, *hs;
  Work() = default;
  explicit Work(int64_t N) { init(N); }
  Work(const Work&) = delete;  // the pointers point into buf
  Work& operator=(const Work&) = delete;
  void init(int64_t N) {
    buf.assign(N + 4 * kChunk + 3 * kChunk * N, 0.0f);
    h = buf.data();
    raw = h + N;
    dt = raw + kChunk;
    x = dt + kChunk;
    y = x + kChunk;
    da = y + kChunk;        // (kChunk, N): exp(dt A)
    bx = da + kChunk * N;   // (kChunk, N): dt u B
    hs = bx + kChunk * N;   // (kChunk, N): states
  }
};

inline int64_t group_of(const Fwd& a, int64_t bd) { return (bd % a.dim) / (a.dim / a.G); }

// Element-wise part of one chunk: raw delta, dt, dt*u, exp(dt A) and dt u B, laid out (i, n).
template <int NS>
inline void chunk_inputs(const Fwd& a, int64_t bd, int64_t t0, int64_t len, Work& w) {
  const int64_t N = NS > 0 ? NS : a.N;
  const int64_t L = a.L;
  const float* up = a.u + bd * L + t0;
  const float* dp = a.delta + bd * L + t0;
  const float bias = a.bias ? a.bias[bd % a.dim] : 0.0f;
  const float* Ad = a.A + (bd % a.dim) * N;
  const float* Bp = a.B + (bd / a.dim * a.G + group_of(a, bd)) * N * L + t0;
  for (int64_t i = 0; i < len; ++i) w.raw[i] = dp[i] + bias;
  if (a.softplus) {
    for (int64_t i = 0; i < len; ++i) w.dt[i] = softplus_f(w.raw[i]);
  } else {
    for (int64_t i = 0; i < len; ++i) w.dt[i] = w.raw[i];
  }
  for (int64_t i = 0; i < len; ++i) w.x[i] = w.dt[i] * up[i];
  if (N == 1) {
    const float A0 = Ad[0];
    for (int64_t i = 0; i < len; ++i) {
      w.da[i] = exp_f(w.dt[i] * A0);
      w.bx[i] = w.x[i] * Bp[i];
    }
  } else {
    for (int64_t i = 0; i < len; ++i) {
      const float dt = w.dt[i];
      for (int64_t n = 0; n < N; ++n) w.da[i * N + n] = exp_f(dt * Ad[n]);
    }
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < len; ++i) w.bx[i * N + n] = w.x[i] * Bp[n * L + i];
  }
}

// Recurrence over one chunk from the state w.h (updated); states to hs (len, N), C h to w.y.
template <int NS>
inline void chunk_scan(const Fwd& a, int64_t bd, int64_t t0, int64_t len, Work& w, float* hs) {
  const int64_t N = NS > 0 ? NS : a.N;
  const int64_t L = a.L;
  const float* Cp = a.C + (bd / a.dim * a.G + group_of(a, bd)) * N * L + t0;
  if (N == 1) {
    float h = w.h[0];
    for (int64_t i = 0; i < len; ++i) {
      h = w.da[i] * h + w.bx[i];
      hs[i] = h;
    }
    w.h[0] = h;
    for (int64_t i = 0; i < len; ++i) w.y[i] = Cp[i] * hs[i];
  } else {
    float* h = w.h;
    for (int64_t i = 0; i < len; ++i) {
      float acc = 0.0f;
      const float* da = w.da + i * N;
      const float* bx = w.bx + i * N;
      float* hsi = hs + i * N;
#pragma omp simd reduction(+ : acc)
      for (int64_t n = 0; n < N; ++n) {
        const float hn = da[n] * h[n] + bx[n];
        h[n] = hn;
        hsi[n] = hn;
        acc += Cp[n * L + i] * hn;
      }
      w.y[i] = acc;
    }
  }
}

// out = (y + D u) * silu(z) for one chunk.
inline void chunk_output(const Fwd& a, int64_t bd, int64_t t0, int64_t len, const float* y) {
  const float Dd = a.D ? a.D[bd % a.dim] : 0.0f;
  const float* up = a.u + bd * a.L + t0;
  float* op = a.out + bd * a.L + t0;
  if (a.z) {
    const float* zp = a.z + bd * a.L + t0;
    for (int64_t i = 0; i < len; ++i) op[i] = (y[i] + Dd * up[i]) * zp[i] * sigmoid_f(zp[i]);
  } else {
    for (int64_t i = 0; i < len; ++i) op[i] = y[i] + Dd * up[i];
  }
}

template <int NS>
SCAN_CLONES void forward_task(const Fwd& a, int64_t bd, Work& w) {
  const int64_t N = NS > 0 ? NS : a.N;
  std::fill(w.h, w.h + N, 0.0f);
  for (int64_t t0 = 0; t0 < a.L; t0 += kChunk) {
    const int64_t len = std::min(kChunk, a.L - t0);
    chunk_inputs<NS>(a, bd, t0, len, w);
    chunk_scan<NS>(a, bd, t0, len, w, w.hs);
    chunk_output(a, bd, t0, len, w.y);
  }
  std::copy(w.h, w.h + N, a.last + bd * N);
}

// N == 1: kLanes channels at once, so that their serial recurrences overlap in the pipeline.
constexpr int kLanes = 4;

SCAN_CLONES void forward_lanes_n1(const Fwd& a, int64_t bd0, Work* w) {
  float h[kLanes] = {};
  for (int64_t t0 = 0; t0 < a.L; t0 += kChunk) {
    const int64_t len = std::min(kChunk, a.L - t0);
    for (int c = 0; c < kLanes; ++c) chunk_inputs<1>(a, bd0 + c, t0, len, w[c]);
    for (int64_t i = 0; i < len; ++i) {
      for (int c = 0; c < kLanes; ++c) {
        h[c] = w[c].da[i] * h[c] + w[c].bx[i];
        w[c].hs[i] = h[c];
      }
    }
    for (int c = 0; c < kLanes; ++c) {
      const int64_t bd = bd0 + c;
      const float* Cp = a.C + (bd / a.dim * a.G + group_of(a, bd)) * a.L + t0;
      for (int64_t i = 0; i < len; ++i) w[c].y[i] = Cp[i] * w[c].hs[i];
      chunk_output(a, bd, t0, len, w[c].y);
    }
  }
  for (int c = 0; c < kLanes; ++c) a.last[bd0 + c] = h[c];
}

template <int NS>
SCAN_CLONES void backward_task(const Bwd& a, int64_t bd, int64_t slab, Work& w,
                               std::vector<float>& hseq, std::vector<float>& scratch) {
  const Fwd& f = a.f;
  const int64_t N = NS > 0 ? NS : f.N;
  const int64_t L = f.L, d = bd % f.dim, b = bd / f.dim;
  const int64_t g = group_of(f, bd);
  const float Dd = f.D ? f.D[d] : 0.0f;
  const float* Ad = f.A + d * N;
  // Pass 1: every state, (L, N), and y when the gate needs it.
  hseq.resize(L * N);
  scratch.resize(N + (f.z ? L : 0) + 4 * kChunk);
  float* r = scratch.data();       // (N): a[t+1] q[t+1], q being the adjoint state
  float* q = r + N;                // (kChunk), N == 1 only
  float* hprev = q + kChunk;       // (kChunk), N == 1 only
  float* dy = hprev + kChunk;      // (kChunk)
  float* ddt = dy + kChunk;        // (kChunk)
  float* yseq = ddt + kChunk;      // (L) when z
  std::fill(w.h, w.h + N, 0.0f);
  for (int64_t t0 = 0; t0 < L; t0 += kChunk) {
    const int64_t len = std::min(kChunk, L - t0);
    chunk_inputs<NS>(f, bd, t0, len, w);
    chunk_scan<NS>(f, bd, t0, len, w, hseq.data() + t0 * N);
    if (f.z) std::copy(w.y, w.y + len, yseq + t0);
  }
  // Pass 2: chunks from the last.
  std::fill(r, r + N, 0.0f);
  if (a.dlast) std::copy(a.dlast + bd * N, a.dlast + bd * N + N, r);
  float dA_acc[NS > 0 ? NS : 1] = {};
  std::vector<float> dA_dyn(NS > 0 ? 0 : N, 0.0f);
  float* dAa = NS > 0 ? dA_acc : dA_dyn.data();
  float dD_acc = 0.0f, dbias_acc = 0.0f;
  const int64_t gl = (b * f.G + g) * N * L;
  float* dBp0 = a.dB + ((b * f.G + g) * a.slabs + slab) * N * L;
  float* dCp0 = a.dC + ((b * f.G + g) * a.slabs + slab) * N * L;
  const float zero_state[NS > 0 ? NS : 1] = {};
  std::vector<float> zero_dyn(NS > 0 ? 0 : N, 0.0f);
  const float* zeros = NS > 0 ? zero_state : zero_dyn.data();
  const int64_t n_chunks = (L + kChunk - 1) / kChunk;
  for (int64_t c = n_chunks - 1; c >= 0; --c) {
    const int64_t t0 = c * kChunk, len = std::min(kChunk, L - t0);
    chunk_inputs<NS>(f, bd, t0, len, w);
    const float* hs = hseq.data() + t0 * N;
    const float* h_start = t0 > 0 ? hs - N : zeros;  // state entering the chunk
    const float* up = f.u + bd * L + t0;
    const float* dop = a.dout + bd * L + t0;
    if (f.z) {
      const float* zp = f.z + bd * L + t0;
      float* dzp = a.dz + bd * L + t0;
      for (int64_t i = 0; i < len; ++i) {
        const float s = sigmoid_f(zp[i]);
        dy[i] = dop[i] * zp[i] * s;
        dzp[i] = dop[i] * (yseq[t0 + i] + Dd * up[i]) * s * (1.0f + zp[i] * (1.0f - s));
      }
    } else {
      for (int64_t i = 0; i < len; ++i) dy[i] = dop[i];
    }
    const float* Bp = f.B + gl + t0;
    const float* Cp = f.C + gl + t0;
    float* dBp = dBp0 + t0;
    float* dCp = dCp0 + t0;
    float* du = a.du + bd * L + t0;
    if (N == 1) {
      // serial part: the adjoint recurrence only
      float rr = r[0];
      for (int64_t i = len - 1; i >= 0; --i) {
        const float qi = Cp[i] * dy[i] + rr;
        q[i] = qi;
        rr = w.da[i] * qi;
      }
      r[0] = rr;
      hprev[0] = h_start[0];
      std::copy(hs, hs + len - 1, hprev + 1);
      const float A0 = Ad[0];
      float dA0 = 0.0f;
#pragma omp simd reduction(+ : dA0)
      for (int64_t i = 0; i < len; ++i) {
        const float wv = q[i] * w.da[i] * hprev[i];  // d(dt A)
        dA0 += wv * w.dt[i];
        dCp[i] += dy[i] * hs[i];
        dBp[i] += q[i] * w.x[i];
        const float s = q[i] * Bp[i];
        ddt[i] = wv * A0 + s * up[i];
        du[i] = s * w.dt[i] + Dd * dy[i];
      }
      dAa[0] += dA0;
    } else {
      for (int64_t i = len - 1; i >= 0; --i) {
        const float* hsi = hs + i * N;
        const float* hp = i > 0 ? hs + (i - 1) * N : h_start;
        const float* da = w.da + i * N;
        const float dyi = dy[i], dti = w.dt[i], xi = w.x[i];
        float dd = 0.0f, s = 0.0f;
#pragma omp simd reduction(+ : dd, s)
        for (int64_t n = 0; n < N; ++n) {
          const float qn = Cp[n * L + i] * dyi + r[n];
          const float wv = qn * da[n] * hp[n];
          dd += wv * Ad[n];
          dAa[n] += wv * dti;
          dCp[n * L + i] += dyi * hsi[n];
          dBp[n * L + i] += qn * xi;
          s += qn * Bp[n * L + i];
          r[n] = da[n] * qn;
        }
        ddt[i] = dd + s * up[i];
        du[i] = s * dti + Dd * dyi;
      }
    }
    float* ddp = a.ddelta + bd * L + t0;
    if (f.softplus) {
      for (int64_t i = 0; i < len; ++i) ddp[i] = ddt[i] * sigmoid_f(w.raw[i]);
    } else {
      for (int64_t i = 0; i < len; ++i) ddp[i] = ddt[i];
    }
    for (int64_t i = 0; i < len; ++i) {
      dbias_acc += ddp[i];
      dD_acc += dy[i] * up[i];
    }
  }
  std::copy(dAa, dAa + N, a.dA + bd * N);
  a.dD[bd] = dD_acc;
  a.dbias[bd] = dbias_acc;
}

template <int NS>
void run_forward(const Fwd& a, int64_t tasks) {
  if (NS == 1) {
    // units of kLanes channels, then the remaining channels one by one
    const int64_t units = tasks / kLanes;
    at::parallel_for(0, units + tasks % kLanes, 1, [&](int64_t begin, int64_t end) {
      FlushDenormals flush;
      Work w[kLanes];
      for (Work& lane : w) lane.init(1);
      for (int64_t k = begin; k < end; ++k) {
        if (k < units) forward_lanes_n1(a, k * kLanes, w);
        else forward_task<1>(a, units * kLanes + (k - units), w[0]);
      }
    });
    return;
  }
  at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
    FlushDenormals flush;
    Work w(a.N);
    for (int64_t bd = begin; bd < end; ++bd) forward_task<NS>(a, bd, w);
  });
}

// Tasks are (batch, group, slab); a task runs the channels of its slab one after the other,
// accumulating dB and dC of the slab without races.
template <int NS>
void run_backward(const Bwd& a, int64_t batch) {
  const Fwd& f = a.f;
  const int64_t per_group = f.dim / f.G;
  const int64_t tasks = batch * f.G * a.slabs;
  at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
    FlushDenormals flush;
    Work w(f.N);
    std::vector<float> hseq, scratch;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t slab = task % a.slabs, bg = task / a.slabs;
      const int64_t b = bg / f.G, g = bg % f.G;
      const int64_t lo = slab * per_group / a.slabs, hi = (slab + 1) * per_group / a.slabs;
      for (int64_t k = lo; k < hi; ++k)
        backward_task<NS>(a, b * f.dim + g * per_group + k, slab, w, hseq, scratch);
    }
  });
}

const float* opt_ptr(const std::optional<at::Tensor>& t) {
  return t.has_value() ? t->data_ptr<float>() : nullptr;
}

void check(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous(), name,
              " must be a contiguous float32 CPU tensor");
}

Fwd make_fwd(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
             const at::Tensor& B, const at::Tensor& C, const std::optional<at::Tensor>& D,
             const std::optional<at::Tensor>& z, const std::optional<at::Tensor>& bias,
             bool softplus) {
  check(u, "u");
  check(delta, "delta");
  check(A, "A");
  check(B, "B");
  check(C, "C");
  if (D) check(*D, "D");
  if (z) check(*z, "z");
  if (bias) check(*bias, "delta_bias");
  Fwd a{};
  a.u = u.data_ptr<float>();
  a.delta = delta.data_ptr<float>();
  a.A = A.data_ptr<float>();
  a.B = B.data_ptr<float>();
  a.C = C.data_ptr<float>();
  a.D = opt_ptr(D);
  a.z = opt_ptr(z);
  a.bias = opt_ptr(bias);
  a.dim = u.size(1);
  a.L = u.size(2);
  a.G = B.size(1);
  a.N = A.size(1);
  a.softplus = softplus;
  return a;
}

}  // namespace

std::vector<at::Tensor> scan_fwd(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                                 const at::Tensor& B, const at::Tensor& C,
                                 const std::optional<at::Tensor>& D,
                                 const std::optional<at::Tensor>& z,
                                 const std::optional<at::Tensor>& delta_bias, bool softplus) {
  Fwd a = make_fwd(u, delta, A, B, C, D, z, delta_bias, softplus);
  auto out = at::empty_like(u);
  auto last = at::empty({u.size(0), a.dim, a.N}, u.options());
  a.out = out.data_ptr<float>();
  a.last = last.data_ptr<float>();
  const int64_t tasks = u.size(0) * a.dim;
  if (a.N == 1) run_forward<1>(a, tasks);
  else if (a.N == 16) run_forward<16>(a, tasks);
  else run_forward<0>(a, tasks);
  return {out, last};
}

// Returns du, ddelta, dA (b, d, N), dB (b, G, slabs, N, L), dC (same), dD (b, d),
// dbias (b, d), dz; the caller sums over the batch and slab axes.
std::vector<at::Tensor> scan_bwd(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                                 const at::Tensor& B, const at::Tensor& C,
                                 const std::optional<at::Tensor>& D,
                                 const std::optional<at::Tensor>& z,
                                 const std::optional<at::Tensor>& delta_bias, bool softplus,
                                 const at::Tensor& dout, const std::optional<at::Tensor>& dlast,
                                 int64_t slabs) {
  Bwd a{};
  a.f = make_fwd(u, delta, A, B, C, D, z, delta_bias, softplus);
  check(dout, "dout");
  if (dlast) check(*dlast, "dlast_state");
  const int64_t batch = u.size(0), dim = a.f.dim, N = a.f.N, G = a.f.G, L = a.f.L;
  TORCH_CHECK(slabs >= 1 && slabs <= dim / G, "slabs must be in [1, dim / groups]");
  auto du = at::empty_like(u), ddelta = at::empty_like(u);
  auto dz = z ? at::empty_like(u) : at::Tensor();
  auto dA = at::empty({batch, dim, N}, u.options());
  auto dB = at::zeros({batch, G, slabs, N, L}, u.options());
  auto dC = at::zeros({batch, G, slabs, N, L}, u.options());
  auto dD = at::empty({batch, dim}, u.options());
  auto dbias = at::empty({batch, dim}, u.options());
  a.dout = dout.data_ptr<float>();
  a.dlast = opt_ptr(dlast);
  a.du = du.data_ptr<float>();
  a.ddelta = ddelta.data_ptr<float>();
  a.dz = z ? dz.data_ptr<float>() : nullptr;
  a.dA = dA.data_ptr<float>();
  a.dD = dD.data_ptr<float>();
  a.dbias = dbias.data_ptr<float>();
  a.dB = dB.data_ptr<float>();
  a.dC = dC.data_ptr<float>();
  a.slabs = slabs;
  if (N == 1) run_backward<1>(a, batch);
  else if (N == 16) run_backward<16>(a, batch);
  else run_backward<0>(a, batch);
  return {du, ddelta, dA, dB, dC, dD, dbias, dz};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Selective scan (Mamba-1) forward and backward on CPU, float32";
  m.def("fwd", &scan_fwd, "selective scan forward");
  m.def("bwd", &scan_bwd, "selective scan backward");
}
