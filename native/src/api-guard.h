// The boundary discipline of every C API entry point: run the body, turn whatever it throws into an
// om_status plus om_last_error(), so no C++ exception ever crosses into C or Python. Shared by the files
// that implement omnimem.h (api.cpp and the per-subsystem glue next to it).
#pragma once

#include "common.h"

#include <exception>
#include <new>
#include <string>

namespace om {

template <typename F>
om_status guarded(F && body) {
    try {
        body();
        set_last_error("");
        return OM_STATUS_OK;
    } catch (const error & e) {
        set_last_error(e.what());
        return e.status();
    } catch (const std::bad_alloc &) {
        set_last_error("out of host memory");
        return OM_STATUS_BACKEND_ERROR;
    } catch (const std::exception & e) {
        set_last_error(std::string("internal error: ") + e.what());
        return OM_STATUS_INTERNAL;
    } catch (...) {
        set_last_error("internal error: unknown exception");
        return OM_STATUS_INTERNAL;
    }
}

inline void require(bool ok, const char * what) {
    if (!ok) {
        fail(OM_STATUS_INVALID_ARGUMENT, "%s", what);
    }
}

} // namespace om
