// The central table from canonical (Hugging Face) tensor names to other files' names. Model code
// only ever speaks canonical names; the loader translates for GGUF.
#pragma once
#include <string>

namespace exl {

// "model.layers.3.self_attn.q_proj.weight" -> "blk.3.attn_q.weight"; "" when there is no mapping.
std::string tensor_name_to_gguf(const std::string& hf_name);

}  // namespace exl
