// Greedy requests submitted at once (see greedy_requests.hpp).
#include "tests/support/greedy_requests.hpp"

#include <future>
#include <stdexcept>

namespace lorafleet::test {

std::vector<std::vector<int>> serve_all(serve::serving_engine& engine, const serve::Tokenizer& tokenizer,
                                        const request_list& requests, int max_tokens) {
    std::vector<std::promise<serve::completion_result>> done(requests.size());
    for (std::size_t i = 0; i < requests.size(); ++i) {
        serve::completion_request r;
        r.adapter = requests[i].first;
        r.prompt = tokenizer.encode(requests[i].second, true);
        r.params.max_tokens = max_tokens;
        r.params.stop_at_eos = false;
        r.on_done = [&done, i](const serve::completion_result& res) { done[i].set_value(res); };
        engine.submit(std::move(r));
    }
    std::vector<std::vector<int>> tokens;
    for (auto& d : done) {
        const serve::completion_result res = d.get_future().get();
        if (res.status != serve::completion_status::finished)
            throw std::runtime_error("request failed: " + res.error);
        tokens.push_back(res.tokens);
    }
    return tokens;
}

} // namespace lorafleet::test
