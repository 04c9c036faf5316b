#include "serialize.h"

#include <cerrno>
#include <cstring>

namespace om {

namespace {

void fnv1a(uint64_t & hash, const void * data, size_t n) {
    const auto * p = static_cast<const unsigned char *>(data);
    for (size_t i = 0; i < n; ++i) {
        hash = (hash ^ p[i]) * 1099511628211ull;
    }
}

} // namespace

byte_writer::byte_writer(const std::string & path) : path_(path), tmp_(path + ".part") {
    f_ = std::fopen(tmp_.c_str(), "wb");
    if (f_ == nullptr) {
        fail(OM_STATUS_FILE_NOT_FOUND, "cannot write %s: %s", tmp_.c_str(), std::strerror(errno));
    }
}

byte_writer::~byte_writer() {
    if (f_ != nullptr) {   // not committed: leave nothing behind
        std::fclose(f_);
        std::remove(tmp_.c_str());
    }
}

void byte_writer::bytes(const void * data, size_t n) {
    if (n == 0) {
        return;
    }
    fnv1a(hash_, data, n);
    if (std::fwrite(data, 1, n, f_) != n) {
        fail(OM_STATUS_BACKEND_ERROR, "cannot write %s: %s (is the disk full?)", tmp_.c_str(), std::strerror(errno));
    }
}

void byte_writer::commit() {
    const uint64_t hash = hash_;
    bytes(&hash, sizeof(hash));
    const bool flushed = std::fflush(f_) == 0;
    std::fclose(f_);
    f_ = nullptr;
    if (!flushed || std::rename(tmp_.c_str(), path_.c_str()) != 0) {
        std::remove(tmp_.c_str());
        fail(OM_STATUS_BACKEND_ERROR, "cannot write %s: %s", path_.c_str(), std::strerror(errno));
    }
}

byte_reader::byte_reader(const std::string & path) : path_(path) {
    f_ = std::fopen(path.c_str(), "rb");
    if (f_ == nullptr) {
        fail(OM_STATUS_FILE_NOT_FOUND, "cannot open %s: %s", path.c_str(), std::strerror(errno));
    }
}

byte_reader::~byte_reader() {
    if (f_ != nullptr) {
        std::fclose(f_);
    }
}

void byte_reader::corrupt() const {
    fail(OM_STATUS_BAD_FILE, "%s is truncated or corrupt: it is not a stream file omnimem.cpp wrote completely",
         path_.c_str());
}

void byte_reader::bytes(void * data, size_t n) {
    if (n == 0) {
        return;
    }
    if (std::fread(data, 1, n, f_) != n) {
        corrupt();
    }
    fnv1a(hash_, data, n);
}

void byte_reader::finish() {
    const uint64_t expected = hash_;
    uint64_t stored = 0;
    if (std::fread(&stored, 1, sizeof(stored), f_) != sizeof(stored) || stored != expected ||
        std::fgetc(f_) != EOF) {
        corrupt();
    }
}

} // namespace om
