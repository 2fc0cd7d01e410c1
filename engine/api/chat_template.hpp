// Turning chat messages into the prompt text of /v1/chat/completions.
// What is supported, honestly: we do NOT run Jinja. A model's chat_template (tokenizer_config.json's
// "chat_template", a string or the "default" entry of a list; or chat_template.json / chat_template.jinja)
// is recognised by its marker tokens as one of five common families, and the family's reference format is
// rendered in C++:
//   chatml   "<|im_start|>"             <|im_start|>ROLE\nCONTENT<|im_end|>\n ... <|im_start|>assistant\n
//   llama3   "<|start_header_id|>"      <|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT<|eot_id|> ...
//                                       <|start_header_id|>assistant<|end_header_id|>\n\n   (content trimmed)
//   zephyr   "<|user|>"+"<|assistant|>" <|ROLE|>\nCONTENT{eos}\n ... <|assistant|>\n   (TinyLlama-Chat,
//   Zephyr) llama2   "[INST]"+"<<SYS>>"         [INST] <<SYS>>\nSYSTEM\n<</SYS>>\n\nUSER [/INST] ASSISTANT
//   {eos}{bos}[INST] ... mistral  "[INST]" (no <<SYS>>)      [INST] USER [/INST]ASSISTANT{eos}[INST] ...   (a
//   system message is put
//                                       before the first user message, separated by a blank line)
// The leading BOS the templates write is left out: the tokenizer adds it (add_bos_token). Special tokens
// written as text (<|im_start|>, </s>, ...) become their ids only when the tokenizer matches added tokens
// in text: our tokenizer.json tokenizer does (it splits on added tokens first); a model with only a
// SentencePiece tokenizer.model reads them as plain text. A default system prompt that some templates
// insert when none is given (Qwen2's) is not reproduced; whitespace between turns follows the family's
// reference rendering and may differ by a space from a particular model's variant. A template that is missing
// or matches none of the families (tool calling, custom formats) gets the documented fallback, which any
// model can continue but none was trained on: "<|ROLE|>\nCONTENT\n" per message, then "<|assistant|>\n".
// Immutable after construction; thread-safe.
#pragma once

#include "engine/api/openai_protocol.hpp"

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace lorafleet::api {

enum class chat_format { fallback, chatml, llama3, zephyr, llama2, mistral };
std::string_view chat_format_name(chat_format f);

class chat_template {
public:
    chat_template() = default; // the fallback
    chat_template(chat_format format, std::string bos_text, std::string eos_text);

    // Recognises `jinja` (empty: no template); `bos_text` / `eos_text` are the model's BOS/EOS token strings.
    static chat_template detect(std::string_view jinja, std::string bos_text, std::string eos_text);
    // Reads the template and the BOS/EOS strings from a model folder (missing files are fine: fallback).
    // format_error for a tokenizer_config.json that is not valid JSON.
    static chat_template from_model_dir(const std::filesystem::path& model_dir);

    chat_format format() const { return m_format; }
    bool recognised() const { return m_format != chat_format::fallback; }
    bool had_template() const { return m_had_template; } // a template was present (recognised or not)

    // The prompt for `messages` followed by the assistant's generation prompt.
    std::string render(const std::vector<chat_message>& messages) const;

private:
    chat_format m_format = chat_format::fallback;
    std::string m_bos, m_eos;
    bool m_had_template = false;
};

} // namespace lorafleet::api
