#include "media/audio-mel.h"

#include "common.h"
#include "serialize.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdlib>
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

// The DFT of one frame's 400 real samples is computed as a 200-point complex one over the pairs
// (x[2j], x[2j+1]), then unpacked. Each frame is transformed on its own, so its values cannot depend on how
// a stream cuts the clip (packing two frames into one transform would tie each to its neighbour's rounding).
constexpr int32_t k_half_fft = k_mel_n_fft / 2;

// e^{-2πik/400} for k in [0, 200]: the factors that join the even and odd samples' half-size spectra.
std::vector<cpx> unpack_twiddles() {
    std::vector<cpx> w(size_t(k_half_fft) + 1);
    for (int32_t k = 0; k <= k_half_fft; ++k) {
        const double a = -2.0 * k_pi * k / k_mel_n_fft;
        w[size_t(k)] = {std::cos(a), std::sin(a)};
    }
    return w;
}

// Where a frame reads its samples: samples [first, end) of the clip, at data. The clip is reflected about
// sample 0 on the left (centred frames with reflect padding) and followed by silence on the right (the
// processor's zero padding).
struct clip_view {
    const float * data;
    int64_t first;
    int64_t end;
};

// The 400 samples frame t windows: a pointer into the view when the frame lies inside it, else assembled
// (with the padding) in scratch. The view must hold every sample of the clip the frame reads.
const float * frame_samples(const clip_view & clip, int64_t t, float * scratch) {
    const int64_t start = t * k_mel_hop - k_mel_n_fft / 2;
    if (start >= clip.first && start + k_mel_n_fft <= clip.end) {
        return clip.data + (start - clip.first);
    }
    for (int32_t j = 0; j < k_mel_n_fft; ++j) {
        const int64_t i = std::abs(start + j);
        scratch[j] = i < clip.end ? clip.data[i - clip.first] : 0.0f;
    }
    return scratch;
}

// Frames of a clip of n_samples that see any of its samples. Those past the log_mel_n_frames valid ones
// see its last samples; the processor computes them on its padded buffer and their maximum counts
// towards its dynamic-range floor. Later frames see only zeros (log10 of the 1e-10 floor = -10, never
// above the maximum).
int64_t frames_seeing_clip(int64_t n_samples) {
    return (n_samples + k_mel_n_fft / 2 + k_mel_hop - 1) / k_mel_hop;
}

void check_finite(const float * pcm, int64_t n, int64_t first_index) {
    for (int64_t i = 0; i < n; ++i) {
        if (!std::isfinite(pcm[i])) {
            fail(OM_STATUS_INVALID_ARGUMENT, "audio sample %lld is %f; PCM must be finite",
                 (long long) (first_index + i), double(pcm[i]));
        }
    }
}

// Keep 8 decades below the loudest point.
float floor_of(double max_log) { return float(max_log - 8.0); }

// Clamp at the floor, then map roughly into [-1, 1] as Whisper was trained on.
inline float scaled(float log_value, float floor_log) { return (std::max(log_value, floor_log) + 4.0f) / 4.0f; }

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

class mel_kernel {
public:
    explicit mel_kernel(int32_t n_mel) : n_mel_(n_mel), bands_(mel_bands(n_mel)) {}

    // Computes the log10 mel energies of frames [t_begin, t_end) of the clip: frame t < n_kept is written
    // with bin m at out[(t - t_begin)·frame_step + m·bin_step], later ones only count towards the returned
    // maximum (over the unrounded values, as the processor takes it).
    double frames(const clip_view & clip, int64_t t_begin, int64_t t_end, int64_t n_kept, float * out,
                  size_t frame_step, size_t bin_step) const {
        static const fft_plan fft(k_half_fft);
        static const std::vector<double> window = hann_window();
        static const std::vector<cpx> unpack = unpack_twiddles();
        std::vector<cpx> z(k_half_fft);
        std::vector<cpx> spec(k_half_fft);
        std::vector<double> power(k_mel_n_bins);
        std::vector<float> discarded(static_cast<size_t>(n_mel_));
        float scratch[k_mel_n_fft];
        double max_log = -std::numeric_limits<double>::infinity();
        for (int64_t t = t_begin; t < t_end; ++t) {
            const float * x = frame_samples(clip, t, scratch);
            for (int32_t j = 0; j < k_half_fft; ++j) {
                z[size_t(j)] = {window[size_t(2 * j)] * double(x[2 * j]),
                                window[size_t(2 * j + 1)] * double(x[2 * j + 1])};
            }
            fft.forward(z.data(), spec.data());
            for (int32_t k = 0; k <= k_half_fft; ++k) {
                const cpx a = spec[size_t(k % k_half_fft)];
                const cpx b = spec[size_t((k_half_fft - k) % k_half_fft)];
                // With Z = DFT(z): the even samples' spectrum is (Z[k] + conj Z[200-k]) / 2, the odd
                // samples' (Z[k] - conj Z[200-k]) / 2i, and X[k] = even + e^{-2πik/400}·odd.
                const cpx even = {0.5 * (a.re + b.re), 0.5 * (a.im - b.im)};
                const cpx odd = {0.5 * (a.im + b.im), 0.5 * (b.re - a.re)};
                const cpx x_k = even + unpack[size_t(k)] * odd;
                power[size_t(k)] = x_k.re * x_k.re + x_k.im * x_k.im;
            }
            const bool kept = t < n_kept;
            float * dst = kept ? out + size_t(t - t_begin) * frame_step : discarded.data();
            const size_t step = kept ? bin_step : 1;
            for (int32_t m = 0; m < n_mel_; ++m) {
                const mel_band & band = bands_[size_t(m)];
                double e = 0.0;
                for (size_t i = 0; i < band.weights.size(); ++i) {
                    e += band.weights[i] * power[size_t(band.first) + i];
                }
                const double v = std::log10(std::max(e, 1e-10));
                max_log = std::max(max_log, v);
                dst[size_t(m) * step] = float(v);
            }
        }
        return max_log;
    }

private:
    int32_t n_mel_;
    std::vector<mel_band> bands_;
};

void log_mel(const float * pcm, int64_t n_samples, int32_t n_mel, float * out) {
    if (n_samples <= 0) {
        fail(OM_STATUS_INVALID_ARGUMENT, "the audio is empty (%lld samples)", (long long) n_samples);
    }
    check_finite(pcm, n_samples, 0);
    const int64_t n_out = log_mel_n_frames(n_samples);
    const double max_log = mel_kernel(n_mel).frames({pcm, 0, n_samples}, 0, frames_seeing_clip(n_samples), n_out,
                                                    out, 1, size_t(n_out));
    const float floor_log = floor_of(max_log);
    for (size_t i = 0; i < size_t(n_mel) * size_t(n_out); ++i) {
        out[i] = scaled(out[i], floor_log);
    }
}

log_mel_stream::log_mel_stream(int32_t n_mel) : kernel_(std::make_shared<const mel_kernel>(n_mel)), n_mel_(n_mel) {}

void log_mel_stream::push(const float * pcm, int64_t n) {
    if (finished_) {
        fail(OM_STATUS_INVALID_ARGUMENT, "the audio stream is finished; start a new one for more audio");
    }
    if (n < 0) {
        fail(OM_STATUS_INVALID_ARGUMENT, "cannot push %lld samples", (long long) n);
    }
    check_finite(pcm, n, n_samples_);
    samples_.insert(samples_.end(), pcm, pcm + n);
    n_samples_ += n;
    // Frame t reads up to sample 160·t + 199 and, through the reflection, sample 200 - 160·t: frame 0 needs
    // 201 samples, frame t >= 1 needs 160·t + 200.
    const int64_t n_complete = n_samples_ <= k_mel_n_fft / 2 ? 0 : (n_samples_ - k_mel_n_fft / 2) / k_mel_hop + 1;
    if (n_complete > n_computed_) {
        compute(n_complete, n_complete);
    }
    // Frame n_computed_ starts at sample 160·n_computed_ - 200; nothing before it (nor, once the first frames
    // are done, the reflection's samples) is read again.
    const int64_t keep_from = std::max<int64_t>(0, n_computed_ * k_mel_hop - k_mel_n_fft / 2);
    if (keep_from > first_) {
        samples_.erase(samples_.begin(), samples_.begin() + (keep_from - first_));
        first_ = keep_from;
    }
}

void log_mel_stream::finish() {
    if (finished_) {
        return;
    }
    compute(frames_seeing_clip(n_samples_), log_mel_n_frames(n_samples_));
    finished_ = true;
    samples_ = {};
}

void log_mel_stream::take(int64_t n, float * out) {
    if (n < 0 || n > n_ready()) {
        fail(OM_STATUS_INVALID_ARGUMENT, "cannot take %lld log-mel frames, %lld are ready", (long long) n,
             (long long) n_ready());
    }
    const float floor_log = floor_of(max_log_);
    const float * frames = ready_.data() + ready_head_;
    for (int32_t m = 0; m < n_mel_; ++m) {
        for (int64_t t = 0; t < n; ++t) {
            const float log_value = frames[size_t(t) * size_t(n_mel_) + size_t(m)];
            out[size_t(m) * size_t(n) + size_t(t)] = scaled(log_value, floor_log);
        }
    }
    ready_head_ += size_t(n) * size_t(n_mel_);
    n_taken_ += n;
    // Dropping the taken frames only once they are half the buffer keeps each frame's cost constant
    // however few are taken at a time.
    if (2 * ready_head_ >= ready_.size()) {
        ready_.erase(ready_.begin(), ready_.begin() + std::ptrdiff_t(ready_head_));
        ready_head_ = 0;
    }
}

void log_mel_stream::compute(int64_t t_end, int64_t n_kept) {
    const size_t offset = ready_.size();
    ready_.resize(offset + size_t(std::max<int64_t>(0, n_kept - n_computed_)) * size_t(n_mel_));
    const double max_log = kernel_->frames({samples_.data(), first_, n_samples_}, n_computed_, t_end, n_kept,
                                           ready_.data() + offset, size_t(n_mel_), 1);
    max_log_ = std::max(max_log_, max_log);
    n_computed_ = t_end;
}

void log_mel_stream::save(byte_writer & w) const {
    w.value(n_mel_);
    w.vector(samples_);
    w.value(first_);
    w.value(n_samples_);
    w.value(n_computed_);
    w.value(finished_);
    w.vector(std::vector<float>(ready_.begin() + ptrdiff_t(ready_head_), ready_.end()));
    w.value(n_taken_);
    w.value(max_log_);
}

void log_mel_stream::load(byte_reader & r) {
    if (r.value<int32_t>() != n_mel_) {
        r.corrupt();
    }
    samples_ = r.vector<float>(uint64_t(1) << 32);
    first_ = r.value<int64_t>();
    n_samples_ = r.value<int64_t>();
    n_computed_ = r.value<int64_t>();
    finished_ = r.value<bool>();
    ready_ = r.vector<float>(uint64_t(1) << 36);
    ready_head_ = 0;
    n_taken_ = r.value<int64_t>();
    max_log_ = r.value<double>();
    if (ready_.size() % size_t(n_mel_) != 0 || n_samples_ - first_ != int64_t(samples_.size())) {
        r.corrupt();
    }
}

} // namespace om
