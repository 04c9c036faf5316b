// Sampling of the next token from a stream's logits (llama.cpp's sampler chain).
#pragma once

#include "omnimem.h"

#include <cstdint>

namespace om {

om_sampler * make_sampler(const om_sampler_params & params);
void free_sampler(om_sampler * sampler);
int32_t sample(om_sampler & sampler, const om_stream & stream);

} // namespace om
