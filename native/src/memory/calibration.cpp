#include "memory/calibration.h"

#include <cmath>
#include <limits>

namespace om {

namespace {

bool in_group(modality m, int g) {
    return g == calibration::media ? m != modality::text : m == (g == calibration::audio ? modality::audio
                                                                                         : modality::visual);
}

} // namespace

void calibration::add(int32_t il, const float * logits, int32_t n_q, int32_t n_kv, const modality * key_mod,
                      const float * inputs, int32_t n_tokens, int32_t n_embd) {
    sums & s = sums_[size_t(il)];
    for (int32_t i = 0; i < n_q; ++i) {
        const int32_t last_key = n_kv - n_q + i;   // causal: the query sees keys up to its own row
        const float * row = logits + size_t(i) * size_t(n_kv);
        for (int g = 0; g < 3; ++g) {
            double max = -std::numeric_limits<double>::infinity();
            for (int32_t j = 0; j <= last_key; ++j) {
                if (in_group(key_mod[j], g)) {
                    max = std::max(max, double(row[j]));
                }
            }
            if (!std::isfinite(max)) {
                continue;   // no key of this group yet
            }
            // H = log Z - sum p_j s_j with s shifted by the max, Z = sum exp(s_j)
            double z = 0.0, weighted = 0.0;
            for (int32_t j = 0; j <= last_key; ++j) {
                if (in_group(key_mod[j], g)) {
                    const double e = std::exp(double(row[j]) - max);
                    z += e;
                    weighted += e * (double(row[j]) - max);
                }
            }
            s.entropy[size_t(g)] += std::log(z) - weighted / z;
            s.n_entropy[size_t(g)] += 1;
        }
    }
    const modality * batch_mod = key_mod + (n_kv - n_tokens);
    for (int g = 0; g < 3; ++g) {
        const float * prev = nullptr;
        for (int32_t t = 0; t < n_tokens; ++t) {
            if (!in_group(batch_mod[t], g)) {
                continue;
            }
            const float * cur = inputs + size_t(t) * size_t(n_embd);
            if (prev != nullptr) {
                double dot = 0.0, a = 0.0, b = 0.0;
                for (int32_t d = 0; d < n_embd; ++d) {
                    dot += double(prev[d]) * cur[d];
                    a += double(prev[d]) * prev[d];
                    b += double(cur[d]) * cur[d];
                }
                s.redundancy[size_t(g)] += 1.0 - dot / std::sqrt(std::max(a * b, 1e-300));
                s.n_redundancy[size_t(g)] += 1;
            }
            prev = cur;
        }
    }
}

std::vector<float> calibration::means() const {
    std::vector<float> out;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    for (const sums & s : sums_) {
        for (size_t g = 0; g < 3; ++g) {
            out.push_back(s.n_entropy[g] > 0 ? float(s.entropy[g] / double(s.n_entropy[g])) : nan);
            out.push_back(s.n_redundancy[g] > 0 ? float(s.redundancy[g] / double(s.n_redundancy[g])) : nan);
        }
    }
    return out;
}

} // namespace om
