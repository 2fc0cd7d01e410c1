// The AdapterProvider factories (see adapter_providers.hpp): a bank folder read and checksummed into a
// BankDelta, or a bank in memory copied into one; raw adapter folders discovered under each path, named by
// folder name, registered with a CachedLoraDelta (each one validated against the base and against the
// cache size on registration), the unusable ones skipped and listed when the caller asks for that.
#include "engine/serve/adapters/adapter_providers.hpp"

#include "engine/bank/bank_format.hpp"
#include "engine/core/error.hpp"
#include "engine/io/adapter_discovery.hpp"
#include "engine/serve/adapters/bank_delta.hpp"
#include "engine/serve/adapters/cached_lora_delta.hpp"
#include "engine/serve/adapters/hybrid_delta.hpp"

#include <map>

namespace lorafleet::serve {

std::string describe(const skipped_adapter& s) {
    return "skipped adapter '" + s.name + "' (" + s.folder.string() + "): " + s.reason;
}

std::unique_ptr<AdapterProvider> open_bank_provider(const std::filesystem::path& bank_dir,
                                                    const io::model_geometry& base) {
    // read_bank runs the one bank validation (bank_validation.hpp), here against the served base too.
    // A bank that names raw adapters (format 2) serves them from their PEFT files (hybrid_delta.hpp).
    return open_hybrid_bank(bank::read_bank(bank_dir, {true, true, base, true}), base, bank_dir.string(),
                            bank_dir);
}

std::unique_ptr<AdapterProvider> open_bank_provider(const bank::compressed_bank& bank,
                                                    const io::model_geometry& base,
                                                    const std::string& where) {
    return open_hybrid_bank(bank::compressed_bank(bank), base, where);
}

namespace {

std::string folder_name(const std::filesystem::path& dir) {
    const auto clean = dir.lexically_normal(); // "a/b/" names "b"
    return (clean.has_filename() ? clean.filename() : clean.parent_path().filename()).string();
}

} // namespace

std::unique_ptr<AdapterProvider> open_raw_provider(const std::vector<std::filesystem::path>& paths,
                                                   const io::model_geometry& base, std::uint64_t cache_bytes,
                                                   std::vector<skipped_adapter>* skipped) {
    auto provider = std::make_unique<CachedLoraDelta>(base, cache_bytes);
    std::map<std::string, std::filesystem::path> seen;
    for (const auto& path : paths) {
        std::vector<std::filesystem::path> dirs;
        try {
            dirs = io::find_adapter_dirs(path);
        } catch (const lorafleet::error& e) {
            if (!skipped) throw;
            skipped->push_back({std::string(), path, e.what()});
            continue;
        }
        for (const auto& dir : dirs) {
            const std::string name = folder_name(dir);
            try {
                const auto it = seen.find(name);
                if (it != seen.end())
                    throw usage_error(dir.string(), "adapter name '" + name + "' is also used by " +
                                                        it->second.string() +
                                                        " (adapters are named by folder)");
                provider->add(dir, name);
                seen.emplace(name, dir);
            } catch (const lorafleet::error& e) {
                if (!skipped) throw;
                skipped->push_back({name, dir, e.what()});
            }
        }
    }
    return provider;
}

} // namespace lorafleet::serve
