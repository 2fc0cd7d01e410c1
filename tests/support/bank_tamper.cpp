#include "tests/support/bank_tamper.hpp"

#include "engine/core/sha256.hpp"
#include "engine/io/safetensors.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <span>
#include <sstream>

namespace lorafleet::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

json read_manifest(const fs::path& bank) {
    std::ifstream in(bank / "manifest.json");
    return json::parse(in);
}

void write_manifest(const fs::path& bank, const json& j) {
    std::ofstream(bank / "manifest.json", std::ios::trunc) << j.dump(1);
}

void edit_manifest(const fs::path& bank, const std::function<void(json&)>& edit) {
    auto j = read_manifest(bank);
    edit(j);
    write_manifest(bank, j);
}

// Rewrites an F32 safetensors file with `value` put at `index` of the first tensor whose name ends in
// `suffix`.
void poison_tensor(const fs::path& file, const std::string& suffix, std::size_t index, float value) {
    std::vector<std::vector<float>> values;
    std::vector<io::tensor_data> tensors;
    std::map<std::string, std::string> metadata;
    {
        const auto f = io::safetensors_file::open(file);
        metadata = f->metadata();
        values.reserve(f->tensors().size());
        bool poisoned = false;
        for (const auto& t : f->tensors()) {
            values.push_back(t.to_f32());
            if (!poisoned && t.name().ends_with(suffix)) {
                values.back().at(index) = value;
                poisoned = true;
            }
        }
        std::size_t k = 0;
        for (const auto& t : f->tensors()) {
            tensors.push_back(
                {t.name(), io::dtype::F32, t.shape(), std::as_bytes(std::span<const float>(values[k]))});
            ++k;
        }
        fs::path tmp = file;
        tmp += ".new";
        io::write_safetensors(tmp, std::move(tensors), metadata);
        fs::rename(tmp, file);
    }
}

} // namespace

void refresh_bank_checksums(const fs::path& bank) {
    auto j = read_manifest(bank);
    for (auto& f : j["files"]) {
        const auto p = bank / f["name"].get<std::string>();
        std::error_code ec;
        if (!fs::exists(p, ec)) continue;
        f["bytes"] = fs::file_size(p);
        f["sha256"] = sha256_file_hex(p);
    }
    write_manifest(bank, j);
}

std::vector<bank_tamper_case> bank_tamper_cases() {
    std::vector<bank_tamper_case> cases;
    auto manifest_case = [&](std::string name, std::string needle, std::function<void(json&)> edit) {
        cases.push_back({std::move(name), std::move(needle), [edit](const fs::path& bank, const fs::path&) {
                             edit_manifest(bank, edit);
                             refresh_bank_checksums(bank);
                         }});
    };
    manifest_case("shape lie", "is not [",
                  [](json& j) { j["modules"][0]["d_out"] = 2 * j["modules"][0]["d_out"].get<int>(); });
    manifest_case("rank lie", "is not [", [](json& j) { j["rank"] = j["rank"].get<int>() + 1; });
    manifest_case("method lie", "is not [", [](json& j) { j["method"] = "jd-diag"; });
    manifest_case("layer lie", "records layer 1 but its name says 0",
                  [](json& j) { j["modules"][0]["layer"] = 1; });
    manifest_case("negative layer", "\"layer\" = -1 is out of range",
                  [](json& j) { j["modules"][0]["layer"] = -1; });
    manifest_case("module name lie", "is not its last component",
                  [](json& j) { j["modules"][1]["module"] = "q_proj"; });
    manifest_case("adapter name with a slash", "has '/'",
                  [](json& j) { j["adapters"][0]["name"] = "../evil"; });
    manifest_case("cluster reference", "\"cluster\" = 7 is out of range",
                  [](json& j) { j["adapters"][0]["cluster"] = 7; });
    manifest_case("file outside the bank", "lists a file that is not",
                  [](json& j) { j["files"][0]["name"] = "../../etc/passwd"; });
    cases.push_back({"NaN core", "NaN or Inf", [](const fs::path& bank, const fs::path&) {
                         poison_tensor(bank / "cores.safetensors", ".sigma", 3,
                                       std::numeric_limits<float>::quiet_NaN());
                         refresh_bank_checksums(bank);
                     }});
    cases.push_back({"Inf basis", "NaN or Inf", [](const fs::path& bank, const fs::path&) {
                         poison_tensor(bank / "bases/cluster-001.safetensors", ".U", 0,
                                       std::numeric_limits<float>::infinity());
                         refresh_bank_checksums(bank);
                     }});
    cases.push_back(
        {"base file symlinked out", "is a symlink", [](const fs::path& bank, const fs::path& outside) {
             const auto target = outside / "cluster-000.safetensors";
             fs::rename(bank / "bases/cluster-000.safetensors", target);
             fs::create_symlink(target, bank / "bases/cluster-000.safetensors");
             refresh_bank_checksums(bank);
         }});
    cases.push_back({"bases folder symlinked out", "not a folder inside the bank",
                     [](const fs::path& bank, const fs::path& outside) {
                         const auto target = outside / "bases";
                         fs::rename(bank / "bases", target);
                         fs::create_symlink(target, bank / "bases");
                         refresh_bank_checksums(bank);
                     }});
    cases.push_back(
        {"manifest symlinked out", "is a symlink", [](const fs::path& bank, const fs::path& outside) {
             const auto target = outside / "manifest.json";
             fs::rename(bank / "manifest.json", target);
             fs::create_symlink(target, bank / "manifest.json");
         }});
    return cases;
}

} // namespace lorafleet::test
