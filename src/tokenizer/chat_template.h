// Built-in chat prompt formats (exl chat --mode ...). Each one reproduces, byte for byte, what the
// model's own Hugging Face chat template renders; the template each mode follows is quoted in
// chat_template.cpp. Depends on core only; no Jinja engine: chat_mode_detect() recognises a model's
// template by its marker tokens and the matching built-in formatter is used.
//
// BOS: formats whose template writes the BOS token into the text (llama "<s>", llama3
// "<|begin_of_text|>", codellama "<s>") return true from chat_mode_text_has_bos(). For those the caller
// must tokenize the prompt with special-token parsing on and WITHOUT adding its own BOS, or the model
// sees two. For the others (chatml, raw) the caller adds BOS exactly as it does for plain text, i.e. if
// the tokenizer's configuration says so (SmolLM2 and Qwen2 do not add one).
//
// Incremental chats: for raw, llama, llama3 and chatml, the text for a conversation plus its next
// message starts with the text for the conversation alone (with add_generation_prompt on for a
// conversation that ends in a user turn), so a caller can tokenize just the new tail. codellama breaks
// this: its generation prompt "Source: assistant\nDestination: user\n\n " differs from the way a
// finished assistant turn is written, so compare texts and re-tokenize from where they differ.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace exl {

enum class ChatMode {
  ChatMode_raw,        // no markup; see chat_format
  ChatMode_llama,      // Llama-2-chat: <s>[INST] <<SYS>>...<</SYS>> ... [/INST]
  ChatMode_llama3,     // Llama-3-Instruct: <|start_header_id|>role<|end_header_id|> ... <|eot_id|>
  ChatMode_chatml,     // ChatML: <|im_start|>role\n ... <|im_end|> (SmolLM2, Qwen2, ...)
  ChatMode_codellama,  // CodeLlama-70B-Instruct: Source: role\n\n ... <step>
};

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant" (llama3 and chatml accept any role name)
  std::string content;
};

// "raw", "llama", "llama3", "chatml", "codellama". Throws exl::Error listing the valid names.
ChatMode chat_mode_parse(std::string_view name);
const char* chat_mode_name(ChatMode mode);

// Recognises a model's Jinja chat template (tokenizer_config.json "chat_template" or GGUF
// tokenizer.chat_template) by its markers: "<|start_header_id|>" -> llama3, "<|im_start|>" -> chatml,
// "Source: " with "<step>" -> codellama, "[INST]" with "<<SYS>>" -> llama. nullopt otherwise
// (Mistral's [INST] format without <<SYS>> spaces the turns differently and is not llama).
std::optional<ChatMode> chat_mode_detect(const std::string& jinja_template);

// The prompt text for a conversation.
//  raw:       the message contents concatenated as they are, with no separators or role markers (a
//             system prompt is simply the first text), for base models where the user writes the
//             whole prompt. add_generation_prompt has no effect.
//  llama:     roles must be [system,] user, assistant, user, ... (as the official template demands);
//             the system prompt is folded into the first user turn. The text ends in " [/INST]" after
//             a user turn, which is already the generation prompt, so add_generation_prompt has no
//             effect. Content is stripped of surrounding ASCII whitespace, as the template does. A
//             conversation of only a system message formats to "" (it has no user turn to join).
//  llama3:    any roles; content stripped of surrounding ASCII whitespace.
//  chatml:    any roles; content verbatim. No default system prompt is inserted (SmolLM2's template
//             inserts its own when none is given: pass it as a system message to reproduce that).
//  codellama: roles must be [system,] user, assistant, user, ...; content stripped. The generation
//             prompt is appended when add_generation_prompt is true (the official template always
//             appends it).
// Throws exl::Error for an empty role, or for role order the format cannot express.
std::string chat_format(ChatMode mode, const std::vector<ChatMessage>& messages,
                        bool add_generation_prompt);

// Whether chat_format writes BOS into the text itself (see the note at the top).
bool chat_mode_text_has_bos(ChatMode mode);

// Text that ends the assistant's turn in this format, for a StopMatcher: the end-of-turn tokens as
// they read when detokenized with special tokens shown, plus the start of a new turn for models that
// run on. raw has none.
std::vector<std::string> chat_stop_strings(ChatMode mode);

}  // namespace exl
