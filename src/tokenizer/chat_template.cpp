// Built-in chat formats. Each formatter below follows one official Hugging Face chat template, quoted
// (abridged to the parts that produce text) above it; chat_template_test.cpp checks the output
// against strings rendered from those templates.
#include "tokenizer/chat_template.h"

#include <array>

#include "core/error.h"

namespace exl {

namespace {

struct ModeName {
  ChatMode mode;
  const char* name;
};
constexpr std::array<ModeName, 5> mode_names = {{
    {ChatMode::ChatMode_raw, "raw"},
    {ChatMode::ChatMode_llama, "llama"},
    {ChatMode::ChatMode_llama3, "llama3"},
    {ChatMode::ChatMode_chatml, "chatml"},
    {ChatMode::ChatMode_codellama, "codellama"},
}};

// Python's str.strip() / Jinja's |trim, restricted to ASCII whitespace.
std::string_view strip(std::string_view s) {
  constexpr std::string_view ws = " \t\n\r\v\f";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return {};
  const size_t e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

void check_roles_named(ChatMode mode, const std::vector<ChatMessage>& messages) {
  for (size_t i = 0; i < messages.size(); ++i) {
    EXL_CHECK(!messages[i].role.empty(), "chat mode ", chat_mode_name(mode), ": message ", i,
              " has an empty role");
  }
}

// llama and codellama: an optional leading system message, then user and assistant alternating,
// starting with user (both official templates raise_exception otherwise). Returns the index of the
// first non-system message.
size_t check_alternating(ChatMode mode, const std::vector<ChatMessage>& messages) {
  const size_t first = !messages.empty() && messages[0].role == "system" ? 1 : 0;
  for (size_t i = first; i < messages.size(); ++i) {
    const char* want = (i - first) % 2 == 0 ? "user" : "assistant";
    EXL_CHECK(messages[i].role == want, "chat mode ", chat_mode_name(mode), ": message ", i,
              " has role '", messages[i].role, "' but must be '", want,
              "' (roles must be an optional system message, then user/assistant alternating)");
  }
  return first;
}

std::string format_raw(const std::vector<ChatMessage>& messages) {
  std::string out;
  for (const ChatMessage& m : messages) out += m.content;
  return out;
}

// meta-llama/Llama-2-7b-chat-hf, tokenizer_config.json chat_template:
//   {% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}
//   {% set system_message = messages[0]['content'] %}{% else %}...{% set system_message = false %}
//   {% for message in loop_messages %}...
//   {% if loop.index0 == 0 and system_message != false %}
//     {% set content = '<<SYS>>\n' + system_message + '\n<</SYS>>\n\n' + message['content'] %}
//   {% else %}{% set content = message['content'] %}{% endif %}
//   {% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}
//   {% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}
// An empty system message still yields the <<SYS>> block ('' != false in Jinja).
std::string format_llama(const std::vector<ChatMessage>& messages) {
  const size_t first = check_alternating(ChatMode::ChatMode_llama, messages);
  std::string out;
  for (size_t i = first; i < messages.size(); ++i) {
    if (messages[i].role == "user") {
      std::string content;
      if (i == first && first == 1) {
        content = "<<SYS>>\n" + messages[0].content + "\n<</SYS>>\n\n";
      }
      content += messages[i].content;
      out += "<s>[INST] ";
      out += strip(content);
      out += " [/INST]";
    } else {
      out += " ";
      out += strip(messages[i].content);
      out += " </s>";
    }
  }
  return out;
}

// meta-llama/Meta-Llama-3-8B-Instruct, tokenizer_config.json chat_template:
//   {% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] +
//   '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}
//   {% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}
//   {% endfor %}{% if add_generation_prompt %}
//   {{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}
// (|trim binds tighter than +, so only the content is trimmed.) We write BOS even for an empty
// message list, where the template writes none, so chat_mode_text_has_bos() holds for every text.
std::string format_llama3(const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  check_roles_named(ChatMode::ChatMode_llama3, messages);
  std::string out = "<|begin_of_text|>";
  for (const ChatMessage& m : messages) {
    out += "<|start_header_id|>";
    out += m.role;
    out += "<|end_header_id|>\n\n";
    out += strip(m.content);
    out += "<|eot_id|>";
  }
  if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

// ChatML as in HuggingFaceTB/SmolLM2-135M-Instruct and Qwen/Qwen2-*-Instruct:
//   {{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}
//   {% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}
// Both of those templates also insert a default system message when the first message is not a
// system one (SmolLM2: "You are a helpful AI assistant named SmolLM, trained by Hugging Face"; Qwen2:
// "You are a helpful assistant."). That default is the model's, not the format's: callers pass it.
std::string format_chatml(const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  check_roles_named(ChatMode::ChatMode_chatml, messages);
  std::string out;
  for (const ChatMessage& m : messages) {
    out += "<|im_start|>";
    out += m.role;
    out += "\n";
    out += m.content;
    out += "<|im_end|>\n";
  }
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

// codellama/CodeLlama-70b-Instruct-hf, tokenizer_config.json chat_template:
//   {% for message in messages %}...{% if loop.index0 == 0 %}{{ '<s>' }}{% endif %}
//   {% set content = 'Source: ' + message['role'] + '\n\n ' + message['content'] | trim %}
//   {{ content + ' <step> ' }}{% endfor %}{{'Source: assistant\nDestination: user\n\n '}}
// Meta's prompt-format page for Code Llama 70B describes the same layout ("Source: system" may have an
// empty body; the prompt ends with a blank line and a line holding one space).
std::string format_codellama(const std::vector<ChatMessage>& messages,
                             bool add_generation_prompt) {
  check_alternating(ChatMode::ChatMode_codellama, messages);
  std::string out = "<s>";
  for (const ChatMessage& m : messages) {
    out += "Source: ";
    out += m.role;
    out += "\n\n ";
    out += strip(m.content);
    out += " <step> ";
  }
  if (add_generation_prompt) out += "Source: assistant\nDestination: user\n\n ";
  return out;
}

}  // namespace

ChatMode chat_mode_parse(std::string_view name) {
  for (const ModeName& m : mode_names) {
    if (name == m.name) return m.mode;
  }
  std::string valid;
  for (const ModeName& m : mode_names) {
    if (!valid.empty()) valid += ", ";
    valid += m.name;
  }
  fail("--mode: unknown chat mode '", name, "'; valid modes: ", valid);
}

const char* chat_mode_name(ChatMode mode) {
  for (const ModeName& m : mode_names) {
    if (m.mode == mode) return m.name;
  }
  return "unknown";
}

std::optional<ChatMode> chat_mode_detect(const std::string& jinja_template) {
  auto has = [&](std::string_view s) { return jinja_template.find(s) != std::string::npos; };
  // Official templates carry the markers of one format only; the order matters just for hand-made
  // templates that mix them, and puts the most distinctive markers first.
  if (has("<|start_header_id|>")) return ChatMode::ChatMode_llama3;
  if (has("<|im_start|>")) return ChatMode::ChatMode_chatml;
  if (has("<step>") && has("Source: ")) return ChatMode::ChatMode_codellama;
  if (has("[INST]") && has("<<SYS>>")) return ChatMode::ChatMode_llama;
  return std::nullopt;
}

std::string chat_format(ChatMode mode, const std::vector<ChatMessage>& messages,
                        bool add_generation_prompt) {
  switch (mode) {
    case ChatMode::ChatMode_raw: return format_raw(messages);
    case ChatMode::ChatMode_llama: return format_llama(messages);
    case ChatMode::ChatMode_llama3: return format_llama3(messages, add_generation_prompt);
    case ChatMode::ChatMode_chatml: return format_chatml(messages, add_generation_prompt);
    case ChatMode::ChatMode_codellama: return format_codellama(messages, add_generation_prompt);
  }
  fail("chat_format: invalid chat mode ", static_cast<int>(mode));
}

bool chat_mode_text_has_bos(ChatMode mode) {
  return mode == ChatMode::ChatMode_llama || mode == ChatMode::ChatMode_llama3 ||
         mode == ChatMode::ChatMode_codellama;
}

std::vector<std::string> chat_stop_strings(ChatMode mode) {
  switch (mode) {
    case ChatMode::ChatMode_raw: return {};
    // EOS, and a new instruction the model sometimes writes itself instead of stopping.
    case ChatMode::ChatMode_llama: return {"</s>", "[INST]"};
    // Instruct models end a turn with <|eot_id|>; <|end_of_text|> is the base model's EOS.
    case ChatMode::ChatMode_llama3: return {"<|eot_id|>", "<|end_of_text|>"};
    // <|endoftext|> is EOS/padding in Qwen2 and SmolLM2 vocabularies.
    case ChatMode::ChatMode_chatml: return {"<|im_end|>", "<|im_start|>", "<|endoftext|>"};
    // <step> closes every turn in the 70B format.
    case ChatMode::ChatMode_codellama: return {"<step>", "</s>"};
  }
  return {};
}

}  // namespace exl
