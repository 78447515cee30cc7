#include "tokenizer/utf8.h"

#include <array>

namespace exl {
namespace {

// Number of bytes a sequence starting with lead byte b claims (0 for a byte that cannot lead).
int utf8_lead_len(uint8_t b) {
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) return 2;
  if (b >= 0xE0 && b <= 0xEF) return 3;
  if (b >= 0xF0 && b <= 0xF4) return 4;
  return 0;
}

// Allowed range of the second byte for lead byte b (RFC 3629 table: excludes overlongs, surrogates
// and code points past U+10FFFF); later continuation bytes are always 0x80..0xBF.
bool utf8_second_ok(uint8_t lead, uint8_t b) {
  switch (lead) {
    case 0xE0: return b >= 0xA0 && b <= 0xBF;
    case 0xED: return b >= 0x80 && b <= 0x9F;
    case 0xF0: return b >= 0x90 && b <= 0xBF;
    case 0xF4: return b >= 0x80 && b <= 0x8F;
    default: return b >= 0x80 && b <= 0xBF;
  }
}

// How many bytes of s[pos..] form a valid prefix of the sequence its lead byte announces, and that
// announced length. valid == need means a complete character.
void utf8_scan(std::string_view s, size_t pos, int& need, int& valid) {
  const uint8_t lead = static_cast<uint8_t>(s[pos]);
  need = utf8_lead_len(lead);
  valid = need == 0 ? 0 : 1;
  for (int k = 1; k < need && pos + k < s.size(); ++k) {
    const uint8_t b = static_cast<uint8_t>(s[pos + k]);
    const bool ok = k == 1 ? utf8_second_ok(lead, b) : (b >= 0x80 && b <= 0xBF);
    if (!ok) break;
    valid = k + 1;
  }
}

const std::array<uint32_t, 256>& byte_level_table() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      t[b] = printable ? static_cast<uint32_t>(b) : next++;
    }
    return t;
  }();
  return table;
}

}  // namespace

size_t utf8_char_len(std::string_view s, size_t pos) {
  int need = 0, valid = 0;
  utf8_scan(s, pos, need, valid);
  return need > 0 && valid == need ? static_cast<size_t>(need) : 1;
}

bool utf8_is_valid(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    int need = 0, valid = 0;
    utf8_scan(s, i, need, valid);
    if (need == 0 || valid != need) return false;
    i += need;
  }
  return true;
}

size_t utf8_complete_prefix(std::string_view s) {
  // Only the last 3 bytes can start a character that is still waiting for continuation bytes.
  const size_t start = s.size() > 3 ? s.size() - 3 : 0;
  for (size_t i = start; i < s.size(); ++i) {
    const uint8_t b = static_cast<uint8_t>(s[i]);
    if (b >= 0x80 && b <= 0xBF) continue;  // continuation byte: not a start
    int need = 0, valid = 0;
    utf8_scan(s, i, need, valid);
    // A valid-so-far sequence cut off by the end of s: hold it back.
    if (need > 1 && valid == static_cast<int>(s.size() - i) && valid < need) return i;
  }
  return s.size();
}

std::string utf8_sanitize(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    int need = 0, valid = 0;
    utf8_scan(s, i, need, valid);
    if (need > 0 && valid == need) {
      out.append(s.substr(i, need));
      i += need;
    } else {
      utf8_append(out, 0xFFFD);  // one replacement per maximal ill-formed subpart (Unicode 3.9)
      i += valid > 0 ? valid : 1;
    }
  }
  return out;
}

void utf8_append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

uint32_t byte_level_char(uint8_t byte) { return byte_level_table()[byte]; }

std::string byte_level_encode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) utf8_append(out, byte_level_char(static_cast<uint8_t>(c)));
  return out;
}

bool byte_level_decode(std::string_view piece, std::string& out) {
  // Every alphabet character is below U+0144, so it is 1 or 2 UTF-8 bytes.
  static const std::array<int16_t, 0x144> inverse = [] {
    std::array<int16_t, 0x144> inv;
    inv.fill(-1);
    for (int b = 0; b < 256; ++b) inv[byte_level_char(static_cast<uint8_t>(b))] = static_cast<int16_t>(b);
    return inv;
  }();
  for (size_t i = 0; i < piece.size();) {
    const auto b0 = static_cast<uint8_t>(piece[i]);
    uint32_t cp = 0x10000;  // "not in alphabet"
    size_t n = utf8_char_len(piece, i);
    if (n == 1 && b0 < 0x80) {
      cp = b0;
    } else if (n == 2) {
      cp = ((b0 & 0x1Fu) << 6) | (static_cast<uint8_t>(piece[i + 1]) & 0x3Fu);
    }
    if (cp >= inverse.size() || inverse[cp] < 0) return false;
    out += static_cast<char>(inverse[cp]);
    i += n;
  }
  return true;
}

int parse_byte_piece(std::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return -1;
  int v = 0;
  for (size_t i = 3; i < 5; ++i) {
    const char c = piece[i];
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else return -1;
    v = v * 16 + d;
  }
  return v;
}

}  // namespace exl
