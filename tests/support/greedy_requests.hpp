// Submits every (adapter, prompt) request to a serving engine at once and waits for them all: the greedy
// tokens each produced (max_tokens new tokens, EOS not stopping), in request order. Throws
// std::runtime_error naming the error of the first request that did not finish. The device tests compare
// these token lists between engines on different devices.
#pragma once

#include "engine/serve/scheduling/serving_engine.hpp"
#include "engine/serve/tokenizer/tokenizer.hpp"

#include <string>
#include <utility>
#include <vector>

namespace lorafleet::test {

using request_list = std::vector<std::pair<std::string, std::string>>; // adapter, prompt

std::vector<std::vector<int>> serve_all(serve::serving_engine& engine, const serve::Tokenizer& tokenizer,
                                        const request_list& requests, int max_tokens);

} // namespace lorafleet::test
