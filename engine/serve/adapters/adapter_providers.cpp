// The two AdapterProvider factories (see adapter_providers.hpp): a bank folder read and checksummed into
// a BankDelta; raw adapter folders discovered under each path, named by folder name, registered with a
// CachedLoraDelta (each one validated against the base and against the cache size on registration).
#include "engine/serve/adapters/adapter_providers.hpp"

#include "engine/bank/bank_format.hpp"
#include "engine/core/error.hpp"
#include "engine/io/adapter_discovery.hpp"
#include "engine/serve/adapters/bank_delta.hpp"
#include "engine/serve/adapters/cached_lora_delta.hpp"

#include <map>

namespace lorafleet::serve {

std::unique_ptr<AdapterProvider> open_bank_provider(const std::filesystem::path& bank_dir,
                                                    const io::model_geometry& base) {
    // read_bank runs the one bank validation (bank_validation.hpp), here against the served base too.
    return std::make_unique<BankDelta>(bank::read_bank(bank_dir, {true, true, base, true}), base,
                                       bank_dir.string());
}

std::unique_ptr<AdapterProvider> open_raw_provider(const std::vector<std::filesystem::path>& paths,
                                                   const io::model_geometry& base,
                                                   std::uint64_t cache_bytes) {
    auto provider = std::make_unique<CachedLoraDelta>(base, cache_bytes);
    std::map<std::string, std::filesystem::path> seen;
    for (const auto& path : paths)
        for (const auto& dir : io::find_adapter_dirs(path)) {
            const auto clean = dir.lexically_normal(); // "a/b/" names "b"
            const std::string name =
                (clean.has_filename() ? clean.filename() : clean.parent_path().filename()).string();
            const auto [it, fresh] = seen.emplace(name, dir);
            if (!fresh)
                throw usage_error(dir.string(), "adapter name '" + name + "' is also used by " +
                                                    it->second.string() + " (adapters are named by folder)");
            provider->add(dir, name);
        }
    return provider;
}

} // namespace lorafleet::serve
