// Recent outputs of an encoder tower, keyed by their exact input, shared by a model's streams. Several
// streams of one model fed the same media (policies compared side by side, several viewers of one camera)
// then encode each chunk once: the first stream to reach it runs the tower, the others copy its output.
// Keys are the whole input, not a hash of it, so a hit is always the tower's own output for that input.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>
#include <vector>

namespace om {

class encoder_cache {
public:
    // capacity: entries kept (the most recently stored); 0 keeps nothing and every lookup misses.
    explicit encoder_cache(int32_t capacity = 0) : capacity(capacity) {}

    // shape: what the input means besides its values (a patch grid, a mel frame count). On a hit, copies the
    // stored output (n_out floats) into out and returns true.
    bool find(const std::vector<int32_t> & shape, const float * input, size_t n_input, float * out, size_t n_out);

    void store(const std::vector<int32_t> & shape, const float * input, size_t n_input, const float * output,
               size_t n_out);

    int64_t hits() const { return n_hits.load(); }

private:
    struct entry {
        std::vector<int32_t> shape;
        std::vector<float>   input;
        std::vector<float>   output;
    };
    const int32_t     capacity;
    std::mutex        mutex;    // a model's streams may run on their own threads
    std::deque<entry> entries;  // newest first
    std::atomic<int64_t> n_hits{0};
};

} // namespace om
