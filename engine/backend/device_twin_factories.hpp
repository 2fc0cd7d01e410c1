// Making the device twins of the two serving providers (serve/adapters: BankDelta, CachedLoraDelta). The
// serving code calls these; engine/backend/cuda defines them (cuda_device_adapters.cpp), so serving never
// includes the CUDA glue and a build without CUDA links the same code (the device then refuses with
// backend_unavailable). Plain functions; the result belongs to the caller's thread.
#pragma once

#include "engine/backend/device_adapters.hpp"
#include "engine/bank/compressed_bank.hpp"
#include "engine/io/fleet.hpp"
#include "engine/io/hf_config.hpp"
#include "engine/io/peft_adapter.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lorafleet::backend {

// A compressed bank on the device (engine/backend/cuda/cuda_bank.cpp): the modules, bases, kind and rank
// of `shape` (its adapters and cores are ignored), `cores` [modules] -> [slots, core_size] in the bank's
// layout (zeros for a module a slot lacks), `slot_cluster` [slots]. shape_mismatch when the bank does not
// fit `base`; backend_unavailable (device_error) when the device refuses.
std::unique_ptr<device_adapters> upload_bank_adapters(const bank::compressed_bank& shape,
                                                      const std::vector<std::vector<float>>& cores,
                                                      const std::vector<int>& slot_cluster,
                                                      const io::model_geometry& base,
                                                      const std::string& where);

// Raw PEFT adapters behind a bounded device LRU cache of `cache_bytes` (engine/backend/cuda/
// cuda_lora_cache.hpp); `adapters` may hold nulls (removed slots). validation_error when not even one
// adapter fits or a module is not a decoder linear of `base`; backend_unavailable when the device refuses.
std::unique_ptr<device_adapters> make_device_lora_cache(const io::model_geometry& base, io::fleet adapters,
                                                        std::uint64_t cache_bytes);

} // namespace lorafleet::backend
