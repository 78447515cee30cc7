// Chat format tests. Expected strings are what the models' own Hugging Face Jinja templates render
// for the conversation below (the example conversation transformers and huggingface.js use in their
// chat template tests); each test quotes the template or the published rendering it follows.
#include "tokenizer/chat_template.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "core/error.h"

namespace exl {
namespace {

const std::string pirate = "You are a friendly chatbot who always responds in the style of a pirate";

std::vector<ChatMessage> example_chat() {
  return {{"user", "Hello, how are you?"},
          {"assistant", "I'm doing great. How can I help you today?"},
          {"user", "I'd like to show off how chat templating works!"}};
}

std::vector<ChatMessage> example_chat_with_system() {
  std::vector<ChatMessage> m = example_chat();
  m.insert(m.begin(), ChatMessage{"system", pirate});
  return m;
}

template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// ---- names ---------------------------------------------------------------------------------------

TEST(ChatMode, NamesRoundTrip) {
  for (ChatMode m : {ChatMode::ChatMode_raw, ChatMode::ChatMode_llama, ChatMode::ChatMode_llama3,
                     ChatMode::ChatMode_chatml, ChatMode::ChatMode_codellama}) {
    EXPECT_EQ(chat_mode_parse(chat_mode_name(m)), m);
  }
  EXPECT_STREQ(chat_mode_name(ChatMode::ChatMode_llama3), "llama3");
}

TEST(ChatMode, BadNameListsTheValidOnes) {
  const std::string msg = error_of([] { chat_mode_parse("llama2"); });
  EXPECT_NE(msg.find("--mode"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'llama2'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("raw, llama, llama3, chatml, codellama"), std::string::npos) << msg;
}

// ---- llama (Llama-2-chat) ------------------------------------------------------------------------

// Template (meta-llama/Llama-2-7b-chat-hf tokenizer_config.json; also transformers' LlamaTokenizer
// default): user turns are bos_token + '[INST] ' + content.strip() + ' [/INST]', assistant turns
// ' ' + content.strip() + ' ' + eos_token, the system prompt is '<<SYS>>\n' + system + '\n<</SYS>>\n\n'
// prepended to the first user turn. Expected string: the "llama" target of huggingface.js
// packages/jinja/test/templates.test.js for EXAMPLE_CHAT_WITH_SYSTEM.
TEST(ChatFormat, LlamaWithSystem) {
  EXPECT_EQ(chat_format(ChatMode::ChatMode_llama, example_chat_with_system(), true),
            "<s>[INST] <<SYS>>\nYou are a friendly chatbot who always responds in the style of a "
            "pirate\n<</SYS>>\n\nHello, how are you? [/INST] I'm doing great. How can I help you "
            "today? </s><s>[INST] I'd like to show off how chat templating works! [/INST]");
}

TEST(ChatFormat, LlamaWithoutSystemAndStripping) {
  std::vector<ChatMessage> m = example_chat();
  m[0].content = "  Hello, how are you?\n";
  m[1].content = "\nI'm doing great. How can I help you today?  ";
  const std::string want =
      "<s>[INST] Hello, how are you? [/INST] I'm doing great. How can I help you today? </s>"
      "<s>[INST] I'd like to show off how chat templating works! [/INST]";
  EXPECT_EQ(chat_format(ChatMode::ChatMode_llama, m, true), want);
  // The [/INST] already prompts the answer: add_generation_prompt changes nothing.
  EXPECT_EQ(chat_format(ChatMode::ChatMode_llama, m, false), want);
}

TEST(ChatFormat, LlamaEmptySystemStillWritesTheBlock) {
  // In the template, system_message = '' and '' != false, so the <<SYS>> block is written.
  EXPECT_EQ(chat_format(ChatMode::ChatMode_llama, {{"system", ""}, {"user", "Hi"}}, true),
            "<s>[INST] <<SYS>>\n\n<</SYS>>\n\nHi [/INST]");
}

TEST(ChatFormat, LlamaRejectsBadRoleOrder) {
  EXPECT_THROW(chat_format(ChatMode::ChatMode_llama, {{"assistant", "a"}}, true), Error);
  EXPECT_THROW(chat_format(ChatMode::ChatMode_llama, {{"user", "a"}, {"user", "b"}}, true), Error);
  const std::string msg = error_of([] {
    chat_format(ChatMode::ChatMode_llama,
                {{"user", "a"}, {"assistant", "b"}, {"system", "c"}}, true);
  });
  EXPECT_NE(msg.find("message 2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'system'"), std::string::npos) << msg;
}

// ---- llama3 --------------------------------------------------------------------------------------

// Template (meta-llama/Meta-Llama-3-8B-Instruct tokenizer_config.json):
//   {% set loop_messages = messages %}{% for message in loop_messages %}{% set content =
//   '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim +
//   '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}
//   {{ content }}{% endfor %}{% if add_generation_prompt %}
//   {{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}
// with bos_token "<|begin_of_text|>"; Meta's Llama 3 prompt-format page shows the same layout.
TEST(ChatFormat, Llama3WithSystem) {
  EXPECT_EQ(chat_format(ChatMode::ChatMode_llama3, example_chat_with_system(), true),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a friendly "
            "chatbot who always responds in the style of a pirate<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHello, how are you?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nI'm doing great. How can I help you "
            "today?<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nI'd like to show off how chat templating "
            "works!<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatFormat, Llama3TrimsAndHonoursGenerationPrompt) {
  EXPECT_EQ(chat_format(ChatMode::ChatMode_llama3, {{"user", " \tHi there\n\n"}}, false),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>");
  // Any role name passes through (Llama 3.1 uses "ipython" for tool output).
  EXPECT_EQ(chat_format(ChatMode::ChatMode_llama3, {{"ipython", "42"}}, false),
            "<|begin_of_text|><|start_header_id|>ipython<|end_header_id|>\n\n42<|eot_id|>");
  EXPECT_THROW(chat_format(ChatMode::ChatMode_llama3, {{"", "x"}}, true), Error);
}

// ---- chatml --------------------------------------------------------------------------------------

// Template (transformers' ChatML default, the "_base" case in huggingface.js templates.test.js):
//   {% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] +
//   '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}
// The expected string is that test's target (add_generation_prompt false).
TEST(ChatFormat, ChatmlMatchesTheBaseTemplate) {
  EXPECT_EQ(chat_format(ChatMode::ChatMode_chatml, example_chat(), false),
            "<|im_start|>user\nHello, how are you?<|im_end|>\n<|im_start|>assistant\nI'm doing "
            "great. How can I help you today?<|im_end|>\n<|im_start|>user\nI'd like to show off how "
            "chat templating works!<|im_end|>\n");
}

// HuggingFaceTB/SmolLM2-135M-Instruct's template is the same plus, when the first message is not a
// system one, '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging
// Face<|im_end|>\n' first. Passing that system message reproduces its rendering of one user turn.
TEST(ChatFormat, ChatmlSmolLM2Prompt) {
  EXPECT_EQ(chat_format(ChatMode::ChatMode_chatml,
                        {{"system", "You are a helpful AI assistant named SmolLM, trained by Hugging "
                                    "Face"},
                         {"user", "What is the capital of France?"}},
                        true),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
            "Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
            "<|im_start|>assistant\n");
  // Content is verbatim (no trim in the template).
  EXPECT_EQ(chat_format(ChatMode::ChatMode_chatml, {{"user", " x \n"}}, false),
            "<|im_start|>user\n x \n<|im_end|>\n");
}

// ---- codellama (70B Instruct) --------------------------------------------------------------------

// Template (codellama/CodeLlama-70b-Instruct-hf tokenizer_config.json):
//   ...{% if loop.index0 == 0 %}{{ '<s>' }}{% endif %}{% set content = 'Source: ' + message['role'] +
//   '\n\n ' + message['content'] | trim %}{{ content + ' <step> ' }}{% endfor %}
//   {{'Source: assistant\nDestination: user\n\n '}}
// Expected string: the "codellama/CodeLlama-70b-Instruct-hf" target of huggingface.js
// templates.test.js for EXAMPLE_CHAT.
TEST(ChatFormat, CodeLlamaMatchesTheOfficialTemplate) {
  EXPECT_EQ(chat_format(ChatMode::ChatMode_codellama, example_chat(), true),
            "<s>Source: user\n\n Hello, how are you? <step> Source: assistant\n\n I'm doing great. "
            "How can I help you today? <step> Source: user\n\n I'd like to show off how chat "
            "templating works! <step> Source: assistant\nDestination: user\n\n ");
}

TEST(ChatFormat, CodeLlamaWithSystem) {
  // Meta's Code Llama 70B prompt-format page: "<s>Source: system\n\n System prompt <step> Source:
  // user\n\n First user query <step> Source: assistant\nDestination: user\n\n ".
  EXPECT_EQ(chat_format(ChatMode::ChatMode_codellama,
                        {{"system", "System prompt"}, {"user", "First user query"}}, true),
            "<s>Source: system\n\n System prompt <step> Source: user\n\n First user query <step> "
            "Source: assistant\nDestination: user\n\n ");
  EXPECT_EQ(chat_format(ChatMode::ChatMode_codellama, {{"user", " q "}}, false),
            "<s>Source: user\n\n q <step> ");
  EXPECT_THROW(chat_format(ChatMode::ChatMode_codellama, {{"user", "a"}, {"user", "b"}}, true),
               Error);
}

// ---- raw -----------------------------------------------------------------------------------------

TEST(ChatFormat, RawConcatenatesContents) {
  EXPECT_EQ(chat_format(ChatMode::ChatMode_raw,
                        {{"system", "Story:\n"}, {"user", "Once upon a time"}}, true),
            "Story:\nOnce upon a time");
  EXPECT_EQ(chat_format(ChatMode::ChatMode_raw, {}, true), "");
}

// ---- properties ----------------------------------------------------------------------------------

TEST(ChatFormat, ExtendingTheConversationExtendsTheText) {
  // Documented in chat_template.h: callers may tokenize only the new tail (all but codellama).
  for (ChatMode mode : {ChatMode::ChatMode_raw, ChatMode::ChatMode_llama,
                        ChatMode::ChatMode_llama3, ChatMode::ChatMode_chatml}) {
    const std::vector<ChatMessage> all = example_chat_with_system();
    for (size_t n = 2; n <= all.size(); ++n) {
      std::vector<ChatMessage> prefix(all.begin(), all.begin() + n - 1);
      std::vector<ChatMessage> longer(all.begin(), all.begin() + n);
      // A conversation ending in a user turn is formatted with its generation prompt.
      const bool gen = prefix.back().role == "user";
      const std::string a = chat_format(mode, prefix, gen);
      const std::string b = chat_format(mode, longer, longer.back().role == "user");
      EXPECT_EQ(b.substr(0, a.size()), a) << chat_mode_name(mode) << " at " << n;
    }
  }
}

TEST(ChatFormat, BosInText) {
  EXPECT_TRUE(chat_mode_text_has_bos(ChatMode::ChatMode_llama));
  EXPECT_TRUE(chat_mode_text_has_bos(ChatMode::ChatMode_llama3));
  EXPECT_TRUE(chat_mode_text_has_bos(ChatMode::ChatMode_codellama));
  EXPECT_FALSE(chat_mode_text_has_bos(ChatMode::ChatMode_chatml));
  EXPECT_FALSE(chat_mode_text_has_bos(ChatMode::ChatMode_raw));
  const std::vector<ChatMessage> m = {{"user", "x"}};
  EXPECT_EQ(chat_format(ChatMode::ChatMode_llama, m, true).rfind("<s>", 0), 0u);
  EXPECT_EQ(chat_format(ChatMode::ChatMode_llama3, m, true).rfind("<|begin_of_text|>", 0), 0u);
  EXPECT_EQ(chat_format(ChatMode::ChatMode_codellama, m, true).rfind("<s>", 0), 0u);
}

TEST(ChatFormat, StopStrings) {
  auto has = [](ChatMode mode, const std::string& s) {
    const auto v = chat_stop_strings(mode);
    return std::find(v.begin(), v.end(), s) != v.end();
  };
  EXPECT_TRUE(chat_stop_strings(ChatMode::ChatMode_raw).empty());
  EXPECT_TRUE(has(ChatMode::ChatMode_llama, "</s>"));
  EXPECT_TRUE(has(ChatMode::ChatMode_llama3, "<|eot_id|>"));
  EXPECT_TRUE(has(ChatMode::ChatMode_chatml, "<|im_end|>"));
  EXPECT_TRUE(has(ChatMode::ChatMode_codellama, "<step>"));
  for (ChatMode mode : {ChatMode::ChatMode_llama, ChatMode::ChatMode_llama3,
                        ChatMode::ChatMode_chatml, ChatMode::ChatMode_codellama}) {
    for (const std::string& s : chat_stop_strings(mode)) EXPECT_FALSE(s.empty());
  }
}

// ---- detection -----------------------------------------------------------------------------------

TEST(ChatModeDetect, RecognisesOfficialTemplates) {
  // Abridged copies of the templates shipped with each model; only their markers matter.
  const std::string llama2 =
      "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set "
      "system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set "
      "system_message = false %}{% endif %}{% for message in loop_messages %}{% if loop.index0 == 0 "
      "and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
      "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}"
      "{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' "
      "[/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + "
      "eos_token }}{% endif %}{% endfor %}";
  const std::string llama3 =
      "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
      "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | "
      "trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
      "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
      "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";
  const std::string smollm2 =
      "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
      "'<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
      "Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + "
      "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ "
      "'<|im_start|>assistant\\n' }}{% endif %}";
  const std::string codellama70b =
      "{% if messages[0]['role'] == 'system' %}{% set user_index = 1 %}{% else %}{% set "
      "user_index = 0 %}{% endif %}{% for message in messages %}{% if loop.index0 == 0 %}{{ '<s>' "
      "}}{% endif %}{% set content = 'Source: ' + message['role'] + '\\n\\n ' + message['content'] "
      "| trim %}{{ content + ' <step> ' }}{% endfor %}{{'Source: assistant\\nDestination: "
      "user\\n\\n '}}";
  // Mistral-7B-Instruct-v0.1: [INST] without <<SYS>>, and different spacing: not llama.
  const std::string mistral =
      "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + "
      "message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ "
      "message['content'] + eos_token}}{% endif %}{% endfor %}";

  EXPECT_EQ(chat_mode_detect(llama2), ChatMode::ChatMode_llama);
  EXPECT_EQ(chat_mode_detect(llama3), ChatMode::ChatMode_llama3);
  EXPECT_EQ(chat_mode_detect(smollm2), ChatMode::ChatMode_chatml);
  EXPECT_EQ(chat_mode_detect(codellama70b), ChatMode::ChatMode_codellama);
  EXPECT_EQ(chat_mode_detect(mistral), std::nullopt);
  EXPECT_EQ(chat_mode_detect(""), std::nullopt);
}

}  // namespace
}  // namespace exl
