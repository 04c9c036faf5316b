#include "media/audio-mel.h"

#include "common.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace om {

namespace {

constexpr double k_pi = 3.14159265358979323846;

struct cpx {
    double re, im;
};

inline cpx operator+(cpx a, cpx b) { return {a.re + b.re, a.im + b.im}; }
// Written out because std::complex's operator* calls a NaN-recovering runtime helper unless compiled
// with fast-math, which would dominate the cost of the transform.
inline cpx operator*(cpx a, cpx b) { return {a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re}; }

// A mixed-radix decimation-in-time DFT for sizes made of the factors 2, 3, 4 and 5 (400 = 4·4·5·5), with
// its twiddles precomputed once. Radix-p butterflies are done generically (p² products per group), which
// at these radices costs about n·Σp products per transform: ~7k for n = 400, against 160k for a direct DFT.
class fft_plan {
public:
    explicit fft_plan(int32_t n) : n_(n), twiddle_(size_t(n)) {
        for (int32_t rest = n; rest > 1;) {
            int32_t p = 0;
            for (int32_t f : {4, 2, 3, 5}) {
                if (rest % f == 0) {
                    p = f;
                    break;
                }
            }
            if (p == 0) {
                fail(OM_STATUS_INTERNAL, "FFT size %d has a prime factor above 5", n);
            }
            factors_.push_back(p);
            rest /= p;
        }
        for (int32_t j = 0; j < n; ++j) {
            const double a = -2.0 * k_pi * j / n;
            twiddle_[size_t(j)] = {std::cos(a), std::sin(a)};
        }
    }

    // out[k] = Σ_j in[j]·e^{-2πi·jk/n}.
    void forward(const cpx * in, cpx * out) const { run(in, 1, out, n_, 0); }

private:
    static constexpr int32_t k_max_radix = 5;

    // The DFT of the n inputs in[0], in[stride], … into out[0..n): split into p interleaved sub-sequences,
    // transform each into its own block of out, then combine the blocks in place.
    void run(const cpx * in, int64_t stride, cpx * out, int32_t n, size_t level) const {
        if (n == 1) {
            out[0] = in[0];
            return;
        }
        const int32_t p = factors_[level];
        const int32_t m = n / p;
        for (int32_t q = 0; q < p; ++q) {
            run(in + q * stride, stride * p, out + q * m, m, level + 1);
        }
        const int32_t step = n_ / n;  // twiddle table index of e^{-2πi/n}
        cpx sub[k_max_radix];
        for (int32_t k = 0; k < m; ++k) {
            for (int32_t q = 0; q < p; ++q) {
                sub[q] = out[q * m + k];
            }
            for (int32_t r = 0; r < p; ++r) {
                const int32_t kk = k + r * m;
                cpx s = sub[0];
                for (int32_t q = 1; q < p; ++q) {
                    s = s + sub[q] * twiddle_[size_t((q * kk) % n * step)];
                }
                out[kk] = s;
            }
        }
    }

    int32_t n_;
    std::vector<int32_t> factors_;
    std::vector<cpx> twiddle_;
};

// The Slaney mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above (27 mels per factor 6.4).
double hz_to_mel(double hz) {
    return hz < 1000.0 ? 3.0 * hz / 200.0 : 15.0 + std::log(hz / 1000.0) * (27.0 / std::log(6.4));
}

double mel_to_hz(double mel) {
    return mel < 15.0 ? 200.0 * mel / 3.0 : 1000.0 * std::exp((std::log(6.4) / 27.0) * (mel - 15.0));
}

// One mel filter as the span of bins where it is non-zero; most of the 201 weights of each row are zero.
struct mel_band {
    int32_t first = 0;
    std::vector<double> weights;
};

std::vector<mel_band> mel_bands(int32_t n_mel) {
    const std::vector<double> bank = mel_filterbank(n_mel);
    std::vector<mel_band> bands(static_cast<size_t>(n_mel));
    for (int32_t m = 0; m < n_mel; ++m) {
        const double * row = bank.data() + size_t(m) * k_mel_n_bins;
        int32_t lo = 0;
        int32_t hi = k_mel_n_bins;
        while (lo < hi && row[lo] == 0.0) {
            ++lo;
        }
        while (hi > lo && row[hi - 1] == 0.0) {
            --hi;
        }
        bands[size_t(m)].first = lo;
        bands[size_t(m)].weights.assign(row + lo, row + hi);
    }
    return bands;
}

// The periodic Hann window (the DFT-even one, as torch.hann_window gives by default).
std::vector<double> hann_window() {
    std::vector<double> w(k_mel_n_fft);
    for (int32_t i = 0; i < k_mel_n_fft; ++i) {
        w[size_t(i)] = 0.5 - 0.5 * std::cos(2.0 * k_pi * i / k_mel_n_fft);
    }
    return w;
}

// Sample i of the signal the STFT frames: the clip, reflected about sample 0 on the left (centred frames
// with reflect padding), and followed by the processor's zero padding on the right.
inline double padded_sample(const float * pcm, int64_t n_samples, int64_t i) {
    if (i < 0) {
        i = -i;
    }
    return i < n_samples ? double(pcm[i]) : 0.0;
}

} // namespace

int64_t log_mel_n_frames(int64_t n_samples) { return (n_samples + k_mel_hop - 1) / k_mel_hop; }

void check_n_mel(int32_t n_mel) {
    if (n_mel < 1 || n_mel > k_mel_max_mel) {
        fail(OM_STATUS_INVALID_ARGUMENT, "n_mel must be in [1, %d], got %d", k_mel_max_mel, n_mel);
    }
}

std::vector<double> mel_filterbank(int32_t n_mel) {
    check_n_mel(n_mel);
    // Band edges equally spaced in mel between 0 Hz and the Nyquist frequency; filter m rises from edge m
    // to edge m+1 and falls to edge m+2, scaled by 2 / (its width in Hz) so each filter has equal area.
    const double mel_hi = hz_to_mel(k_mel_sample_rate / 2.0);
    std::vector<double> edge(size_t(n_mel) + 2);
    const double step = mel_hi / double(n_mel + 1);
    for (int32_t i = 0; i < n_mel + 2; ++i) {
        edge[size_t(i)] = mel_to_hz(i == n_mel + 1 ? mel_hi : i * step);
    }
    const double bin_hz = double(k_mel_sample_rate / 2) / double(k_mel_n_bins - 1);
    std::vector<double> bank(size_t(n_mel) * k_mel_n_bins);
    for (int32_t m = 0; m < n_mel; ++m) {
        const double lo = edge[size_t(m)];
        const double mid = edge[size_t(m) + 1];
        const double hi = edge[size_t(m) + 2];
        const double area_norm = 2.0 / (hi - lo);
        for (int32_t k = 0; k < k_mel_n_bins; ++k) {
            const double f = k * bin_hz;
            const double rise = (f - lo) / (mid - lo);
            const double fall = (hi - f) / (hi - mid);
            bank[size_t(m) * k_mel_n_bins + size_t(k)] = std::max(0.0, std::min(rise, fall)) * area_norm;
        }
    }
    return bank;
}

void log_mel(const float * pcm, int64_t n_samples, int32_t n_mel, float * out) {
    if (n_samples <= 0) {
        fail(OM_STATUS_INVALID_ARGUMENT, "the audio is empty (%lld samples)", (long long) n_samples);
    }
    for (int64_t i = 0; i < n_samples; ++i) {
        if (!std::isfinite(pcm[i])) {
            fail(OM_STATUS_INVALID_ARGUMENT, "audio sample %lld is %f; PCM must be finite", (long long) i,
                 double(pcm[i]));
        }
    }
    static const fft_plan fft(k_mel_n_fft);
    static const std::vector<double> window = hann_window();
    const std::vector<mel_band> bands = mel_bands(n_mel);

    const int64_t n_out = log_mel_n_frames(n_samples);
    // Frames past the valid ones still see the clip's last samples; the processor computes them on its
    // padded buffer and their maximum counts towards its dynamic-range floor. Later frames see only zeros
    // (log10 of the 1e-10 floor = -10, never above the maximum).
    const int64_t n_seen = (n_samples + k_mel_n_fft / 2 + k_mel_hop - 1) / k_mel_hop;

    // Two real frames per complex transform: frame a in the real part, frame b in the imaginary part, and
    // the two spectra separated by the conjugate symmetry of real signals' transforms.
    std::vector<cpx> z(k_mel_n_fft);
    std::vector<cpx> spec(k_mel_n_fft);
    std::vector<double> power[2] = {std::vector<double>(k_mel_n_bins), std::vector<double>(k_mel_n_bins)};
    double max_log = -std::numeric_limits<double>::infinity();
    for (int64_t t0 = 0; t0 < n_seen; t0 += 2) {
        const int64_t start_a = t0 * k_mel_hop - k_mel_n_fft / 2;
        const bool has_b = t0 + 1 < n_seen;
        for (int32_t j = 0; j < k_mel_n_fft; ++j) {
            const double w = window[size_t(j)];
            z[size_t(j)].re = w * padded_sample(pcm, n_samples, start_a + j);
            z[size_t(j)].im = has_b ? w * padded_sample(pcm, n_samples, start_a + k_mel_hop + j) : 0.0;
        }
        fft.forward(z.data(), spec.data());
        for (int32_t k = 0; k < k_mel_n_bins; ++k) {
            const cpx x = spec[size_t(k)];
            const cpx y = spec[size_t((k_mel_n_fft - k) % k_mel_n_fft)];  // the mirror bin N-k
            const double are = x.re + y.re, aim = x.im - y.im;        // 2·(frame a spectrum) = x + conj(y)
            const double bre = x.im + y.im, bim = y.re - x.re;        // 2·(frame b spectrum) = (x - conj(y)) / i
            power[0][size_t(k)] = 0.25 * (are * are + aim * aim);
            power[1][size_t(k)] = 0.25 * (bre * bre + bim * bim);
        }
        for (int64_t t = t0; t < std::min(t0 + 2, n_seen); ++t) {
            const std::vector<double> & pw = power[t - t0];
            for (int32_t m = 0; m < n_mel; ++m) {
                const mel_band & band = bands[size_t(m)];
                double e = 0.0;
                for (size_t i = 0; i < band.weights.size(); ++i) {
                    e += band.weights[i] * pw[size_t(band.first) + i];
                }
                const double v = std::log10(std::max(e, 1e-10));
                max_log = std::max(max_log, v);
                if (t < n_out) {
                    out[size_t(m) * size_t(n_out) + size_t(t)] = float(v);
                }
            }
        }
    }
    // Keep 8 decades below the loudest point, then map roughly into [-1, 1] as Whisper was trained on.
    const float floor_log = float(max_log - 8.0);
    for (size_t i = 0; i < size_t(n_mel) * size_t(n_out); ++i) {
        out[i] = (std::max(out[i], floor_log) + 4.0f) / 4.0f;
    }
}

} // namespace om
