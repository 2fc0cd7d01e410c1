// The one error a device call raises at the engine boundary. kernels/ has two conventions of its own
// (linalg_error exceptions from the compression library, serve_status values from the serving launchers);
// engine/backend/cuda/cuda_status.hpp turns both into a device_error, so callers above the backend see
// one type: "where: api: message (code N)". It is a backend_unavailable (core/error.hpp), because the
// practical meaning is the same (this device cannot do the work now; an `auto` choice falls back to the
// CPU) and every caller that handles backend_unavailable needs no new case.
#pragma once

#include "engine/core/error.hpp"

#include <string>

namespace lorafleet::backend {

class device_error : public backend_unavailable {
public:
    // `api`: the failing call ("cudaMalloc", "cublasSgemm", "budget", "not compiled"); `code`: its numeric
    // code (CUDA / cuBLAS / cuSOLVER status; -1 not compiled; -2 bad argument; 0 when there is none).
    device_error(std::string where, std::string api, long long code, const std::string& message)
        : backend_unavailable(std::move(where),
                              api + ": " + message + " (code " + std::to_string(code) + ")"),
          m_api(std::move(api)), m_code(code) {}
    const std::string& api() const noexcept { return m_api; }
    long long code() const noexcept { return m_code; }

private:
    std::string m_api;
    long long m_code = 0;
};

} // namespace lorafleet::backend
