// Binary files of plain values with a running FNV-1a checksum, for saving and restoring streams. The writer
// goes to a temporary file renamed into place only when complete, so a failed save never leaves a partial
// file under the target name; the reader fails with OM_STATUS_BAD_FILE on truncation or a bad checksum.
#pragma once

#include "common.h"

#include <cstdint>
#include <cstdio>
#include <string>
#include <type_traits>
#include <vector>

namespace om {

class byte_writer {
public:
    explicit byte_writer(const std::string & path);
    ~byte_writer();
    byte_writer(const byte_writer &) = delete;
    byte_writer & operator=(const byte_writer &) = delete;

    void bytes(const void * data, size_t n);
    template <typename T> void value(const T & v) {
        static_assert(std::is_trivially_copyable<T>::value, "plain values only");
        bytes(&v, sizeof(T));
    }
    template <typename T> void vector(const std::vector<T> & v) {
        value(uint64_t(v.size()));
        bytes(v.data(), sizeof(T) * v.size());
    }
    // Writes the checksum and moves the file into place.
    void commit();

private:
    std::string path_, tmp_;
    FILE * f_ = nullptr;
    uint64_t hash_ = 1469598103934665603ull;
};

class byte_reader {
public:
    explicit byte_reader(const std::string & path);
    ~byte_reader();
    byte_reader(const byte_reader &) = delete;
    byte_reader & operator=(const byte_reader &) = delete;

    void bytes(void * data, size_t n);
    template <typename T> T value() {
        static_assert(std::is_trivially_copyable<T>::value, "plain values only");
        T v;
        bytes(&v, sizeof(T));
        return v;
    }
    // A vector of at most max_size elements (a larger count means corruption).
    template <typename T> std::vector<T> vector(uint64_t max_size) {
        const uint64_t n = value<uint64_t>();
        if (n > max_size) {
            corrupt();
        }
        std::vector<T> v(static_cast<size_t>(n));
        bytes(v.data(), sizeof(T) * v.size());
        return v;
    }
    // Checks the checksum and that nothing follows it.
    void finish();
    [[noreturn]] void corrupt() const;

private:
    std::string path_;
    FILE * f_ = nullptr;
    uint64_t hash_ = 1469598103934665603ull;
};

} // namespace om
