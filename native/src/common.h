// Shared helpers of the native library: the exception that carries an om_status to the C API boundary,
// string formatting, and the capture of ggml / llama.cpp log messages.
#pragma once

#include "omnimem.h"

#include <cstdarg>
#include <stdexcept>
#include <string>

namespace om {

// Thrown inside the library; api.cpp turns it into a status code plus om_last_error().
class error : public std::runtime_error {
public:
    error(om_status status, const std::string & message) : std::runtime_error(message), status_(status) {}
    om_status status() const { return status_; }

private:
    om_status status_;
};

std::string format(const char * fmt, ...) __attribute__((format(printf, 1, 2)));

[[noreturn]] void fail(om_status status, const char * fmt, ...) __attribute__((format(printf, 2, 3)));

// Sets the calling thread's last error message (read through om_last_error()).
void set_last_error(const std::string & message);
const char * last_error();

// Routes ggml and llama.cpp log output: errors and warnings are remembered per thread (so a failure can
// quote what ggml said), everything is printed only when OMNIMEM_LOG=debug. Idempotent.
void init_logging();

// The last error/warning text ggml or llama.cpp logged on this thread since clear_backend_log().
std::string backend_log();
void clear_backend_log();

} // namespace om
