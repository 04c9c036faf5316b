#include "model/encoder-cache.h"

#include <algorithm>
#include <cstring>

namespace om {

bool encoder_cache::find(const std::vector<int32_t> & shape, const float * input, size_t n_input, float * out,
                         size_t n_out) {
    if (capacity == 0) {
        return false;
    }
    std::lock_guard<std::mutex> lock(mutex);
    for (const entry & e : entries) {
        if (e.shape == shape && e.input.size() == n_input && e.output.size() == n_out &&
            std::memcmp(e.input.data(), input, n_input * sizeof(float)) == 0) {
            std::copy_n(e.output.data(), n_out, out);
            n_hits += 1;
            return true;
        }
    }
    return false;
}

void encoder_cache::store(const std::vector<int32_t> & shape, const float * input, size_t n_input,
                          const float * output, size_t n_out) {
    if (capacity == 0) {
        return;
    }
    std::lock_guard<std::mutex> lock(mutex);
    entries.push_front({shape, std::vector<float>(input, input + n_input), std::vector<float>(output, output + n_out)});
    if (entries.size() > size_t(capacity)) {
        entries.pop_back();
    }
}

} // namespace om
