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
// 1 ulp) so that the compiler can vectorise them. Serial recurrences are interleaved (4 states of
// a channel, or 4 channels when N == 1) to hide their latency. The backward of a channel
// recomputes its states into a per-thread (L, N) buffer, then runs the adjoint recurrence from
// the end; denormals are flushed inside the tasks.
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

// Element-wise part of one chunk: raw delta, dt, dt*u, and exp(dt A) and dt u B laid out
// (n, i) with a stride of kChunk between states.
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
  for (int64_t n = 0; n < N; ++n) {
    const float An = Ad[n];
    float* da = w.da + n * kChunk;
    float* bx = w.bx + n * kChunk;
    const float* Bn = Bp + n * L;
    for (int64_t i = 0; i < len; ++i) {
      da[i] = exp_f(w.dt[i] * An);
      bx[i] = w.x[i] * Bn[i];
    }
  }
}

// Serial part of the recurrence for states [n0, n0 + K): K independent chains interleaved.
template <int K>
inline void chains(const float* da, const float* bx, float* h, float* hs, int64_t len) {
  float hk[K];
  for (int k = 0; k < K; ++k) hk[k] = h[k];
  for (int64_t i = 0; i < len; ++i) {
    for (int k = 0; k < K; ++k) {
      hk[k] = da[k * kChunk + i] * hk[k] + bx[k * kChunk + i];
      hs[k * kChunk + i] = hk[k];
    }
  }
  for (int k = 0; k < K; ++k) h[k] = hk[k];
}

// Recurrence over one chunk from the state w.h (updated); states to hs laid out (n, i) with a
// stride of kChunk, sum_n C h to w.y.
template <int NS>
inline void chunk_scan(const Fwd& a, int64_t bd, int64_t t0, int64_t len, Work& w, float* hs) {
  const int64_t N = NS > 0 ? NS : a.N;
  const int64_t L = a.L;
  const float* Cp = a.C + (bd / a.dim * a.G + group_of(a, bd)) * N * L + t0;
  int64_t n = 0;
  for (; n + 4 <= N; n += 4)
    chains<4>(w.da + n * kChunk, w.bx + n * kChunk, w.h + n, hs + n * kChunk, len);
  for (; n < N; ++n) chains<1>(w.da + n * kChunk, w.bx + n * kChunk, w.h + n, hs + n * kChunk, len);
  for (int64_t i = 0; i < len; ++i) w.y[i] = Cp[i] * hs[i];
  for (n = 1; n < N; ++n) {
    const float* Cn = Cp + n * L;
    const float* hn = hs + n * kChunk;
    for (int64_t i = 0; i < len; ++i) w.y[i] += Cn[i] * hn[i];
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

// Gradient of y + D u for one chunk (dy), and dz when there is a gate.
inline void chunk_dy(const Bwd& a, int64_t bd, int64_t t0, int64_t len, const float* y,
                     float* dy) {
  const Fwd& f = a.f;
  const int64_t L = f.L;
  const float* dop = a.dout + bd * L + t0;
  if (f.z) {
    const float Dd = f.D ? f.D[bd % f.dim] : 0.0f;
    const float* up = f.u + bd * L + t0;
    const float* zp = f.z + bd * L + t0;
    float* dzp = a.dz + bd * L + t0;
    for (int64_t i = 0; i < len; ++i) {
      const float s = sigmoid_f(zp[i]);
      dy[i] = dop[i] * zp[i] * s;
      dzp[i] = dop[i] * (y[i] + Dd * up[i]) * s * (1.0f + zp[i] * (1.0f - s));
    }
  } else {
    for (int64_t i = 0; i < len; ++i) dy[i] = dop[i];
  }
}

// Adjoint recurrence of states [n0, n0 + K) over one chunk, backwards, K chains interleaved:
// q[i] = C[i] dy[i] + r, r <- a[i] q[i].
template <int K>
inline void adjoint_chains(const float* C, int64_t L, const float* dy, const float* da, float* r,
                           float* q, int64_t len) {
  float rk[K];
  for (int k = 0; k < K; ++k) rk[k] = r[k];
  for (int64_t i = len - 1; i >= 0; --i) {
    for (int k = 0; k < K; ++k) {
      const float qv = C[k * L + i] * dy[i] + rk[k];
      q[k * kChunk + i] = qv;
      rk[k] = da[k * kChunk + i] * qv;
    }
  }
  for (int k = 0; k < K; ++k) r[k] = rk[k];
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
  const int64_t n_chunks = (L + kChunk - 1) / kChunk;
  // Pass 1: every state, chunk by chunk laid out (n, i), and y when the gate needs it.
  hseq.resize(n_chunks * kChunk * N);
  scratch.resize(2 * N + 3 * kChunk + 2 * kChunk * N + (f.z ? L : 0));
  float* r = scratch.data();         // (N): a[t+1] q[t+1], q being the adjoint state
  float* dAa = r + N;                // (N)
  float* dy = dAa + N;               // (kChunk)
  float* ddt = dy + kChunk;          // (kChunk)
  float* sB = ddt + kChunk;          // (kChunk): sum_n q B
  float* q = sB + kChunk;            // (N, kChunk)
  float* hprev = q + kChunk * N;     // (N, kChunk): h[t-1]
  float* yseq = hprev + kChunk * N;  // (L) when z
  std::fill(w.h, w.h + N, 0.0f);
  for (int64_t t0 = 0; t0 < L; t0 += kChunk) {
    const int64_t len = std::min(kChunk, L - t0);
    chunk_inputs<NS>(f, bd, t0, len, w);
    chunk_scan<NS>(f, bd, t0, len, w, hseq.data() + t0 * N);
    if (f.z) std::copy(w.y, w.y + len, yseq + t0);
  }
  // Pass 2: chunks from the last.
  std::fill(r, r + 2 * N, 0.0f);
  if (a.dlast) std::copy(a.dlast + bd * N, a.dlast + bd * N + N, r);
  float dD_acc = 0.0f, dbias_acc = 0.0f;
  const int64_t gl = (b * f.G + g) * N * L;
  float* dBp0 = a.dB + ((b * f.G + g) * a.slabs + slab) * N * L;
  float* dCp0 = a.dC + ((b * f.G + g) * a.slabs + slab) * N * L;
  for (int64_t c = n_chunks - 1; c >= 0; --c) {
    const int64_t t0 = c * kChunk, len = std::min(kChunk, L - t0);
    chunk_inputs<NS>(f, bd, t0, len, w);
    chunk_dy(a, bd, t0, len, yseq + t0, dy);
    const float* hs = hseq.data() + t0 * N;
    const float* up = f.u + bd * L + t0;
    const float* Bp = f.B + gl + t0;
    const float* Cp = f.C + gl + t0;
    for (int64_t n = 0; n < N; ++n) {
      float* hp = hprev + n * kChunk;
      const float* hn = hs + n * kChunk;
      hp[0] = t0 > 0 ? hn[-N * kChunk + kChunk - 1] : 0.0f;  // last state of the chunk before
      std::copy(hn, hn + len - 1, hp + 1);
    }
    int64_t n = 0;
    for (; n + 4 <= N; n += 4)
      adjoint_chains<4>(Cp + n * L, L, dy, w.da + n * kChunk, r + n, q + n * kChunk, len);
    for (; n < N; ++n)
      adjoint_chains<1>(Cp + n * L, L, dy, w.da + n * kChunk, r + n, q + n * kChunk, len);
    std::fill(ddt, ddt + len, 0.0f);
    std::fill(sB, sB + len, 0.0f);
    for (n = 0; n < N; ++n) {
      const float* qn = q + n * kChunk;
      const float* dan = w.da + n * kChunk;
      const float* hpn = hprev + n * kChunk;
      const float* hsn = hs + n * kChunk;
      const float* Bn = Bp + n * L;
      float* dBn = dBp0 + n * L + t0;
      float* dCn = dCp0 + n * L + t0;
      const float An = Ad[n];
      float dAn = 0.0f;
#pragma omp simd reduction(+ : dAn)
      for (int64_t i = 0; i < len; ++i) {
        const float wv = qn[i] * dan[i] * hpn[i];  // d(dt A)
        dAn += wv * w.dt[i];
        ddt[i] += wv * An;
        dCn[i] += dy[i] * hsn[i];
        dBn[i] += qn[i] * w.x[i];
        sB[i] += qn[i] * Bn[i];
      }
      dAa[n] += dAn;
    }
    float* du = a.du + bd * L + t0;
    for (int64_t i = 0; i < len; ++i) {
      ddt[i] += sB[i] * up[i];
      du[i] = sB[i] * w.dt[i] + Dd * dy[i];
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

// Backward for N == 1: up to kLanes channels of one slab at once, so that the serial
// recurrences (states forward, adjoint backward) of different channels overlap.
SCAN_CLONES void backward_lanes_n1(const Bwd& a, int64_t bd0, int lanes, int64_t slab, Work* w,
                                   std::vector<float>& buf) {
  const Fwd& f = a.f;
  const int64_t L = f.L, b = bd0 / f.dim;
  const int64_t g = group_of(f, bd0);
  // per lane: states (L), y (L) when z; per lane and chunk: q, h[t-1], dy, d(dt)
  const int64_t per_lane = L * (f.z ? 2 : 1) + 4 * kChunk;
  buf.resize(kLanes * per_lane);
  float *hseq[kLanes], *yseq[kLanes], *q[kLanes], *hprev[kLanes], *dy[kLanes], *ddt[kLanes];
  for (int c = 0; c < kLanes; ++c) {
    hseq[c] = buf.data() + c * per_lane;
    q[c] = hseq[c] + L;
    hprev[c] = q[c] + kChunk;
    dy[c] = hprev[c] + kChunk;
    ddt[c] = dy[c] + kChunk;
    yseq[c] = ddt[c] + kChunk;  // only used with z
  }
  const float* Bp0 = f.B + (b * f.G + g) * L;
  const float* Cp0 = f.C + (b * f.G + g) * L;
  float* dBp0 = a.dB + ((b * f.G + g) * a.slabs + slab) * L;
  float* dCp0 = a.dC + ((b * f.G + g) * a.slabs + slab) * L;
  // Pass 1: every state.
  float h[kLanes] = {};
  for (int64_t t0 = 0; t0 < L; t0 += kChunk) {
    const int64_t len = std::min(kChunk, L - t0);
    for (int c = 0; c < lanes; ++c) chunk_inputs<1>(f, bd0 + c, t0, len, w[c]);
    for (int64_t i = 0; i < len; ++i) {
      for (int c = 0; c < lanes; ++c) {
        h[c] = w[c].da[i] * h[c] + w[c].bx[i];
        hseq[c][t0 + i] = h[c];
      }
    }
    if (f.z) {
      for (int c = 0; c < lanes; ++c)
        for (int64_t i = 0; i < len; ++i) yseq[c][t0 + i] = Cp0[t0 + i] * hseq[c][t0 + i];
    }
  }
  // Pass 2: chunks from the last; r = a[t+1] q[t+1].
  float r[kLanes] = {}, dA_acc[kLanes] = {}, dD_acc[kLanes] = {}, dbias_acc[kLanes] = {};
  if (a.dlast)
    for (int c = 0; c < lanes; ++c) r[c] = a.dlast[bd0 + c];
  const int64_t n_chunks = (L + kChunk - 1) / kChunk;
  for (int64_t k = n_chunks - 1; k >= 0; --k) {
    const int64_t t0 = k * kChunk, len = std::min(kChunk, L - t0);
    const float* Bp = Bp0 + t0;
    const float* Cp = Cp0 + t0;
    for (int c = 0; c < lanes; ++c) {
      chunk_inputs<1>(f, bd0 + c, t0, len, w[c]);
      chunk_dy(a, bd0 + c, t0, len, yseq[c] + t0, dy[c]);
    }
    for (int64_t i = len - 1; i >= 0; --i) {  // the serial part: the adjoint recurrence
      for (int c = 0; c < lanes; ++c) {
        const float qi = Cp[i] * dy[c][i] + r[c];
        q[c][i] = qi;
        r[c] = w[c].da[i] * qi;
      }
    }
    float* dBp = dBp0 + t0;
    float* dCp = dCp0 + t0;
    for (int c = 0; c < lanes; ++c) {
      const int64_t bd = bd0 + c;
      const float* hs = hseq[c] + t0;
      const float* up = f.u + bd * L + t0;
      float* du = a.du + bd * L + t0;
      float* ddp = a.ddelta + bd * L + t0;
      const float A0 = f.A[bd % f.dim];
      const float Dd = f.D ? f.D[bd % f.dim] : 0.0f;
      const float *qc = q[c], *dyc = dy[c], *da = w[c].da, *dt = w[c].dt, *x = w[c].x;
      float* hp = hprev[c];
      float* dd = ddt[c];
      hp[0] = t0 > 0 ? hs[-1] : 0.0f;
      std::copy(hs, hs + len - 1, hp + 1);
      float dA0 = 0.0f, dD0 = 0.0f;
#pragma omp simd reduction(+ : dA0, dD0)
      for (int64_t i = 0; i < len; ++i) {
        const float wv = qc[i] * da[i] * hp[i];  // d(dt A)
        dA0 += wv * dt[i];
        dD0 += dyc[i] * up[i];
        dCp[i] += dyc[i] * hs[i];
        dBp[i] += qc[i] * x[i];
        const float s = qc[i] * Bp[i];
        dd[i] = wv * A0 + s * up[i];
        du[i] = s * dt[i] + Dd * dyc[i];
      }
      if (f.softplus) {
        for (int64_t i = 0; i < len; ++i) ddp[i] = dd[i] * sigmoid_f(w[c].raw[i]);
      } else {
        for (int64_t i = 0; i < len; ++i) ddp[i] = dd[i];
      }
      float db = 0.0f;
#pragma omp simd reduction(+ : db)
      for (int64_t i = 0; i < len; ++i) db += ddp[i];
      dA_acc[c] += dA0;
      dD_acc[c] += dD0;
      dbias_acc[c] += db;
    }
  }
  for (int c = 0; c < lanes; ++c) {
    a.dA[bd0 + c] = dA_acc[c];
    a.dD[bd0 + c] = dD_acc[c];
    a.dbias[bd0 + c] = dbias_acc[c];
  }
}

template <int NS>
void run_forward(const Fwd& a, int64_t tasks) {
  if constexpr (NS == 1) {
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
    Work w[kLanes];
    for (Work& lane : w) lane.init(f.N);
    std::vector<float> hseq, scratch;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t slab = task % a.slabs, bg = task / a.slabs;
      const int64_t b = bg / f.G, g = bg % f.G;
      const int64_t lo = slab * per_group / a.slabs, hi = (slab + 1) * per_group / a.slabs;
      const int64_t bd0 = b * f.dim + g * per_group;
      if constexpr (NS == 1) {
        for (int64_t k = lo; k < hi; k += kLanes)
          backward_lanes_n1(a, bd0 + k, static_cast<int>(std::min<int64_t>(kLanes, hi - k)),
                            slab, w, hseq);
      } else {
        for (int64_t k = lo; k < hi; ++k) backward_task<NS>(a, bd0 + k, slab, w[0], hseq, scratch);
      }
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
