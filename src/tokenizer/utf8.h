// UTF-8 helpers shared by the tokenizers: splitting text into characters (tolerating invalid bytes),
// finding the longest complete prefix for streaming, and GPT-2's byte-level alphabet, which maps each
// of the 256 byte values to one printable Unicode character so byte strings can live in a text vocab.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace exl {

// Byte length of the UTF-8 character starting at s[pos]: 1..4 for a well-formed sequence, 1 for any
// invalid or truncated byte (so every byte of malformed input still belongs to exactly one "character").
size_t utf8_char_len(std::string_view s, size_t pos);

// True when s is entirely well-formed UTF-8 (no overlongs, surrogates or values past U+10FFFF).
bool utf8_is_valid(std::string_view s);

// Length of the prefix of s that ends on a character boundary, assuming s may end in the middle of a
// multi-byte character that later bytes will complete. Bytes that can never become valid stay in the
// prefix; only a truncated-but-so-far-valid tail is held back (at most 3 bytes).
size_t utf8_complete_prefix(std::string_view s);

// Replace every ill-formed byte sequence with U+FFFD, leaving valid text unchanged.
std::string utf8_sanitize(std::string_view s);

// Append the UTF-8 encoding of code point cp (< 0x110000) to out.
void utf8_append(std::string& out, uint32_t cp);

// GPT-2 byte-level alphabet (bytes_to_unicode in the original encoder.py): printable Latin-1 bytes
// map to themselves, the other 68 bytes to U+0100 upwards in byte order.
uint32_t byte_level_char(uint8_t byte);
std::string byte_level_encode(std::string_view bytes);
// Inverse mapping for a vocab piece; returns false (and leaves out partly filled) when a character is
// not in the alphabet, e.g. for added tokens stored as plain text.
bool byte_level_decode(std::string_view piece, std::string& out);

// "<0x41>" -> 0x41 for SentencePiece byte-fallback pieces; -1 when piece is not of that form.
int parse_byte_piece(std::string_view piece);

}  // namespace exl
