// A per-operation profile of the graphs a stream computes (om_stream_profile): the scheduler's evaluation
// callback stops after every node, so each node's time is its own.
#pragma once

#include "omnimem.h"

#include <ggml-backend.h>

#include <chrono>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace om {

class op_profile {
public:
    // Starts adding up every graph `sched` computes / stops it (the scheduler then computes graphs whole).
    void attach(ggml_backend_sched_t sched);
    static void detach(ggml_backend_sched_t sched);

    // The totals per operation, most time first.
    std::vector<om_op_time> totals() const;

private:
    static bool observe(ggml_tensor * node, bool ask, void * self);

    struct total {
        int64_t nodes = 0;
        double seconds = 0.0;
        int64_t bytes_read = 0;
        int64_t flops = 0;
    };
    std::map<std::pair<std::string, bool>, total> by_op_;   // by operation and whether the nodes are scoring's
    std::chrono::steady_clock::time_point started_;   // of the node being computed
};

} // namespace om
