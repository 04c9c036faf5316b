// om_sampler: llama.cpp's sampler chain (top-k → top-p → temperature → seeded draw, or greedy) applied
// to a stream's last logits.
#include "common.h"
#include "stream/sampler.h"
#include "stream/stream.h"

#include "llama.h"

#include <vector>

struct om_sampler {
    llama_sampler * chain = nullptr;
    std::vector<llama_token_data> candidates;

    ~om_sampler() {
        if (chain != nullptr) {
            llama_sampler_free(chain);
        }
    }
};

namespace om {

om_sampler * make_sampler(const om_sampler_params & p) {
    if (p.top_p <= 0.0f) {
        fail(OM_STATUS_INVALID_ARGUMENT, "top_p must be in (0, 1], got %g", double(p.top_p));
    }
    init_logging();
    auto * s = new om_sampler();
    s->chain = llama_sampler_chain_init(llama_sampler_chain_default_params());
    if (p.temperature <= 0.0f) {
        llama_sampler_chain_add(s->chain, llama_sampler_init_greedy());
        return s;
    }
    if (p.top_k > 0) {
        llama_sampler_chain_add(s->chain, llama_sampler_init_top_k(p.top_k));
    }
    if (p.top_p < 1.0f) {
        llama_sampler_chain_add(s->chain, llama_sampler_init_top_p(p.top_p, 1));
    }
    llama_sampler_chain_add(s->chain, llama_sampler_init_temp(p.temperature));
    llama_sampler_chain_add(s->chain, llama_sampler_init_dist(p.seed));
    return s;
}

void free_sampler(om_sampler * s) { delete s; }

int32_t sample(om_sampler & s, const om_stream & stream) {
    if (stream.logits.empty()) {
        fail(OM_STATUS_INVALID_ARGUMENT, "the stream has no logits to sample from: feed tokens first");
    }
    const size_t n = stream.logits.size();
    s.candidates.resize(n);
    for (size_t i = 0; i < n; ++i) {
        s.candidates[i] = {llama_token(i), stream.logits[i], 0.0f};
    }
    llama_token_data_array arr = {s.candidates.data(), n, -1, false};
    llama_sampler_apply(s.chain, &arr);
    if (arr.selected < 0 || size_t(arr.selected) >= arr.size) {
        fail(OM_STATUS_INTERNAL, "the sampler selected no token");
    }
    const llama_token t = arr.data[arr.selected].id;
    llama_sampler_accept(s.chain, t);
    return t;
}

} // namespace om
