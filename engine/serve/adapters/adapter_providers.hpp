// Opening the adapters a serving engine routes to: a compressed bank folder or a bank already in memory
// (BankDelta), or a list of raw PEFT adapter folders behind a byte-bounded LRU cache (CachedLoraDelta).
// Both check every adapter against the base model's geometry and fail with a clear error naming the
// adapter that does not fit; raw folders may instead skip such adapters and list them (skipped_adapter).
// Front ends do not call these directly: engine/serve/session/serving_session.hpp sets serving up.
// Thread affinity: any thread; the provider returned is then used as adapter_provider.hpp says.
#pragma once

#include "engine/bank/compressed_bank.hpp"
#include "engine/io/hf_config.hpp"
#include "engine/serve/adapters/adapter_provider.hpp"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace lorafleet::serve {

// An adapter that was left out of a raw provider, and why.
struct skipped_adapter {
    std::string name;             // the adapter's folder name ("" when the path named no adapter)
    std::filesystem::path folder; // the adapter folder, or the given path that held none
    std::string reason;           // the error's one-line message (never file contents)
};

// "skipped adapter 'NAME' (FOLDER): REASON", one line, for logs and stderr.
std::string describe(const skipped_adapter& s);

// A compressed bank (bank_format.hpp) made resident in float32. A bank that names raw adapters (format 2)
// gives a HybridDelta serving those from their recorded PEFT folders (hybrid_delta.hpp).
std::unique_ptr<AdapterProvider> open_bank_provider(const std::filesystem::path& bank_dir,
                                                    const io::model_geometry& base);
// A bank already read (and validated on reading): copied into the provider; `where` names it in errors.
std::unique_ptr<AdapterProvider> open_bank_provider(const bank::compressed_bank& bank,
                                                    const io::model_geometry& base, const std::string& where);

// Raw PEFT adapters (each a folder, or a parent folder of adapter folders), named by folder name;
// at most `cache_bytes` of float32 A/B resident at a time, misses loaded from the mmapped files.
// `skipped` null: the first adapter that cannot be registered (unreadable, invalid, foreign to the base,
// larger than the cache, a folder name already taken) or a path holding none throws its error.
// `skipped` given: each of those is appended to it and left out instead (of two adapters with the same
// name, the first usable one is kept); the provider may then hold no adapter.
std::unique_ptr<AdapterProvider> open_raw_provider(const std::vector<std::filesystem::path>& paths,
                                                   const io::model_geometry& base, std::uint64_t cache_bytes,
                                                   std::vector<skipped_adapter>* skipped = nullptr);

} // namespace lorafleet::serve
