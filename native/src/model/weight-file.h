// A GGUF file opened for its weights: the header and every tensor's extent checked, tensor descriptions
// read, and, on request, their data placed on a ggml device. Shared by the text model and the projector.
#pragma once

#include "model/gguf-reader.h"

#include "ggml-backend.h"

#include <functional>
#include <string>
#include <vector>

namespace om {

// A read-only memory map of a whole file.
class mapped_file {
public:
    explicit mapped_file(const std::string & path);
    ~mapped_file();
    mapped_file(const mapped_file &) = delete;
    mapped_file & operator=(const mapped_file &) = delete;

    uint8_t * data() const { return data_; }
    size_t size() const { return size_; }

private:
    uint8_t * data_ = nullptr;
    size_t size_ = 0;
};

class weight_file {
public:
    // Opens and checks the file; throws om::error (file missing, not GGUF, corrupt header, truncated).
    explicit weight_file(const std::string & path);
    ~weight_file();
    weight_file(const weight_file &) = delete;
    weight_file & operator=(const weight_file &) = delete;

    const std::string & path() const { return path_; }
    gguf_context * gguf() const { return gguf_; }
    ggml_context * tensors() const { return ctx_; }
    key_reader keys() const { return {gguf_, path_}; }
    tensor_finder finder() const { return {ctx_, path_, {}}; }

    // Puts the data of `tensors` on `device`. On the CPU with use_mmap they are used in place from a
    // memory map, except those `repack` accepts (matrix-product weights only), which go to our kernels'
    // layouts (Q8_0, Q4_0, F16) on AMX CPUs or the CPU backend's repacked layouts; on other devices (or
    // without mmap) they are copied into the device's memory.
    void place(const std::vector<ggml_tensor *> & tensors, ggml_backend_dev_t device, bool use_mmap,
               const std::function<bool(const ggml_tensor *)> & repack);

    uint64_t bytes_placed() const { return bytes_placed_; }
    uint64_t bytes_packed() const { return bytes_packed_; }   // of those, in our packed layout
    int64_t  params_placed() const { return params_placed_; }

private:
    size_t data_offset_of(const ggml_tensor * t) const;

    std::string path_;
    gguf_context * gguf_ = nullptr;
    ggml_context * ctx_ = nullptr;
    mapped_file * mapping_ = nullptr;
    std::vector<ggml_backend_buffer_t> buffers_;
    uint64_t bytes_placed_ = 0;
    uint64_t bytes_packed_ = 0;
    int64_t params_placed_ = 0;
};

// The CPU backend's repacked buffer type (CPU_REPACK), or nullptr when this ggml has none.
ggml_backend_buffer_type_t cpu_repack_buft(ggml_backend_dev_t cpu);

} // namespace om
