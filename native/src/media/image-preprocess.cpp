#include "media/image-preprocess.h"

#include "common.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

namespace om {

namespace {

// Largest accepted side ratio; the processor refuses more elongated images, which would leave a side
// too thin for one patch after resizing.
constexpr int64_t k_max_aspect = 200;

// Python's round() of n / d for positive integers: halves go to the even neighbour.
int64_t round_half_even_div(int64_t n, int64_t d) {
    const int64_t q = n / d;
    const int64_t r2 = 2 * (n % d);
    return (r2 > d || (r2 == d && (q & 1) != 0)) ? q + 1 : q;
}

// The CLIP normalisation of every 8-bit value, done in the processor's precisions (scale by 1/255 in
// double, then float32 arithmetic), so a table lookup reproduces its output bit for bit.
using channel_table = std::array<std::array<float, 256>, 3>;

const channel_table & normalise_table() {
    static const channel_table table = [] {
        const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
        const float stdv[3] = {0.26862954f, 0.26130258f, 0.27577711f};
        channel_table t{};
        for (int c = 0; c < 3; ++c) {
            for (int v = 0; v < 256; ++v) {
                const float scaled = float(double(v) * (1.0 / 255.0));
                t[size_t(c)][size_t(v)] = (scaled - mean[c]) / stdv[c];
            }
        }
        return t;
    }();
    return table;
}

// Bicubic convolution kernel (Keys, a = -0.5), support [-2, 2].
double cubic(double x) {
    constexpr double a = -0.5;
    x = std::fabs(x);
    if (x < 1.0) {
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    }
    if (x < 2.0) {
        return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
    }
    return 0.0;
}

// Fixed-point weights with 22 fractional bits: the 8-bit sums then fit in int32 with room for the
// kernel's negative lobes, and rounding the sum is one shift. PIL resamples 8-bit images this way; doing
// the same keeps our pixels identical to the processor's.
constexpr int k_weight_bits = 22;

// The taps of a 1-D resampling from in_size to out_size samples: output i reads `count[i]` inputs from
// `first[i]` with weights `weight[i * stride ...]`. On a reduction the kernel is stretched by the scale
// (an antialiasing low-pass); every output's weights are normalised to sum to one.
struct taps_1d {
    int32_t stride = 0;
    std::vector<int32_t> first;
    std::vector<int32_t> count;
    std::vector<int32_t> weight;
};

taps_1d bicubic_taps(int32_t in_size, int32_t out_size) {
    const double scale = double(in_size) / out_size;
    const double stretch = std::max(scale, 1.0);
    const double support = 2.0 * stretch;
    // A multiplication by the reciprocal rather than a division: the resulting doubles, and so the
    // rounded fixed-point weights, are then those of the processor's resampler.
    const double inv_stretch = 1.0 / stretch;
    taps_1d taps;
    taps.stride = int32_t(std::ceil(support)) * 2 + 1;
    taps.first.resize(size_t(out_size));
    taps.count.resize(size_t(out_size));
    taps.weight.assign(size_t(out_size) * size_t(taps.stride), 0);
    std::vector<double> w(size_t(taps.stride));
    for (int32_t i = 0; i < out_size; ++i) {
        // Output sample i covers input [i, i+1)·scale; its centre in input coordinates:
        const double center = (i + 0.5) * scale;
        // The window [center - support, center + support), rounded to whole samples (truncation of a
        // non-negative value after +0.5) and clipped to the image.
        const int32_t lo = std::max(0, int32_t(center - support + 0.5));
        const int32_t hi = std::min(in_size, int32_t(center + support + 0.5));
        double sum = 0.0;
        for (int32_t j = lo; j < hi; ++j) {
            w[size_t(j - lo)] = cubic((j - center + 0.5) * inv_stretch);
            sum += w[size_t(j - lo)];
        }
        taps.first[size_t(i)] = lo;
        taps.count[size_t(i)] = hi - lo;
        for (int32_t j = 0; j < hi - lo; ++j) {
            const double v = (sum != 0.0 ? w[size_t(j)] / sum : w[size_t(j)]) * double(1 << k_weight_bits);
            taps.weight[size_t(i) * size_t(taps.stride) + size_t(j)] = int32_t(v < 0.0 ? v - 0.5 : v + 0.5);
        }
    }
    return taps;
}

inline uint8_t round_fixed(int32_t acc) {
    const int32_t v = acc >> k_weight_bits;
    return uint8_t(std::clamp(v, 0, 255));
}

// The horizontal pass: every row of h rows of w RGB pixels resampled to taps.first.size() pixels.
void resample_rows(const uint8_t * src, int32_t h, int32_t w, uint8_t * dst, const taps_1d & taps) {
    const size_t out_w = taps.first.size();
    for (int32_t y = 0; y < h; ++y) {
        const uint8_t * s = src + size_t(y) * size_t(w) * 3;
        uint8_t * d = dst + size_t(y) * out_w * 3;
        for (size_t i = 0; i < out_w; ++i) {
            const int32_t * wt = taps.weight.data() + i * size_t(taps.stride);
            const uint8_t * p = s + size_t(taps.first[i]) * 3;
            int32_t acc[3] = {1 << (k_weight_bits - 1), 1 << (k_weight_bits - 1), 1 << (k_weight_bits - 1)};
            for (int32_t j = 0; j < taps.count[i]; ++j, p += 3) {
                acc[0] += int32_t(p[0]) * wt[j];
                acc[1] += int32_t(p[1]) * wt[j];
                acc[2] += int32_t(p[2]) * wt[j];
            }
            d[i * 3 + 0] = round_fixed(acc[0]);
            d[i * 3 + 1] = round_fixed(acc[1]);
            d[i * 3 + 2] = round_fixed(acc[2]);
        }
    }
}

// The vertical pass: rows of w RGB pixels resampled to taps.first.size() rows. Whole source rows are
// accumulated into an output row, so memory is read in order and the inner loop vectorises.
void resample_columns(const uint8_t * src, int32_t w, uint8_t * dst, const taps_1d & taps) {
    const size_t row = size_t(w) * 3;
    std::vector<int32_t> acc(row);
    for (size_t i = 0; i < taps.first.size(); ++i) {
        std::fill(acc.begin(), acc.end(), 1 << (k_weight_bits - 1));
        const int32_t * wt = taps.weight.data() + i * size_t(taps.stride);
        for (int32_t j = 0; j < taps.count[i]; ++j) {
            const uint8_t * s = src + (size_t(taps.first[i]) + size_t(j)) * row;
            const int32_t k = wt[j];
            for (size_t x = 0; x < row; ++x) {
                acc[x] += int32_t(s[x]) * k;
            }
        }
        uint8_t * d = dst + i * row;
        for (size_t x = 0; x < row; ++x) {
            d[x] = round_fixed(acc[x]);
        }
    }
}

// Resizes an RGB image: rows first, then columns, with the intermediate image rounded to 8 bits (as the
// processor's PIL path does; the rounding in between is part of the result). An axis whose size does not
// change is not filtered.
void resize_bicubic(const uint8_t * src, int32_t h, int32_t w, uint8_t * dst, int32_t rh, int32_t rw) {
    std::vector<uint8_t> mid;
    const uint8_t * rows_done = src;
    if (rw != w) {
        mid.resize(size_t(h) * size_t(rw) * 3);
        resample_rows(src, h, w, mid.data(), bicubic_taps(w, rw));
        rows_done = mid.data();
    }
    if (rh != h) {
        resample_columns(rows_done, rw, dst, bicubic_taps(h, rh));
    } else {
        std::copy(rows_done, rows_done + size_t(h) * size_t(rw) * 3, dst);
    }
}

// Writes one frame's normalised pixels into its temporal slot tt of the patches of temporal patch t.
void scatter_frame(const uint8_t * rgb, int32_t rh, int32_t rw, int32_t t, int32_t tt, float * out) {
    const channel_table & table = normalise_table();
    const int32_t cells_h = rh / k_vit_factor;
    const int32_t cells_w = rw / k_vit_factor;
    constexpr int32_t plane = k_vit_patch * k_vit_patch;   // one 14×14 channel-frame plane
    constexpr int32_t per_channel = k_vit_temporal * plane;
    for (int32_t y = 0; y < rh; ++y) {
        const int32_t gy = y / k_vit_patch;
        const int32_t py = y % k_vit_patch;
        for (int32_t gx = 0; gx < rw / k_vit_patch; ++gx) {
            // patch index in (t, h/2, w/2, mh, mw) order
            const int64_t cell = (int64_t(t) * cells_h + gy / k_vit_merge) * cells_w + gx / k_vit_merge;
            const int64_t patch =
                cell * k_vit_merge * k_vit_merge + (gy % k_vit_merge) * k_vit_merge + gx % k_vit_merge;
            float * dst = out + patch * k_vit_patch_dim + tt * plane + py * k_vit_patch;
            const uint8_t * src = rgb + (int64_t(y) * rw + int64_t(gx) * k_vit_patch) * 3;
            for (int32_t c = 0; c < 3; ++c) {
                const float * lut = table[size_t(c)].data();
                float * d = dst + c * per_channel;
                for (int32_t px = 0; px < k_vit_patch; ++px) {
                    d[px] = lut[src[px * 3 + c]];
                }
            }
        }
    }
}

} // namespace

image_size smart_resize(int32_t height, int32_t width, int64_t min_pixels, int64_t max_pixels) {
    if (height < 1 || width < 1) {
        fail(OM_STATUS_INVALID_ARGUMENT, "image size %d×%d: both sides must be at least 1 px", height, width);
    }
    if (min_pixels < 1 || max_pixels < min_pixels) {
        fail(OM_STATUS_INVALID_ARGUMENT, "pixel limits [%lld, %lld]: need 1 <= min_pixels <= max_pixels",
             (long long) min_pixels, (long long) max_pixels);
    }
    const int64_t h = height;
    const int64_t w = width;
    if (std::max(h, w) > k_max_aspect * std::min(h, w)) {
        fail(OM_STATUS_INVALID_ARGUMENT, "image size %d×%d: the aspect ratio must be at most %lld", height, width,
             (long long) k_max_aspect);
    }
    const double f = k_vit_factor;
    int64_t rh = round_half_even_div(h, k_vit_factor) * k_vit_factor;
    int64_t rw = round_half_even_div(w, k_vit_factor) * k_vit_factor;
    if (rh * rw > max_pixels) {
        const double beta = std::sqrt(double(h * w) / double(max_pixels));
        rh = std::max<int64_t>(k_vit_factor, int64_t(std::floor(double(h) / beta / f)) * k_vit_factor);
        rw = std::max<int64_t>(k_vit_factor, int64_t(std::floor(double(w) / beta / f)) * k_vit_factor);
    } else if (rh * rw < min_pixels) {
        const double beta = std::sqrt(double(min_pixels) / double(h * w));
        rh = int64_t(std::ceil(double(h) * beta / f)) * k_vit_factor;
        rw = int64_t(std::ceil(double(w) * beta / f)) * k_vit_factor;
    }
    if (rh > INT32_MAX || rw > INT32_MAX) {
        fail(OM_STATUS_INVALID_ARGUMENT, "image size %d×%d with min_pixels %lld resizes past 2^31 px a side",
             height, width, (long long) min_pixels);
    }
    return {int32_t(rh), int32_t(rw)};
}

patch_grid patch_grid_of(int32_t n_frames, int32_t resized_height, int32_t resized_width) {
    if (n_frames < 1) {
        fail(OM_STATUS_INVALID_ARGUMENT, "need at least one frame, got %d", n_frames);
    }
    if (resized_height < k_vit_factor || resized_width < k_vit_factor || resized_height % k_vit_factor != 0 ||
        resized_width % k_vit_factor != 0) {
        fail(OM_STATUS_INVALID_ARGUMENT, "resized size %d×%d: both sides must be positive multiples of %d",
             resized_height, resized_width, k_vit_factor);
    }
    return {(n_frames + k_vit_temporal - 1) / k_vit_temporal, resized_height / k_vit_patch,
            resized_width / k_vit_patch};
}

void image_patches(const uint8_t * rgb, int32_t n_frames, int32_t height, int32_t width, int32_t resized_height,
                   int32_t resized_width, float * out) {
    patch_grid_of(n_frames, resized_height, resized_width);  // validates the sizes
    if (height < 1 || width < 1) {
        fail(OM_STATUS_INVALID_ARGUMENT, "frame size %d×%d: both sides must be at least 1 px", height, width);
    }
    const bool resize = height != resized_height || width != resized_width;
    const size_t in_frame = size_t(height) * size_t(width) * 3;
    std::vector<uint8_t> resized(resize ? size_t(resized_height) * size_t(resized_width) * 3 : 0);
    for (int32_t f = 0; f < n_frames; ++f) {
        const uint8_t * frame = rgb + size_t(f) * in_frame;
        if (resize) {
            resize_bicubic(frame, height, width, resized.data(), resized_height, resized_width);
            frame = resized.data();
        }
        const int32_t t = f / k_vit_temporal;
        scatter_frame(frame, resized_height, resized_width, t, f % k_vit_temporal, out);
        // A lone last frame fills the rest of its temporal patch, as a still image fills both slots.
        for (int32_t tt = f % k_vit_temporal + 1; f == n_frames - 1 && tt < k_vit_temporal; ++tt) {
            scatter_frame(frame, resized_height, resized_width, t, tt, out);
        }
    }
}

} // namespace om
