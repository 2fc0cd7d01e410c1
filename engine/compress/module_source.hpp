// Where the fleet compressor gets its data: a fleet seen as a list of modules, loaded ONE AT A TIME.
// Real fleets do not fit in memory (1000 Mistral-7B q/k/v adapters are 19 GB), so the driver makes
// streaming passes: load module m, use it, drop it, load m + 1. A source must be able to load the same
// module again on a later pass and give the same data. Adapter indices are 0 .. adapter_count() - 1;
// a batch holds only the adapters that have that module (each at most once).
#pragma once

#include "engine/compress/module_batch.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lorafleet::compress {

struct module_shape {
    std::string name;
    std::int64_t d_out = 0;
    std::int64_t d_in = 0;
};

class ModuleSource {
public:
    virtual ~ModuleSource() = default;

    virtual std::size_t adapter_count() const = 0;
    virtual std::string adapter_name(std::size_t adapter) const {
        return "adapter-" + std::to_string(adapter);
    }
    virtual std::size_t module_count() const = 0;
    virtual module_shape module(std::size_t m) const = 0;
    // The factors of module m (fp32, scale folded into B, PEFT layout; see module_batch.hpp). The batch
    // keeps what it borrows alive through its `storage`.
    virtual module_batch load(std::size_t m) = 0;
};

// A fleet held in memory (tests, synthetic fleets, small real fleets). Batches borrow from the source
// and share ownership of each module's storage. Counts loads so tests can check the streaming contract.
class InMemoryModuleSource final : public ModuleSource {
public:
    explicit InMemoryModuleSource(std::size_t adapters, std::vector<std::string> adapter_names = {});

    // Adds a module (no adapters yet) and returns its index.
    std::size_t add_module(std::string name, std::int64_t d_out, std::int64_t d_in);
    // Sets (or replaces) one adapter's factors on module m; shapes are checked (shape_mismatch).
    void set_factors(std::size_t m, owned_factors factors);

    std::size_t adapter_count() const override { return m_adapters; }
    std::string adapter_name(std::size_t adapter) const override;
    std::size_t module_count() const override { return m_modules.size(); }
    module_shape module(std::size_t m) const override;
    module_batch load(std::size_t m) override;

    std::size_t load_count() const { return m_loads; }
    std::size_t load_count(std::size_t m) const { return m_loads_per_module.at(m); }

private:
    struct stored_module {
        module_shape shape;
        std::shared_ptr<std::vector<owned_factors>> factors; // sorted by adapter index
    };
    std::size_t m_adapters = 0;
    std::vector<std::string> m_names;
    std::vector<stored_module> m_modules;
    std::size_t m_loads = 0;
    std::vector<std::size_t> m_loads_per_module;
};

} // namespace lorafleet::compress
