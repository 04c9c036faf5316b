// The compaction policies: which rows of one layer survive, given the scores the cache manager measured.
//
// Every policy keeps all text rows (the text cap is applied by the cache manager, separately) and sees the
// same budget. OMNIMEM keeps the top budget_audio audio rows and the top budget_visual visual rows by the
// perturbation-aware score p_j = sqrt(max(0, 1 - s_j / 2)) * a_j^lambda, where s_j sums the cosines of row j
// with its neighbours before and after it (a missing neighbour counts as 1) and a_j is the attention it
// received. The neighbours are the rows next to it in the layer (the method's), or, with
// OM_NEIGHBOURS_FRAME, for a visual row the rows at its patch position in the frames before and after it: a
// patch that only repeats the frame before it then scores as redundant, while the spatial neighbours of an
// object's patch differ from it in every frame that shows the object. OM_NEIGHBOURS_BOTH keeps the method's
// score and weighs a visual row's by how much its frame changed from the frames around it (frame_changes).
// The other policies keep budget_audio + budget_visual media rows of either modality. Ties in a score go to
// the earlier row.
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

// The pairs of rows whose cosines the redundancy score needs: each row's neighbours before and after it in
// sequence and, for a visual row under OM_NEIGHBOURS_FRAME or _BOTH, at its patch in the frames held before
// and after it.
struct neighbour_pairs {
    om_neighbours        mode = OM_NEIGHBOURS_SEQUENCE;
    std::vector<int32_t> first, second;   // pair i: rows first[i] < second[i]
    std::vector<bool>    across_frames;   // pair i joins a visual row to its patch in a later frame
    std::vector<int32_t> frame;           // per row: its frame (a run of visual rows at one M-RoPE t), or -1
                                          // when it has no patch neighbours (not visual, or mode SEQUENCE)
    std::vector<int32_t> before, after;               // per row: the pair with its neighbour before / after it
    std::vector<int32_t> patch_before, patch_after;   // in sequence, and at its patch; -1: none

    // Row j's cosines with its neighbours before and after it, summed (a missing one counts as 1): in
    // sequence, or at its patch.
    double cosine_sum(int32_t j, const float * cos, bool at_patch) const;
    // Per frame: how much it changed from the frames around it, the mean over its rows of
    // sqrt(max(0, 1 - s / 2)) with s the row's cosine sum at its patch (OM_NEIGHBOURS_BOTH).
    std::vector<double> frame_changes(const float * cos) const;
};

// The neighbour pairs of n rows in sequence order under the given mode; pos ([n][3], M-RoPE t, h, w) is read
// only by OM_NEIGHBOURS_FRAME and _BOTH. A pair is listed once even when it serves two rows.
neighbour_pairs find_neighbour_pairs(om_neighbours mode, const modality * mod, const int32_t * pos, int32_t n);

struct selection_input {
    const modality * mod = nullptr;            // [n]
    int32_t          n = 0;
    const float *    importance = nullptr;     // [n] attention received (running average); for policies that need it
    const neighbour_pairs * pairs = nullptr;   // the rows' neighbours, and the cosine of each pair; either NULL:
    const float *    pair_cos = nullptr;       // every row alike (cos 1)
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
