// Selective scan (Mamba-1 recurrence) on CPU, float32, forward and backward.
//
// "Mamba: Linear-Time Sequence Modeling with Selective State Spaces" (Gu & Dao,
// arXiv:2312.00752), with the conventions of mamba_ssm's selective_scan_fn:
//   u, delta, z: (batch, dim, L); A: (dim, N); B, C: (batch, groups, N, L); D, delta_bias: (dim)
//   dt = softplus(delta + delta_bias); h[t] = exp(dt A) h[t-1] + dt B[t] u[t]
//   y[t] = sum_n C[t, n] h[t, n] + D u[t]; out = y * silu(z)
//
// Forward: explicitly vectorised with GCC/Clang vector extensions, compiled for AVX-512
// (16 lanes), AVX2 (8 lanes) and portable code in one object, the best the CPU has picked at run
// time (set_isa picks a lower one, for the tests). exp, softplus and sigmoid are branch-free
// polynomials (about 1 ulp) evaluated lane-wise.
//   - N == 1 (VMamba-T): a vector holds W consecutive steps of one channel; everything is
//     lane-wise except the recurrence, which is a log2(W)-step scan inside the vector
//     (h[i] = a[i] h[i-1] + b[i] composed pairwise) plus one multiply-add with the carried state.
//     Tasks are channels.
//   - N > 1: a vector holds W states of one channel, so that one step updates W states at once;
//     B and C of a group are transposed chunk by chunk to (step, state) rows shared by the
//     channels of the group. Tasks are blocks of channels of one (batch, group).
// Backward: one channel (or 4 channels when N == 1, interleaved to hide the latency of their
// serial recurrences) recomputes its states (N == 1: with the vectorised forward), then runs the
// adjoint recurrence from the end, the element-wise parts auto-vectorised over chunks of kChunk
// steps (target_clones: AVX-512, AVX2 and baseline). Tasks are (batch, group, slab) so that dB
// and dC accumulate without races.
// Tasks run in parallel through at::parallel_for; denormals are flushed inside the tasks.
//
// Built ahead of time by `python -m mambaout_dense.ops.csrc.build`.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#endif

// Vector-typed helpers are always inlined, so the ABI of vector arguments does not matter.
#pragma GCC diagnostic ignored "-Wpsabi"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
// AVX-512, AVX2+FMA and baseline clones, picked at load time by the CPU.
#define SCAN_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
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

// N == 1: kLanes channels at once, so that their serial recurrences overlap in the pipeline.
constexpr int kLanes = 4;

// The states of channel bd (N == 1) to hs (L), and C h to ys (L) when there is a gate: the
// vectorised forward, defined below.
void states_n1(const Fwd& a, int64_t bd, float* hs, float* ys);

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
  // Pass 1: every state (and C h when there is a gate), by the vectorised forward.
  for (int c = 0; c < lanes; ++c) states_n1(f, bd0 + c, hseq[c], yseq[c]);
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

// ---------------------------------------------------------------------------------------------
// Explicitly vectorised forward.
//
// GCC/Clang vector extensions: a vector of W floats is one register (W = 16 with AVX-512, 8 with
// AVX2) or a few narrower ones (the portable build); the same template is compiled once per
// instruction set below (functions with a `target` attribute) and picked at run time.
// ---------------------------------------------------------------------------------------------

#define SCAN_INLINE __attribute__((always_inline)) inline

template <int W>
struct Vec {
  typedef float f __attribute__((vector_size(4 * W)));
  typedef int32_t i __attribute__((vector_size(4 * W)));
};

template <int W>
SCAN_INLINE typename Vec<W>::f vload(const float* p) {
  typename Vec<W>::f v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <int W>
SCAN_INLINE void vstore(float* p, typename Vec<W>::f v) {
  std::memcpy(p, &v, sizeof(v));
}

template <int W>
SCAN_INLINE typename Vec<W>::f vbcast(float s) {
  typename Vec<W>::f v;
  for (int k = 0; k < W; ++k) v[k] = s;  // (not {} + s: 0 + -0 is +0)
  return v;
}

// Lanes [0, len) of p, zeros beyond (len <= W): the tail of a row.
template <int W>
SCAN_INLINE typename Vec<W>::f vload_part(const float* p, int64_t len) {
  float buf[W] = {};
  std::memcpy(buf, p, sizeof(float) * len);
  return vload<W>(buf);
}

template <int W>
SCAN_INLINE void vstore_part(float* p, typename Vec<W>::f v, int64_t len) {
  float buf[W];
  vstore<W>(buf, v);
  std::memcpy(p, buf, sizeof(float) * len);
}

template <int W>
SCAN_INLINE typename Vec<W>::f vselect_lt(typename Vec<W>::f a, typename Vec<W>::f b,
                                          typename Vec<W>::f x, typename Vec<W>::f y) {
  return a < b ? x : y;  // lane-wise (a < b) ? x : y; false for NaN
}

// exp(x) lane-wise, Cephes' polynomial (about 1 ulp); 0 below -87.3 (where the result would be
// denormal or smaller), NaN for NaN, finite up to 88.7 (the clamps keep NaN). kNonPositive: x is
// known to be <= 0 or NaN, the upper clamp is skipped.
template <int W, bool kNonPositive = false>
SCAN_INLINE typename Vec<W>::f vexp(typename Vec<W>::f x) {
  typedef typename Vec<W>::f vf;
  typedef typename Vec<W>::i vi;
  const vf lo = vbcast<W>(-87.33654f);
  x = vselect_lt<W>(x, lo, lo, x);
  if constexpr (!kNonPositive) {
    const vf hi = vbcast<W>(88.7f);
    x = vselect_lt<W>(hi, x, hi, x);
  }
  const vf t = x * 1.44269504088896341f + 12582912.0f;  // round(x / ln 2) + 1.5 * 2^23
  const vf k = t - 12582912.0f;
  const vf r = (x - k * 0.693359375f) + k * 2.12194440e-4f;  // Cody-Waite reduction
  vf p = r * 1.9875691500e-4f + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  // 2^(k - 1) from the low bits of t (k in [-126, 128]: always a valid exponent), times 2 p
  const vi bits = ((vi)t + (126 - 0x4B400000)) << 23;
  return (p + p) * (vf)bits;
}

// softplus(x) = max(x, 0) + log1p(exp(-|x|)), the log1p of y in (0, 1] as 2 atanh(y / (2 + y)).
// Equal to torch's softplus (threshold 20) in float32: above 20 the log1p term is below 2.1e-9,
// under half an ulp of x.
template <int W>
SCAN_INLINE typename Vec<W>::f vsoftplus(typename Vec<W>::f x) {
  typedef typename Vec<W>::f vf;
  typedef typename Vec<W>::i vi;
  const vf zero = vf{};
  const vf y = vexp<W, true>((vf)((vi)x | (vi{} + INT32_MIN)));  // exp(-|x|): sign bit set
  const vf s = y / (y + 2.0f);
  const vf s2 = s * s;
  vf p = s2 * (2.0f / 13.0f) + 2.0f / 11.0f;
  p = p * s2 + 2.0f / 9.0f;
  p = p * s2 + 2.0f / 7.0f;
  p = p * s2 + 2.0f / 5.0f;
  p = p * s2 + 2.0f / 3.0f;
  p = p * s2 + 2.0f;
  return vselect_lt<W>(zero, x, x, zero) + s * p;
}

template <int W>
SCAN_INLINE typename Vec<W>::f vsigmoid(typename Vec<W>::f x) {
  return 1.0f / (vexp<W>(-x) + 1.0f);
}

// Lanes shifted up by S, the S lowest lanes set to fill: out[i] = i < S ? fill : a[i - S].
template <int W, int S, int... I>
SCAN_INLINE typename Vec<W>::f vshift_up_impl(typename Vec<W>::f a, float fill,
                                              std::integer_sequence<int, I...>) {
  return __builtin_shufflevector(vbcast<W>(fill), a, (I < S ? I : W + I - S)...);
}

template <int W, int S>
SCAN_INLINE typename Vec<W>::f vshift_up(typename Vec<W>::f a, float fill) {
  return vshift_up_impl<W, S>(a, fill, std::make_integer_sequence<int, W>{});
}

template <int W, int... I>
SCAN_INLINE typename Vec<W>::f vlast_impl(typename Vec<W>::f a, std::integer_sequence<int, I...>) {
  return __builtin_shufflevector(a, a, (I - I + W - 1)...);
}

// The lane `lane` of a in every lane (a compile-time shuffle for the last lane).
template <int W>
SCAN_INLINE typename Vec<W>::f vlane(typename Vec<W>::f a, int64_t lane) {
  if (lane == W - 1) return vlast_impl<W>(a, std::make_integer_sequence<int, W>{});
  return vbcast<W>(a[lane]);
}

// Sum of the lanes: halves added down to 4 lanes.
template <int W, int... I>
SCAN_INLINE float vsum_impl(typename Vec<W>::f a, std::integer_sequence<int, I...>) {
  if constexpr (W == 4) {
    return (a[0] + a[2]) + (a[1] + a[3]);
  } else {
    const typename Vec<W / 2>::f lo = __builtin_shufflevector(a, a, I...);
    const typename Vec<W / 2>::f hi = __builtin_shufflevector(a, a, (I + W / 2)...);
    return vsum_impl<W / 2>(lo + hi, std::make_integer_sequence<int, W / 4>{});
  }
}

template <int W>
SCAN_INLINE float vsum(typename Vec<W>::f a) {
  static_assert(W >= 4, "vsum needs at least 4 lanes");
  return vsum_impl<W>(a, std::make_integer_sequence<int, W / 2>{});
}

// Inclusive scan of h[i] = a[i] h[i-1] + b[i] inside one vector (Hillis-Steele): on return
// a[i] = prod_{j <= i} a[j] and b[i] = the state at i from a zero start, so that
// h[i] = a[i] h_before + b[i].
template <int W>
SCAN_INLINE void vscan(typename Vec<W>::f& a, typename Vec<W>::f& b) {
  if constexpr (W > 1) { b = a * vshift_up<W, 1>(b, 0.0f) + b; a = a * vshift_up<W, 1>(a, 1.0f); }
  if constexpr (W > 2) { b = a * vshift_up<W, 2>(b, 0.0f) + b; a = a * vshift_up<W, 2>(a, 1.0f); }
  if constexpr (W > 4) { b = a * vshift_up<W, 4>(b, 0.0f) + b; a = a * vshift_up<W, 4>(a, 1.0f); }
  if constexpr (W > 8) { b = a * vshift_up<W, 8>(b, 0.0f) + b; a = a * vshift_up<W, 8>(a, 1.0f); }
  static_assert(W <= 16, "vscan handles up to 16 lanes");
}

// W steps of one channel with N == 1 from the state h (every lane; updated to the state after
// step len - 1): returns (C h + D u) * silu(z) of the steps, or with kStates the states h.
template <int W, bool kStates>
SCAN_INLINE typename Vec<W>::f step_n1(const Fwd& a, typename Vec<W>::f delta,
                                       typename Vec<W>::f u, typename Vec<W>::f B,
                                       typename Vec<W>::f C, typename Vec<W>::f z,
                                       typename Vec<W>::f bias, typename Vec<W>::f A,
                                       typename Vec<W>::f D, int64_t len,
                                       typename Vec<W>::f& h) {
  typedef typename Vec<W>::f vf;
  vf dt = delta + bias;
  if (a.softplus) dt = vsoftplus<W>(dt);
  vf da = vexp<W>(dt * A), hx = dt * u * B;
  vscan<W>(da, hx);
  const vf hs = da * h + hx;  // (W,): the states of these steps
  h = vlane<W>(hs, len - 1);
  if constexpr (kStates) return hs;
  vf y = C * hs + D * u;
  if (a.z) y = y * z * vsigmoid<W>(z);
  return y;
}

// N == 1, one channel: W steps per vector. The element-wise parts (softplus, exp, products) are
// lane-wise; the recurrence inside the vector is a log2(W)-step scan, and only the carried state
// (one broadcast and one multiply-add per W steps) is serial.
//
// kStates (the backward's recomputation): the states go to hs (L) and, when there is a gate,
// C h to ys (L), instead of the output.
template <int W, bool kStates = false>
SCAN_INLINE void forward_n1_channel(const Fwd& a, int64_t bd, float* hs = nullptr,
                                    float* ys = nullptr) {
  typedef typename Vec<W>::f vf;
  const int64_t L = a.L, d = bd % a.dim;
  const int64_t bg = (bd / a.dim) * a.G + group_of(a, bd);
  const float *up = a.u + bd * L, *dp = a.delta + bd * L;
  const float *Bp = a.B + bg * L, *Cp = a.C + bg * L;  // (b, g, 1, L)
  const float* zp = a.z ? a.z + bd * L : nullptr;
  float* op = kStates ? hs : a.out + bd * L;
  const vf bias = vbcast<W>(a.bias ? a.bias[d] : 0.0f);
  const vf Av = vbcast<W>(a.A[d]), Dv = vbcast<W>(a.D ? a.D[d] : 0.0f);
  vf h = vf{};  // the state before the current vector, in every lane
  int64_t t = 0;
  for (; t + W <= L; t += W) {
    const vf z = (zp && !kStates) ? vload<W>(zp + t) : vf{};
    const vf C = vload<W>(Cp + t);
    const vf v = step_n1<W, kStates>(a, vload<W>(dp + t), vload<W>(up + t), vload<W>(Bp + t), C,
                                     z, bias, Av, Dv, W, h);
    vstore<W>(op + t, v);
    if (kStates && zp) vstore<W>(ys + t, C * v);
  }
  if (t < L) {  // tail: zero-padded lanes come after the valid ones and do not reach them
    const int64_t len = L - t;
    const vf z = (zp && !kStates) ? vload_part<W>(zp + t, len) : vf{};
    const vf C = vload_part<W>(Cp + t, len);
    const vf v = step_n1<W, kStates>(a, vload_part<W>(dp + t, len), vload_part<W>(up + t, len),
                                     vload_part<W>(Bp + t, len), C, z, bias, Av, Dv, len, h);
    vstore_part<W>(op + t, v, len);
    if (kStates && zp) vstore_part<W>(ys + t, C * v, len);
  }
  if (!kStates) a.last[bd] = h[0];
}

// Any N, the channels [c0, c1) of group g of batch b: the states of a channel are NV vectors of W
// lanes (NV == 0: nv vectors kept in memory), so that one step updates W states at once. B and C
// of the group are transposed chunk by chunk to (step, state) rows of NP = nv W floats (zero
// padding: A 0, B 0, C 0 keeps the padded states at 0), shared by the channels.
constexpr int64_t kStateChunk = 256;

template <int W, int NV>
SCAN_INLINE void forward_states_block(const Fwd& a, int64_t b, int64_t g, int64_t c0, int64_t c1,
                                      float* work) {
  typedef typename Vec<W>::f vf;
  const int64_t N = a.N, L = a.L, per_group = a.dim / a.G;
  const int64_t nv = NV > 0 ? NV : (N + W - 1) / W, NP = nv * W, T = kStateChunk;
  float* Bt = work;                  // (T, NP)
  float* Ct = Bt + T * NP;           // (T, NP)
  float* hbuf = Ct + T * NP;         // (c1 - c0, NP): carried states
  float* Ap = hbuf + (c1 - c0) * NP;  // (NP): A of the channel, padded
  float* dt = Ap + NP;               // (T)
  float* x = dt + T;                 // (T): dt u
  float* y = x + T;                  // (T)
  std::fill(work, y + T, 0.0f);
  const float* Bg = a.B + (b * a.G + g) * N * L;  // (N, L)
  const float* Cg = a.C + (b * a.G + g) * N * L;
  for (int64_t t0 = 0; t0 < L; t0 += T) {
    const int64_t len = std::min(T, L - t0);
    // (N, L) -> (step, state) rows of NP
    for (int64_t n = 0; n < N; ++n) {
      const float *Bn = Bg + n * L + t0, *Cn = Cg + n * L + t0;
      for (int64_t i = 0; i < len; ++i) {
        Bt[i * NP + n] = Bn[i];
        Ct[i * NP + n] = Cn[i];
      }
    }
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t d = g * per_group + c, bd = b * a.dim + d;
      const float *up = a.u + bd * L + t0, *dp = a.delta + bd * L + t0;
      const float bias = a.bias ? a.bias[d] : 0.0f;
      // element-wise along L: dt and dt u
      int64_t i = 0;
      for (; i + W <= len; i += W) {
        vf v = vload<W>(dp + i) + bias;
        if (a.softplus) v = vsoftplus<W>(v);
        vstore<W>(dt + i, v);
        vstore<W>(x + i, v * vload<W>(up + i));
      }
      if (i < len) {
        vf v = vload_part<W>(dp + i, len - i) + bias;
        if (a.softplus) v = vsoftplus<W>(v);
        vstore<W>(dt + i, v);
        vstore<W>(x + i, v * vload_part<W>(up + i, len - i));
      }
      // the recurrence, W states per vector
      std::copy(a.A + d * N, a.A + d * N + N, Ap);
      float* hc = hbuf + (c - c0) * NP;
      if constexpr (NV > 0) {
        vf A[NV], h[NV];
        for (int k = 0; k < NV; ++k) {
          A[k] = vload<W>(Ap + k * W);
          h[k] = vload<W>(hc + k * W);
        }
        for (int64_t s = 0; s < len; ++s) {
          const vf dts = vbcast<W>(dt[s]), xs = vbcast<W>(x[s]);
          const float *Bs = Bt + s * NP, *Cs = Ct + s * NP;
          vf acc = vf{};
          for (int k = 0; k < NV; ++k) {
            h[k] = vexp<W>(dts * A[k]) * h[k] + xs * vload<W>(Bs + k * W);
            acc += vload<W>(Cs + k * W) * h[k];
          }
          y[s] = vsum<W>(acc);
        }
        for (int k = 0; k < NV; ++k) vstore<W>(hc + k * W, h[k]);
      } else {
        for (int64_t s = 0; s < len; ++s) {
          const vf dts = vbcast<W>(dt[s]), xs = vbcast<W>(x[s]);
          const float *Bs = Bt + s * NP, *Cs = Ct + s * NP;
          vf acc = vf{};
          for (int64_t k = 0; k < nv; ++k) {
            const vf hk = vexp<W>(dts * vload<W>(Ap + k * W)) * vload<W>(hc + k * W) +
                          xs * vload<W>(Bs + k * W);
            vstore<W>(hc + k * W, hk);
            acc += vload<W>(Cs + k * W) * hk;
          }
          y[s] = vsum<W>(acc);
        }
      }
      // out = (y + D u) * silu(z), along L
      const float Dd = a.D ? a.D[d] : 0.0f;
      const float* zp = a.z ? a.z + bd * L + t0 : nullptr;
      float* op = a.out + bd * L + t0;
      for (i = 0; i < len; i += W) {
        const int64_t n = std::min<int64_t>(W, len - i);
        vf v = vload<W>(y + i) + Dd * vload_part<W>(up + i, n);
        if (zp) {
          const vf z = vload_part<W>(zp + i, n);
          v = v * z * vsigmoid<W>(z);
        }
        vstore_part<W>(op + i, v, n);
      }
    }
  }
  for (int64_t c = c0; c < c1; ++c) {
    const int64_t bd = b * a.dim + g * per_group + c;
    std::copy(hbuf + (c - c0) * NP, hbuf + (c - c0) * NP + N, a.last + bd * N);
  }
}

// Floats of work memory of forward_states_block.
inline int64_t states_work_size(int64_t W, int64_t N, int64_t channels) {
  const int64_t NP = (N + W - 1) / W * W;
  return 2 * kStateChunk * NP + channels * NP + NP + 3 * kStateChunk + W;
}

// Forward tasks: channels [begin, end) of batch * dim for N == 1; (b, g, block) otherwise.
struct FwdPlan {
  int64_t blocks;  // channel blocks per group (N > 1)
};

template <int W>
SCAN_INLINE void forward_range(const Fwd& a, const FwdPlan& plan, int64_t begin, int64_t end) {
  FlushDenormals flush;
  if (a.N == 1) {
    for (int64_t bd = begin; bd < end; ++bd) forward_n1_channel<W>(a, bd);
    return;
  }
  const int64_t per_group = a.dim / a.G, nv = (a.N + W - 1) / W;
  std::vector<float> work;
  for (int64_t task = begin; task < end; ++task) {
    const int64_t blk = task % plan.blocks, bg = task / plan.blocks;
    const int64_t c0 = blk * per_group / plan.blocks, c1 = (blk + 1) * per_group / plan.blocks;
    if (c1 <= c0) continue;
    work.resize(states_work_size(W, a.N, c1 - c0) + 64);
    // 64-byte aligned work rows
    float* w = work.data() + ((64 - reinterpret_cast<uintptr_t>(work.data()) % 64) % 64) / 4;
    const int64_t b = bg / a.G, g = bg % a.G;
    if (nv == 1) forward_states_block<W, 1>(a, b, g, c0, c1, w);
    else if (nv == 2) forward_states_block<W, 2>(a, b, g, c0, c1, w);
    else forward_states_block<W, 0>(a, b, g, c0, c1, w);
  }
}

#if defined(__GNUC__) && defined(__x86_64__)
#define SCAN_X86 1
__attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,f16c,bmi,bmi2,lzcnt,popcnt")))
void forward_range_avx512(const Fwd& a, const FwdPlan& plan, int64_t begin, int64_t end) {
  forward_range<16>(a, plan, begin, end);
}

__attribute__((target("avx2,fma,f16c,bmi,bmi2,lzcnt,popcnt")))
void forward_range_avx2(const Fwd& a, const FwdPlan& plan, int64_t begin, int64_t end) {
  forward_range<8>(a, plan, begin, end);
}

__attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,f16c,bmi,bmi2,lzcnt,popcnt")))
void states_n1_avx512(const Fwd& a, int64_t bd, float* hs, float* ys) {
  forward_n1_channel<16, true>(a, bd, hs, ys);
}

__attribute__((target("avx2,fma,f16c,bmi,bmi2,lzcnt,popcnt")))
void states_n1_avx2(const Fwd& a, int64_t bd, float* hs, float* ys) {
  forward_n1_channel<8, true>(a, bd, hs, ys);
}
#else
#define SCAN_X86 0
#endif

void forward_range_portable(const Fwd& a, const FwdPlan& plan, int64_t begin, int64_t end) {
  forward_range<8>(a, plan, begin, end);
}

// Instruction sets of the forward, best first; the best one the CPU has is used, or the one
// set by set_isa (the tests run each).
enum Isa : int { kAvx512 = 0, kAvx2 = 1, kPortable = 2 };
const char* const kIsaNames[] = {"avx512", "avx2", "portable"};

bool cpu_has(Isa isa) {
#if SCAN_X86
  if (isa == kAvx512)
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (isa == kAvx2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  return isa == kPortable;
}

int& isa_choice() {
  static int isa = cpu_has(kAvx512) ? kAvx512 : (cpu_has(kAvx2) ? kAvx2 : kPortable);
  return isa;
}

void states_n1(const Fwd& a, int64_t bd, float* hs, float* ys) {
#if SCAN_X86
  if (isa_choice() == kAvx512) return states_n1_avx512(a, bd, hs, ys);
  if (isa_choice() == kAvx2) return states_n1_avx2(a, bd, hs, ys);
#endif
  forward_n1_channel<8, true>(a, bd, hs, ys);
}

void run_forward(const Fwd& a, int64_t batch) {
  FwdPlan plan{1};
  int64_t tasks = batch * a.dim;
  if (a.N > 1) {
    // (batch, group, block) tasks, at least 4 per thread when the channels allow
    const int64_t per_group = a.dim / a.G, groups = batch * a.G;
    const int64_t want = 4 * at::get_num_threads();
    plan.blocks = std::max<int64_t>(1, std::min<int64_t>(per_group, (want + groups - 1) / groups));
    tasks = groups * plan.blocks;
  }
  const int isa = isa_choice();
  at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
#if SCAN_X86
    if (isa == kAvx512) return forward_range_avx512(a, plan, begin, end);
    if (isa == kAvx2) return forward_range_avx2(a, plan, begin, end);
#endif
    forward_range_portable(a, plan, begin, end);
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
  run_forward(a, u.size(0));
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

// The instruction set of the forward, and a way to pick a lower one (for tests).
std::string isa_name() { return kIsaNames[isa_choice()]; }

void set_isa(const std::string& name) {
  for (int isa = kAvx512; isa <= kPortable; ++isa) {
    if (name == kIsaNames[isa]) {
      TORCH_CHECK(cpu_has(static_cast<Isa>(isa)), "this CPU has no ", name);
      isa_choice() = isa;
      return;
    }
  }
  TORCH_CHECK(false, "unknown instruction set ", name, " (avx512, avx2 or portable)");
}

std::vector<std::string> isas() {
  std::vector<std::string> out;
  for (int isa = kAvx512; isa <= kPortable; ++isa)
    if (cpu_has(static_cast<Isa>(isa))) out.push_back(kIsaNames[isa]);
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Selective scan (Mamba-1) forward and backward on CPU, float32";
  m.def("fwd", &scan_fwd, "selective scan forward");
  m.def("bwd", &scan_bwd, "selective scan backward");
  m.def("isa", &isa_name, "instruction set used by the forward");
  m.def("isas", &isas, "instruction sets this CPU can run, best first");
  m.def("set_isa", &set_isa, "use this instruction set for the forward");
}
