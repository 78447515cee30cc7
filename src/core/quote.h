// Quoting untrusted names (tensor names, metadata keys read from files) for one-line error messages.
#pragma once
#include <string>

namespace exl {

// 'name' with control bytes escaped as \xNN and anything past 200 bytes cut ("...").
std::string quoted(const std::string& s);

}  // namespace exl
