// The compaction policies: which rows of one layer survive, given the scores the cache manager measured.
//
// Every policy keeps all text rows (the text cap is applied by the cache manager, separately) and sees the
// same budget. OMNIMEM keeps the top budget_audio audio rows and the top budget_visual visual rows by the
// perturbation-aware score p_j = sqrt(max(0, 1 - s_j / 2)) * a_j^lambda, where s_j sums the cosines of row j
// with its sequence neighbours (a missing neighbour counts as 1) and a_j is the attention it received. The
// other policies keep budget_audio + budget_visual media rows of either modality. Ties in a score go to the
// earlier row.
//
// UNIFORM and RANDOM rank each row by a number fixed by its index in the stream alone, so what a stream keeps
// after any number of compactions is what one selection over every row it was fed would keep: the whole
// stream stays covered, evenly (UNIFORM) or as a uniform random sample (RANDOM). Choosing afresh among the
// rows still held at each compaction would thin the old rows out again every time, leaving mostly the
// latest minute of a long stream.
#pragma once

#include "memory/kv-cache.h"
#include "omnimem.h"

#include <cstdint>
#include <vector>

namespace om {

struct selection_input {
    const modality * mod = nullptr;            // [n]
    int32_t          n = 0;
    const float *    importance = nullptr;     // [n] attention received (running average); for policies that need it
    const float *    adjacent_cos = nullptr;   // [n - 1] cos(row j, row j + 1), or NULL: all alike (cos 1)
    const int32_t *  seq = nullptr;            // [n] each row's index in the stream, or NULL: 0 .. n - 1
    int32_t          budget_audio = 0;
    int32_t          budget_visual = 0;
};

bool policy_needs_importance(const om_memory_params & p);
bool policy_needs_redundancy(const om_memory_params & p);
// Whether rows also store the layer-input hidden states (the exact redundancy mode of a policy that uses it).
bool stores_hidden(const om_memory_params & p);
// Rows per layer beyond the budget (om_memory_params.n_extra, or its default).
int32_t extra_rows(const om_stream_params & p);
// Whether media rows counted (audio, visual) exceed what the policy keeps.
bool over_budget(const om_memory_params & p, int64_t n_audio, int64_t n_visual, int32_t budget_audio,
                 int32_t budget_visual);

// The perturbation-aware scores p_j of all n rows.
std::vector<float> perturbation_scores(const selection_input & in, float lambda);

// The rows to keep, ascending.
std::vector<int32_t> select_rows(const om_memory_params & p, const selection_input & in);

// Checks a policy's parameters (name in messages).
void check_memory_params(const om_memory_params & p);

} // namespace om
