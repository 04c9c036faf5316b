#include "stream/op-profile.h"

#include "kernels/packed-matmul.h"
#include "memory/scoring.h"

#include <algorithm>
#include <cstring>

namespace om {

namespace {

bool is_view(const ggml_tensor * node) {
    switch (node->op) {
        case GGML_OP_NONE:
        case GGML_OP_VIEW:
        case GGML_OP_RESHAPE:
        case GGML_OP_PERMUTE:
        case GGML_OP_TRANSPOSE:
            return true;
        default:
            return false;
    }
}

} // namespace

void op_profile::attach(ggml_backend_sched_t sched) {
    ggml_backend_sched_set_eval_callback(sched, &op_profile::observe, this);
}

void op_profile::detach(ggml_backend_sched_t sched) {
    ggml_backend_sched_set_eval_callback(sched, nullptr, nullptr);
}

// The scheduler asks about a node (ask) right before computing it alone, and reports it (!ask) once the
// backend has synchronized: the time in between is the node's.
bool op_profile::observe(ggml_tensor * node, bool ask, void * self) {
    auto & p = *static_cast<op_profile *>(self);
    if (ask) {
        p.started_ = std::chrono::steady_clock::now();
        return true;
    }
    const char * packed = packed_op_name(node);
    const char * op = packed != nullptr ? packed : ggml_op_desc(node);
    total & t = p.by_op_[{op, std::strcmp(node->name, k_scoring_node_name) == 0}];
    t.nodes += 1;
    t.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - p.started_).count();
    if (std::strcmp(op, "MUL_MAT") == 0) {
        t.flops += 2 * node->src[0]->ne[0] * ggml_nelements(node);   // every output a dot product of ne[0] terms
    }
    if (node->op == GGML_OP_GET_ROWS) {
        // a lookup reads the rows it picks, not its whole table (the token embeddings)
        t.bytes_read += int64_t(ggml_row_size(node->src[0]->type, node->src[0]->ne[0]) * ggml_nrows(node) +
                                ggml_nbytes(node->src[1]));
    } else if (!is_view(node)) {
        for (const ggml_tensor * src : node->src) {
            // the destination a copy or SET_ROWS writes into is an operand too, and is not read
            if (src != nullptr && src->data != node->data) {
                t.bytes_read += int64_t(ggml_nbytes(src));
            }
        }
    }
    return true;   // go on with the graph
}

std::vector<om_op_time> op_profile::totals() const {
    std::vector<om_op_time> out;
    for (const auto & [key, t] : by_op_) {
        om_op_time e{};
        std::strncpy(e.op, key.first.c_str(), sizeof(e.op) - 1);
        e.scoring = key.second;
        e.n_nodes = t.nodes;
        e.seconds = t.seconds;
        e.bytes_read = t.bytes_read;
        e.flops = t.flops;
        out.push_back(e);
    }
    std::stable_sort(out.begin(), out.end(), [](const om_op_time & a, const om_op_time & b) {
        return a.seconds > b.seconds;
    });
    return out;
}

} // namespace om
