// Reading a GGUF's keys and tensors with checks that turn every surprise into an om::error naming the file,
// the key or tensor, and what was expected.
#pragma once

#include "common.h"

#include "ggml.h"
#include "gguf.h"

#include <initializer_list>
#include <string>
#include <vector>

namespace om {

struct key_reader {
    const gguf_context * gguf;
    std::string file;

    int64_t find(const std::string & key, bool required) const {
        const int64_t id = gguf_find_key(gguf, key.c_str());
        if (id < 0 && required) {
            fail(OM_STATUS_MODEL_MISMATCH, "%s lacks the required key '%s'; reconvert it with `omnimem convert`",
                 file.c_str(), key.c_str());
        }
        return id;
    }

    int64_t integer(const std::string & key, bool required = true, int64_t fallback = 0) const {
        const int64_t id = find(key, required);
        if (id < 0) {
            return fallback;
        }
        switch (gguf_get_kv_type(gguf, id)) {
            case GGUF_TYPE_UINT8:  return gguf_get_val_u8(gguf, id);
            case GGUF_TYPE_INT8:   return gguf_get_val_i8(gguf, id);
            case GGUF_TYPE_UINT16: return gguf_get_val_u16(gguf, id);
            case GGUF_TYPE_INT16:  return gguf_get_val_i16(gguf, id);
            case GGUF_TYPE_UINT32: return gguf_get_val_u32(gguf, id);
            case GGUF_TYPE_INT32:  return gguf_get_val_i32(gguf, id);
            case GGUF_TYPE_UINT64: return int64_t(gguf_get_val_u64(gguf, id));
            case GGUF_TYPE_INT64:  return gguf_get_val_i64(gguf, id);
            default:
                fail(OM_STATUS_MODEL_MISMATCH, "%s: key '%s' should hold an integer", file.c_str(), key.c_str());
        }
    }

    float real(const std::string & key, bool required = true, float fallback = 0.0f) const {
        const int64_t id = find(key, required);
        if (id < 0) {
            return fallback;
        }
        switch (gguf_get_kv_type(gguf, id)) {
            case GGUF_TYPE_FLOAT32: return gguf_get_val_f32(gguf, id);
            case GGUF_TYPE_FLOAT64: return float(gguf_get_val_f64(gguf, id));
            default:
                fail(OM_STATUS_MODEL_MISMATCH, "%s: key '%s' should hold a float", file.c_str(), key.c_str());
        }
    }

    std::string string(const std::string & key, bool required = true) const {
        const int64_t id = find(key, required);
        if (id < 0) {
            return "";
        }
        if (gguf_get_kv_type(gguf, id) != GGUF_TYPE_STRING) {
            fail(OM_STATUS_MODEL_MISMATCH, "%s: key '%s' should hold a string", file.c_str(), key.c_str());
        }
        return gguf_get_val_str(gguf, id);
    }

    std::vector<int64_t> integers(const std::string & key, bool required = true) const {
        const int64_t id = find(key, required);
        std::vector<int64_t> out;
        if (id < 0) {
            return out;
        }
        const bool is_int_array = gguf_get_kv_type(gguf, id) == GGUF_TYPE_ARRAY &&
                                  (gguf_get_arr_type(gguf, id) == GGUF_TYPE_INT32 ||
                                   gguf_get_arr_type(gguf, id) == GGUF_TYPE_UINT32);
        if (!is_int_array) {
            fail(OM_STATUS_MODEL_MISMATCH, "%s: key '%s' should hold an array of 32-bit integers", file.c_str(),
                 key.c_str());
        }
        const auto * data = static_cast<const int32_t *>(gguf_get_arr_data(gguf, id));
        out.assign(data, data + gguf_get_arr_n(gguf, id));
        return out;
    }
};

inline std::string shape_string(const int64_t * ne, int n) {
    std::string s = "[";
    for (int i = 0; i < n; ++i) {
        s += (i ? ", " : "") + std::to_string(ne[i]);
    }
    return s + "]";
}

// Looks a weight up by name and checks its shape (ggml order: ne0 first).
struct tensor_finder {
    ggml_context * ctx;
    std::string file;
    std::vector<ggml_tensor *> used;

    ggml_tensor * get(const std::string & name, std::initializer_list<int64_t> shape, bool required = true) {
        ggml_tensor * t = ggml_get_tensor(ctx, name.c_str());
        if (t == nullptr) {
            if (required) {
                fail(OM_STATUS_MODEL_MISMATCH, "%s has no tensor '%s'; the file is incomplete or not a Qwen2.5-Omni "
                     "text model", file.c_str(), name.c_str());
            }
            return nullptr;
        }
        const std::vector<int64_t> want(shape);
        bool ok = ggml_n_dims(t) <= int(want.size());
        for (int i = 0; i < GGML_MAX_DIMS; ++i) {
            const int64_t expected = i < int(want.size()) ? want[size_t(i)] : 1;
            ok = ok && t->ne[i] == expected;
        }
        if (!ok) {
            fail(OM_STATUS_MODEL_MISMATCH, "%s: tensor '%s' has shape %s but the hyperparameters require %s",
                 file.c_str(), name.c_str(), shape_string(t->ne, ggml_n_dims(t)).c_str(),
                 shape_string(want.data(), int(want.size())).c_str());
        }
        used.push_back(t);
        return t;
    }
};

} // namespace om
