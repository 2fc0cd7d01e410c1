// bank_compression_settings (see bank_options.hpp).
#include "engine/analysis/bank_options.hpp"

#include "engine/core/error.hpp"

namespace lorafleet::analysis {

namespace {

constexpr const char* kWhere = "bank manifest";

const nlohmann::json* field(const nlohmann::json& parameters, const char* name) {
    if (!parameters.is_object()) return nullptr;
    const auto it = parameters.find(name);
    return it == parameters.end() || it->is_null() ? nullptr : &*it;
}

std::string text(const nlohmann::json& parameters, const char* name, const std::string& fallback) {
    const auto* v = field(parameters, name);
    if (!v) return fallback;
    if (!v->is_string())
        throw validation_error(kWhere, std::string("parameter '") + name + "' is not a string");
    return v->get<std::string>();
}

template <class T> T number(const nlohmann::json& parameters, const char* name, T fallback) {
    const auto* v = field(parameters, name);
    if (!v) return fallback;
    if (!v->is_number())
        throw validation_error(kWhere, std::string("parameter '") + name + "' is not a number");
    return v->get<T>();
}

} // namespace

bank_settings bank_compression_settings(const bank::compressed_bank& bank) {
    if (!bank.parameters.is_object() && !bank.parameters.is_null())
        throw validation_error(kWhere, "'parameters' is not an object");
    const nlohmann::json& p = bank.parameters;
    bank_settings s;
    compress::compress_options& o = s.options;
    o.jd.method = bank.kind;
    o.jd.rank = bank.rank;

    const std::string norm = text(p, "normalize", "unit");
    if (norm == "unit")
        o.jd.norm = compress::normalization::unit;
    else if (norm == "none")
        o.jd.norm = compress::normalization::none;
    else
        throw validation_error(kWhere, "parameter 'normalize' is neither 'unit' nor 'none'");

    const std::string init = text(p, "init", "hosvd");
    if (init == "hosvd")
        o.jd.init = compress::jd_init::hosvd;
    else if (init == "random")
        o.jd.init = compress::jd_init::random;
    else
        throw validation_error(kWhere, "parameter 'init' is neither 'hosvd' nor 'random'");

    o.jd.seed = number<std::uint64_t>(p, "seed", o.jd.seed);
    o.jd.max_sweeps = number<int>(p, "max_sweeps", o.jd.max_sweeps);
    o.jd.tol = number<double>(p, "tol", o.jd.tol);
    o.target_error = number<double>(p, "target_error", o.target_error);

    // "clusters": "auto" or the count as a string (compression_parameters); a bare number is accepted too.
    o.clusters = bank.clusters;
    if (const auto* c = field(p, "clusters")) {
        if (c->is_string() && c->get<std::string>() == "auto") {
            s.automatic_clusters = true;
            o.clusters = 0;
        } else if (c->is_string()) {
            try {
                std::size_t used = 0;
                const std::string v = c->get<std::string>();
                o.clusters = std::stoi(v, &used);
                if (used != v.size() || o.clusters < 1) throw std::invalid_argument("clusters");
            } catch (const std::exception&) {
                throw validation_error(kWhere, "parameter 'clusters' is neither 'auto' nor a positive count");
            }
        } else if (c->is_number_integer() && c->get<long long>() >= 1) {
            o.clusters = c->get<int>();
        } else {
            throw validation_error(kWhere, "parameter 'clusters' is neither 'auto' nor a positive count");
        }
    }
    s.device = text(p, "device", "");
    return s;
}

} // namespace lorafleet::analysis
