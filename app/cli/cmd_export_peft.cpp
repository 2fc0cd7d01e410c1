// `lorafleet-cli export-peft BANK --out DIR [--adapter NAME...] [--dtype f32|f16|bf16] [--overwrite]`:
// standard PEFT adapters rebuilt from a compressed bank, one folder per adapter, for vLLM and HF PEFT.
#include "app/cli/args.hpp"
#include "app/cli/commands.hpp"
#include "app/cli/fleet_args.hpp"
#include "engine/bank/bank_format.hpp"
#include "engine/bank/peft_export.hpp"
#include "engine/core/error.hpp"

#include <iostream>

namespace lorafleet::cli {
namespace {

int run_export_peft(const std::vector<std::string>& args) {
    arg_parser p({"out", "adapter", "dtype"}, {"overwrite"});
    p.parse(args);
    if (p.positionals().size() != 1) throw usage_error("", "expected exactly one BANK folder");
    bank::peft_export_options options;
    options.adapters = p.all("adapter");
    options.weights = parse_storage_dtype(p.get_or("dtype", "f32"));
    options.overwrite = p.has("overwrite");
    const std::filesystem::path out = p.required("out");
    bank::check_export_target(out, options.overwrite); // before any work
    const auto b = bank::read_bank(p.positionals()[0]);
    options.progress = [](std::size_t done, std::size_t total) {
        if (total >= 20 && (done % (total / 10) == 0 || done == total))
            std::cerr << "export-peft: " << done << "/" << total << " adapters\n";
        return true;
    };
    const auto dirs = bank::export_peft_adapters(b, out, options);
    std::cout << "exported " << dirs.size() << " PEFT adapter" << (dirs.size() == 1 ? "" : "s") << " to "
              << out.string() << "\n";
    return 0;
}

const command_registrar reg{
    {"export-peft", "rebuild standard PEFT adapters from a compressed bank",
     "usage: lorafleet-cli export-peft BANK --out DIR [--adapter NAME]... [--dtype f32|f16|bf16] "
     "[--overwrite]\n"
     "  Each adapter becomes DIR/NAME with adapter_config.json (r = lora_alpha = bank rank) and\n"
     "  adapter_model.safetensors holding lora_A = V_c^T and lora_B = U_c Sigma_i.\n"
     "  The export is staged beside DIR and renamed into place when complete; --overwrite replaces an\n"
     "  existing export (a folder of PEFT adapters) only then.\n",
     &run_export_peft}};

} // namespace
} // namespace lorafleet::cli
