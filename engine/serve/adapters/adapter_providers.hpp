// Opening the adapters a serving engine routes to: a compressed bank folder (BankDelta) or a list of
// raw PEFT adapter folders behind a byte-bounded LRU cache (CachedLoraDelta). Both check every adapter
// against the base model's geometry and fail with a clear error naming the adapter that does not fit.
#pragma once

#include "engine/io/hf_config.hpp"
#include "engine/serve/adapters/adapter_provider.hpp"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <vector>

namespace lorafleet::serve {

// A compressed bank (bank_format.hpp) made resident in float32.
std::unique_ptr<AdapterProvider> open_bank_provider(const std::filesystem::path& bank_dir,
                                                    const io::model_geometry& base);

// Raw PEFT adapters (each a folder, or a parent folder of adapter folders), named by folder name;
// at most `cache_bytes` of float32 A/B resident at a time, misses loaded from the mmapped files.
std::unique_ptr<AdapterProvider> open_raw_provider(const std::vector<std::filesystem::path>& paths,
                                                   const io::model_geometry& base, std::uint64_t cache_bytes);

} // namespace lorafleet::serve
