// Internal error handling: C++ exceptions inside, status codes + thread-local message at the ABI.
#pragma once

#include <stdexcept>
#include <string>

#include "msn/msn_infer.h"

namespace msn {

class Error : public std::runtime_error {
 public:
  Error(msn_status status, const std::string& message) : std::runtime_error(message), status_(status) {}
  msn_status status() const { return status_; }

 private:
  msn_status status_;
};

void set_last_error(const std::string& message);

// Run `body`; turn any exception into a status and a message. Every exported function uses it.
template <class Body>
msn_status guard(Body&& body) noexcept {
  try {
    body();
    set_last_error("");
    return MSN_OK;
  } catch (const Error& e) {
    set_last_error(e.what());
    return e.status();
  } catch (const std::bad_alloc&) {
    set_last_error("out of memory");
    return MSN_ERR_RUNTIME;
  } catch (const std::exception& e) {
    set_last_error(std::string("internal error: ") + e.what());
    return MSN_ERR_INTERNAL;
  } catch (...) {
    set_last_error("internal error: unknown exception");
    return MSN_ERR_INTERNAL;
  }
}

inline void require(bool ok, msn_status status, const std::string& message) {
  if (!ok) throw Error(status, message);
}

template <class T>
inline void require_not_null(const T* p, const char* name) {
  require(p != nullptr, MSN_ERR_NULL_ARGUMENT, std::string(name) + " is NULL");
}

}  // namespace msn
