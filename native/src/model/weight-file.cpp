#include "model/weight-file.h"

#include "kernels/packed-matmul.h"

#include "ggml-alloc.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>

namespace om {

mapped_file::mapped_file(const std::string & path) {
    const int fd = ::open(path.c_str(), O_RDONLY);
    if (fd < 0) {
        fail(OM_STATUS_FILE_NOT_FOUND, "cannot open %s: %s", path.c_str(), std::strerror(errno));
    }
    struct stat st {};
    ::fstat(fd, &st);
    size_ = size_t(st.st_size);
    void * p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (p == MAP_FAILED) {
        fail(OM_STATUS_BACKEND_ERROR, "cannot map %s into memory: %s (try use_mmap=False)", path.c_str(),
             std::strerror(errno));
    }
    data_ = static_cast<uint8_t *>(p);
}

mapped_file::~mapped_file() {
    if (data_ != nullptr) {
        ::munmap(data_, size_);
    }
}

namespace {

void check_magic(const std::string & path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        fail(OM_STATUS_FILE_NOT_FOUND, "no such file: %s", path.c_str());
    }
    if (S_ISDIR(st.st_mode)) {
        fail(OM_STATUS_FILE_NOT_FOUND, "%s is a directory; pass the path of a .gguf file (convert a checkpoint "
             "directory with `omnimem convert`)", path.c_str());
    }
    char magic[4] = {0, 0, 0, 0};
    FILE * f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) {
        fail(OM_STATUS_FILE_NOT_FOUND, "cannot open %s: %s", path.c_str(), std::strerror(errno));
    }
    const size_t n = std::fread(magic, 1, 4, f);
    std::fclose(f);
    if (n < 4 || std::memcmp(magic, "GGUF", 4) != 0) {
        fail(OM_STATUS_BAD_FILE, "%s is not a GGUF file (no GGUF magic at its start); convert a Hugging Face "
             "checkpoint with `omnimem convert`", path.c_str());
    }
}

// Every tensor's data must lie inside the file: gguf_init without data does not check it.
void check_tensor_extents(const std::string & path, gguf_context * gguf, ggml_context * ctx) {
    struct stat st {};
    ::stat(path.c_str(), &st);
    const uint64_t file_size = uint64_t(st.st_size);
    const uint64_t data_offset = gguf_get_data_offset(gguf);
    for (int64_t i = 0; i < gguf_get_n_tensors(gguf); ++i) {
        const char * name = gguf_get_tensor_name(gguf, i);
        const ggml_tensor * t = ggml_get_tensor(ctx, name);
        const uint64_t end = data_offset + gguf_get_tensor_offset(gguf, i) + ggml_nbytes(t);
        if (end > file_size) {
            fail(OM_STATUS_BAD_FILE, "%s is truncated: tensor '%s' ends at byte %llu but the file has %llu bytes; "
                 "download or convert it again", path.c_str(), name, (unsigned long long) end,
                 (unsigned long long) file_size);
        }
    }
}

// Whether `buft` can hold `w` for a matmul on `dev` (asked the way ggml expects: a probe op over a
// zero-sized buffer of that type).
// zero-sized buffer of that type).
bool matmul_weight_fits(ggml_backend_dev_t dev, ggml_backend_buffer_type_t buft, ggml_tensor * w) {
    ggml_init_params ip = {ggml_tensor_overhead() * 4, nullptr, true};
    ggml_context * ctx = ggml_init(ip);
    ggml_tensor * x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, w->ne[0], 32);
    ggml_tensor * op = ggml_mul_mat(ctx, w, x);
    ggml_backend_buffer_t probe = ggml_backend_buft_alloc_buffer(buft, 0);
    ggml_backend_buffer_t saved = w->buffer;
    w->buffer = probe;
    const bool ok = ggml_backend_dev_supports_op(dev, op);
    w->buffer = saved;
    ggml_backend_buffer_free(probe);
    ggml_free(ctx);
    return ok;
}

} // namespace

// The CPU backend's repacked weight layouts (CPU_REPACK) speed up quantized matmuls. ggml's AMX layout is
// deliberately not used: with the pinned build it faults on batched matmuls (see docs/architecture.md); on
// AMX CPUs Q8_0, Q4_0 and F16 weights go to our own kernels instead (kernels/packed-matmul.h).
ggml_backend_buffer_type_t cpu_repack_buft(ggml_backend_dev_t cpu) {
    ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(cpu);
    auto get_extra = reinterpret_cast<ggml_backend_dev_get_extra_bufts_t>(
        ggml_backend_reg_get_proc_address(reg, "ggml_backend_dev_get_extra_bufts"));
    if (get_extra == nullptr) {
        return nullptr;
    }
    for (ggml_backend_buffer_type_t * b = get_extra(cpu); b != nullptr && *b != nullptr; ++b) {
        if (std::strcmp(ggml_backend_buft_name(*b), "CPU_REPACK") == 0) {
            return *b;
        }
    }
    return nullptr;
}

weight_file::weight_file(const std::string & path) : path_(path) {
    check_magic(path);
    clear_backend_log();
    gguf_init_params gp = {/*no_alloc=*/true, &ctx_};
    gguf_ = gguf_init_from_file(path.c_str(), gp);
    if (gguf_ == nullptr) {
        std::string why = backend_log();
        while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) {
            why.pop_back();
        }
        fail(OM_STATUS_BAD_FILE, "%s is a corrupt or truncated GGUF file (%s)", path.c_str(),
             why.empty() ? "unreadable header" : why.c_str());
    }
    try {
        check_tensor_extents(path, gguf_, ctx_);
    } catch (...) {
        gguf_free(gguf_);
        ggml_free(ctx_);
        throw;
    }
}

weight_file::~weight_file() {
    for (ggml_backend_buffer_t b : buffers_) {
        ggml_backend_buffer_free(b);
    }
    delete mapping_;
    gguf_free(gguf_);
    ggml_free(ctx_);
}

size_t weight_file::data_offset_of(const ggml_tensor * t) const {
    return gguf_get_data_offset(gguf_) + gguf_get_tensor_offset(gguf_, gguf_find_tensor(gguf_, ggml_get_name(t)));
}

void weight_file::place(const std::vector<ggml_tensor *> & used, ggml_backend_dev_t device, bool use_mmap,
                        const std::function<bool(const ggml_tensor *)> & repack) {
    const bool on_cpu = ggml_backend_dev_type(device) == GGML_BACKEND_DEVICE_TYPE_CPU;
    if (use_mmap && mapping_ == nullptr) {
        mapping_ = new mapped_file(path_);
    }

    // Decide a buffer type per tensor; nullptr = used in place inside the mapping (CPU only).
    ggml_backend_buffer_type_t repack_buft = on_cpu && repack ? cpu_repack_buft(device) : nullptr;
    const bool use_packed = on_cpu && repack && packed_matmul_available();
    std::map<ggml_backend_buffer_type_t, std::vector<ggml_tensor *>> by_buft;
    std::vector<ggml_tensor *> in_place;
    std::vector<ggml_tensor *> packed;
    for (ggml_tensor * t : used) {
        if (std::find(in_place.begin(), in_place.end(), t) != in_place.end()) {
            continue;
        }
        ggml_backend_buffer_type_t buft = nullptr;
        if (use_packed && packed_matmul_accepts(t) && repack(t)) {
            buft = ggml_backend_dev_buffer_type(device);   // host memory, packed in place once read
            packed.push_back(t);
        } else if (repack_buft != nullptr && ggml_is_quantized(t->type) && repack(t) &&
            matmul_weight_fits(device, repack_buft, t)) {
            buft = repack_buft;
        } else if (!on_cpu || mapping_ == nullptr) {
            buft = ggml_backend_dev_buffer_type(device);
        }
        if (buft == nullptr) {
            in_place.push_back(t);
        } else {
            by_buft[buft].push_back(t);
        }
        bytes_placed_ += ggml_nbytes(t);
        params_placed_ += ggml_nelements(t);
    }

    if (!in_place.empty()) {
        ggml_backend_buffer_t buf = ggml_backend_cpu_buffer_from_ptr(mapping_->data(), mapping_->size());
        if (buf == nullptr) {
            fail(OM_STATUS_BACKEND_ERROR, "cannot wrap the mapping of %s as a ggml buffer", path_.c_str());
        }
        ggml_backend_buffer_set_usage(buf, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
        buffers_.push_back(buf);
        for (ggml_tensor * t : in_place) {
            void * addr = mapping_->data() + data_offset_of(t);
            if (ggml_backend_tensor_alloc(buf, t, addr) != GGML_STATUS_SUCCESS) {
                fail(OM_STATUS_BACKEND_ERROR, "cannot place tensor '%s' in the mapped file", ggml_get_name(t));
            }
        }
    }

    FILE * file = mapping_ == nullptr ? std::fopen(path_.c_str(), "rb") : nullptr;
    std::vector<uint8_t> staging;
    for (auto & [buft, tensors] : by_buft) {
        const size_t align = ggml_backend_buft_get_alignment(buft);
        size_t total = align;
        for (ggml_tensor * t : tensors) {
            total += GGML_PAD(ggml_backend_buft_get_alloc_size(buft, t), align);
        }
        ggml_backend_buffer_t buf = ggml_backend_buft_alloc_buffer(buft, total);
        if (buf == nullptr) {
            fail(OM_STATUS_BACKEND_ERROR, "cannot allocate %.1f MiB of %s memory for the weights of %s",
                 double(total) / (1 << 20), ggml_backend_buft_name(buft), path_.c_str());
        }
        ggml_backend_buffer_set_usage(buf, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
        buffers_.push_back(buf);
        ggml_tallocr alloc = ggml_tallocr_new(buf);
        for (ggml_tensor * t : tensors) {
            if (ggml_tallocr_alloc(&alloc, t) != GGML_STATUS_SUCCESS) {
                fail(OM_STATUS_BACKEND_ERROR, "cannot place tensor '%s' in %s memory", ggml_get_name(t),
                     ggml_backend_buft_name(buft));
            }
            const size_t offset = data_offset_of(t);
            const size_t n = ggml_nbytes(t);
            const void * src = nullptr;
            if (mapping_ != nullptr) {
                src = mapping_->data() + offset;
            } else {
                staging.resize(n);
                if (file == nullptr || std::fseek(file, long(offset), SEEK_SET) != 0 ||
                    std::fread(staging.data(), 1, n, file) != n) {
                    if (file != nullptr) {
                        std::fclose(file);
                    }
                    fail(OM_STATUS_BAD_FILE, "cannot read tensor '%s' from %s", ggml_get_name(t), path_.c_str());
                }
                src = staging.data();
            }
            ggml_backend_tensor_set(t, src, 0, n);
        }
    }
    if (file != nullptr) {
        std::fclose(file);
    }
    for (ggml_tensor * t : packed) {
        pack_weight(t);
        bytes_packed_ += ggml_nbytes(t);
    }
}

} // namespace om
