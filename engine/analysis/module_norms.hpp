// Frobenius norm of one module's update ΔW = s·B·A without forming the d_out x d_in product:
// ||s B A||_F^2 = tr((sB)^T (sB) · A A^T), two r x r Gram matrices, O((d_in + d_out) r^2) work and
// O(r^2) memory. Accumulated in double. Pure functions, any thread (the adapter is immutable).
#pragma once

#include "engine/io/peft_adapter.hpp"

#include <functional>
#include <vector>

namespace lorafleet::analysis {

double update_frobenius_norm(const io::lora_module& module);

// Norms of every module of `adapter`, in module order. `keepGoing` is asked between modules; when it
// returns false the remaining entries are left NaN.
std::vector<double> update_frobenius_norms(const io::peft_adapter& adapter,
                                           const std::function<bool()>& keepGoing = {});

} // namespace lorafleet::analysis
