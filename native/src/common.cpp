#include "common.h"

#include "ggml.h"
#include "llama.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

namespace om {

static thread_local std::string t_last_error;
static thread_local std::string t_backend_log;

static std::string vformat(const char * fmt, va_list args) {
    va_list copy;
    va_copy(copy, args);
    const int n = std::vsnprintf(nullptr, 0, fmt, copy);
    va_end(copy);
    if (n < 0) {
        return fmt;
    }
    std::vector<char> buf(size_t(n) + 1);
    std::vsnprintf(buf.data(), buf.size(), fmt, args);
    return std::string(buf.data(), size_t(n));
}

std::string format(const char * fmt, ...) {
    va_list args;
    va_start(args, fmt);
    std::string s = vformat(fmt, args);
    va_end(args);
    return s;
}

void fail(om_status status, const char * fmt, ...) {
    va_list args;
    va_start(args, fmt);
    std::string s = vformat(fmt, args);
    va_end(args);
    throw error(status, s);
}

void set_last_error(const std::string & message) { t_last_error = message; }
const char * last_error() { return t_last_error.c_str(); }

std::string backend_log() { return t_backend_log; }
void clear_backend_log() { t_backend_log.clear(); }

static bool debug_logging() {
    const char * v = std::getenv("OMNIMEM_LOG");
    return v != nullptr && std::strcmp(v, "debug") == 0;
}

static void log_callback(ggml_log_level level, const char * text, void * /*user_data*/) {
    static const bool debug = debug_logging();
    if (debug) {
        std::fputs(text, stderr);
    }
    if (level == GGML_LOG_LEVEL_ERROR || level == GGML_LOG_LEVEL_WARN) {
        // keep the tail only: it is quoted in error messages
        if (t_backend_log.size() > 2000) {
            t_backend_log.erase(0, t_backend_log.size() - 1000);
        }
        t_backend_log += text;
    }
}

void init_logging() {
    static std::once_flag once;
    std::call_once(once, [] {
        llama_log_set(log_callback, nullptr);
        ggml_log_set(log_callback, nullptr);
        llama_backend_init();
    });
}

} // namespace om
