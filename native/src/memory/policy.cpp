#include "memory/policy.h"

#include "common.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <unordered_map>

namespace om {

bool policy_needs_importance(const om_memory_params & p) {
    return p.policy == OM_POLICY_ATTENTION_TOPK ||
           ((p.policy == OM_POLICY_OMNIMEM || p.policy == OM_POLICY_OMNIMEM_NOSPLIT) && p.lam != 0.0f);
}

bool policy_needs_redundancy(const om_memory_params & p) {
    return p.policy == OM_POLICY_OMNIMEM || p.policy == OM_POLICY_OMNIMEM_NOSPLIT;
}

bool over_budget(const om_memory_params & p, int64_t n_audio, int64_t n_visual, int32_t budget_audio,
                 int32_t budget_visual) {
    if (p.policy == OM_POLICY_FULL) {
        return false;
    }
    if (p.policy == OM_POLICY_OMNIMEM) {
        return n_audio > budget_audio || n_visual > budget_visual;
    }
    return n_audio + n_visual > int64_t(budget_audio) + budget_visual;
}

bool stores_hidden(const om_memory_params & p) {
    return policy_needs_redundancy(p) && p.redundancy == OM_REDUNDANCY_HIDDEN;
}

int32_t extra_rows(const om_stream_params & p) {
    return p.memory.n_extra > 0 ? p.memory.n_extra : p.n_batch + 512;   // a chunk in flight, prompt, Q and A
}

void check_memory_params(const om_memory_params & p) {
    if (p.policy < OM_POLICY_FULL || p.policy > OM_POLICY_RANDOM) {
        fail(OM_STATUS_INVALID_ARGUMENT, "unknown memory policy %d", int(p.policy));
    }
    if (p.redundancy != OM_REDUNDANCY_VALUE && p.redundancy != OM_REDUNDANCY_HIDDEN) {
        fail(OM_STATUS_INVALID_ARGUMENT, "unknown redundancy mode %d", int(p.redundancy));
    }
    if (p.neighbours < OM_NEIGHBOURS_SEQUENCE || p.neighbours > OM_NEIGHBOURS_BOTH) {
        fail(OM_STATUS_INVALID_ARGUMENT, "unknown neighbours mode %d", int(p.neighbours));
    }
    if (!(p.lam >= 0.0f) || !std::isfinite(p.lam)) {
        fail(OM_STATUS_INVALID_ARGUMENT, "lambda must be a finite number >= 0, got %g", double(p.lam));
    }
    if (p.n_sink < 0 || p.n_extra < 0 || p.text_cap < 0 || p.n_score_queries < 0) {
        fail(OM_STATUS_INVALID_ARGUMENT, "n_sink, n_extra, text_cap and n_score_queries must not be negative "
             "(got %d, %d, %d, %d)", p.n_sink, p.n_extra, p.text_cap, p.n_score_queries);
    }
}

neighbour_pairs find_neighbour_pairs(om_neighbours mode, const modality * mod, const int32_t * pos, int32_t n) {
    neighbour_pairs out;
    out.mode = mode;
    for (auto * side : {&out.before, &out.after, &out.patch_before, &out.patch_after}) {
        side->assign(size_t(std::max(n, 0)), -1);
    }
    auto add = [&](int32_t a, int32_t b, bool across_frames) {
        const int32_t i = int32_t(out.first.size());
        out.first.push_back(a);
        out.second.push_back(b);
        out.across_frames.push_back(across_frames);
        (across_frames ? out.patch_after : out.after)[size_t(a)] = i;
        (across_frames ? out.patch_before : out.before)[size_t(b)] = i;
    };
    out.frame.assign(size_t(std::max(n, 0)), -1);
    std::unordered_map<uint64_t, int32_t> last_at_patch;   // (h, w) -> the latest visual row there so far
    for (int32_t j = 0, frames = 0; j < n; ++j) {
        if (mode != OM_NEIGHBOURS_SEQUENCE && mod[j] == modality::visual) {
            const bool same_frame = j > 0 && out.frame[size_t(j - 1)] >= 0 && pos[3 * (j - 1)] == pos[3 * j];
            out.frame[size_t(j)] = same_frame ? out.frame[size_t(j - 1)] : frames++;
            const uint64_t patch = uint64_t(uint32_t(pos[3 * j + 1])) << 32 | uint32_t(pos[3 * j + 2]);
            const auto it = last_at_patch.find(patch);
            if (it != last_at_patch.end()) {
                add(it->second, j, true);
            }
            last_at_patch[patch] = j;
        }
        // under FRAME two visual rows side by side are not each other's neighbours
        if (j + 1 < n && !(mode == OM_NEIGHBOURS_FRAME && mod[j] == modality::visual &&
                           mod[j + 1] == modality::visual)) {
            add(j, j + 1, false);
        }
    }
    return out;
}

namespace {

double spread(double s) {
    return std::sqrt(std::max(0.0, 1.0 - s / 2.0));
}

} // namespace

double neighbour_pairs::cosine_sum(int32_t j, const float * cos, bool at_patch) const {
    // a missing neighbour counts as an identical one
    const int32_t b = (at_patch ? patch_before : before)[size_t(j)], a = (at_patch ? patch_after : after)[size_t(j)];
    return (b >= 0 ? double(cos[b]) : 1.0) + (a >= 0 ? double(cos[a]) : 1.0);
}

std::vector<double> neighbour_pairs::frame_changes(const float * cos) const {
    const int32_t n_frames = frame.empty() ? 0 : *std::max_element(frame.begin(), frame.end()) + 1;
    std::vector<double> change(size_t(n_frames), 0.0);
    std::vector<int32_t> count(size_t(n_frames), 0);
    for (size_t j = 0; j < frame.size(); ++j) {
        if (frame[j] >= 0) {
            change[size_t(frame[j])] += spread(cosine_sum(int32_t(j), cos, true));
            count[size_t(frame[j])] += 1;
        }
    }
    for (size_t f = 0; f < change.size(); ++f) {
        change[f] /= double(count[f]);
    }
    return change;
}

std::vector<float> perturbation_scores(const selection_input & in, float lambda) {
    std::vector<float> score(size_t(in.n));
    const bool known = in.pairs != nullptr && in.pair_cos != nullptr;
    std::vector<double> change;
    if (known && in.pairs->mode == OM_NEIGHBOURS_BOTH) {
        change = in.pairs->frame_changes(in.pair_cos);
    }
    for (int32_t j = 0; j < in.n; ++j) {
        double p = 0.0;   // no cosines at all: every row alike, as if its neighbours were identical
        if (known) {
            const bool at_patch = in.pairs->mode == OM_NEIGHBOURS_FRAME && in.pairs->frame[size_t(j)] >= 0;
            p = spread(in.pairs->cosine_sum(j, in.pair_cos, at_patch));
            if (!change.empty() && in.pairs->frame[size_t(j)] >= 0) {
                p *= change[size_t(in.pairs->frame[size_t(j)])];
            }
        }
        const double attended = lambda == 0.0f ? 1.0 : std::pow(double(in.importance[j]), double(lambda));
        score[size_t(j)] = float(p * attended);
    }
    return score;
}

namespace {

// The k candidates with the highest score (ties: the earlier row), in no particular order: the order is a
// strict total one, so the selection alone (linear time) fixes the set; select_rows sorts what it keeps.
template <typename Score>
void keep_top(std::vector<int32_t> candidates, const std::vector<Score> & score, int64_t k,
              std::vector<int32_t> & kept) {
    if (int64_t(candidates.size()) > k) {
        std::nth_element(candidates.begin(), candidates.begin() + k, candidates.end(), [&](int32_t a, int32_t b) {
            return score[size_t(a)] > score[size_t(b)] || (score[size_t(a)] == score[size_t(b)] && a < b);
        });
        candidates.resize(size_t(k));
    }
    kept.insert(kept.end(), candidates.begin(), candidates.end());
}

uint32_t stream_index(const selection_input & in, int32_t j) {
    return uint32_t(in.seq != nullptr ? in.seq[j] : j);
}

// UNIFORM's rank: the complement of the stream index with its bits reversed (the van der Corput sequence). The
// rows kept are then every 2^m-th row of the stream, for the smallest m that fits, plus an evenly spread share
// of the rows halfway between, so no gap between kept rows exceeds twice the stream's rows over the budget.
std::vector<uint32_t> spread_ranks(const selection_input & in) {
    std::vector<uint32_t> rank(size_t(in.n));
    for (int32_t j = 0; j < in.n; ++j) {
        uint32_t x = stream_index(in, j), reversed = 0;
        for (int b = 0; b < 32; ++b, x >>= 1) {
            reversed = (reversed << 1) | (x & 1u);
        }
        rank[size_t(j)] = ~reversed;
    }
    return rank;
}

// RANDOM's rank: a seeded hash of the stream index (splitmix64's finaliser), so the kept rows are a uniform
// random sample of every row fed, whichever were fed when.
std::vector<uint64_t> random_ranks(const selection_input & in, uint32_t seed) {
    std::vector<uint64_t> rank(size_t(in.n));
    for (int32_t j = 0; j < in.n; ++j) {
        uint64_t z = (uint64_t(seed) << 32 | stream_index(in, j)) + 0x9e3779b97f4a7c15ull;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        rank[size_t(j)] = z ^ (z >> 31);
    }
    return rank;
}

} // namespace

std::vector<int32_t> select_rows(const om_memory_params & p, const selection_input & in) {
    std::vector<int32_t> kept, audio, visual, media;
    for (int32_t j = 0; j < in.n; ++j) {
        switch (in.mod[j]) {
            case modality::text:   kept.push_back(j); break;
            case modality::audio:  audio.push_back(j); media.push_back(j); break;
            case modality::visual: visual.push_back(j); media.push_back(j); break;
        }
    }
    const int64_t k = std::min<int64_t>(int64_t(in.budget_audio) + in.budget_visual, int64_t(media.size()));
    switch (p.policy) {
        case OM_POLICY_FULL:
            kept.insert(kept.end(), media.begin(), media.end());
            break;
        case OM_POLICY_OMNIMEM: {
            const std::vector<float> score = perturbation_scores(in, p.lam);
            keep_top(audio, score, in.budget_audio, kept);
            keep_top(visual, score, in.budget_visual, kept);
            break;
        }
        case OM_POLICY_OMNIMEM_NOSPLIT:
            keep_top(media, perturbation_scores(in, p.lam), k, kept);
            break;
        case OM_POLICY_ATTENTION_TOPK:
            keep_top(media, std::vector<float>(in.importance, in.importance + in.n), k, kept);
            break;
        case OM_POLICY_SINK_WINDOW: {
            const int64_t sink = std::min<int64_t>(p.n_sink, k);
            kept.insert(kept.end(), media.begin(), media.begin() + sink);
            kept.insert(kept.end(), media.end() - (k - sink), media.end());
            break;
        }
        case OM_POLICY_UNIFORM:
            keep_top(media, spread_ranks(in), k, kept);
            break;
        case OM_POLICY_RANDOM:
            keep_top(media, random_ranks(in, p.seed), k, kept);
            break;
    }
    std::sort(kept.begin(), kept.end());
    return kept;
}

} // namespace om
