#include "engine/io/fleet_loader.hpp"

#include "engine/core/error.hpp"
#include "engine/io/adapter_discovery.hpp"
#include "engine/io/fleet.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <optional>
#include <set>
#include <thread>

namespace lorafleet::io {

fleet_load_result load_fleet(const std::vector<std::filesystem::path>& paths,
                             const peft_load_options& options, int threads,
                             const std::function<bool(std::size_t, std::size_t)>& progress) {
    std::vector<std::filesystem::path> dirs;
    std::set<std::filesystem::path> seen;
    for (const auto& p : paths)
        for (auto& d : find_adapter_dirs(p)) {
            std::error_code ec;
            auto key = std::filesystem::weakly_canonical(d, ec);
            if (seen.insert(ec ? d : key).second) dirs.push_back(std::move(d));
        }
    const std::size_t n = dirs.size();
    fleet loaded(n);
    std::vector<std::optional<std::string>> failed(n);
    std::atomic<std::size_t> next{0}, done{0};
    std::atomic<bool> cancel{false};
    auto work = [&] {
        for (std::size_t i; !cancel && (i = next++) < n;) {
            try {
                loaded[i] = std::make_shared<const peft_adapter>(load_peft_adapter(dirs[i], options));
            } catch (const error& e) {
                failed[i] = e.what();
            } catch (const std::exception& e) {
                failed[i] = dirs[i].string() + ": " + e.what();
            }
            ++done;
        }
    };
    const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
    const std::size_t workers =
        std::min<std::size_t>(n, threads > 0 ? unsigned(threads) : std::min(hw * 2, 8u));
    // With a progress callback the calling thread only reports; otherwise it loads too.
    std::vector<std::thread> pool;
    const std::size_t spawn = progress ? workers : (workers > 0 ? workers - 1 : 0);
    for (std::size_t t = 0; t < spawn; ++t)
        pool.emplace_back(work);
    if (progress) {
        while (done < n && !cancel) {
            if (!progress(done, n)) cancel = true;
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
    } else {
        work();
    }
    for (auto& t : pool)
        t.join();
    if (cancel) throw cancelled_error("", "loading adapters cancelled");
    if (progress) progress(n, n);

    fleet_load_result out;
    for (std::size_t i = 0; i < n; ++i) {
        if (loaded[i])
            out.adapters.push_back(std::move(loaded[i]));
        else
            out.failures.push_back({dirs[i], failed[i].value_or("not loaded")});
    }
    return out;
}

} // namespace lorafleet::io
