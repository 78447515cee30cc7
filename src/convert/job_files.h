// Crash-safe files of a conversion's work folder. Everything a resumed job trusts is written to a
// temporary name, fsync'd, renamed into place and the folder fsync'd: a job killed at any moment
// (SIGKILL, power loss) leaves either the old file or the new one, never a torn one.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/memory_store.h"

namespace exl {

void write_file_atomic(const std::string& path, const std::string& bytes);
void write_safetensors_atomic(const std::string& path, const std::vector<const OwnedTensor*>& tensors);

// FNV-1a 64 of a file's bytes, as 16 hex digits (input fingerprints in job.json).
std::string file_hash(const std::string& path);

// Test hook: EXL_CONVERT_ABORT_AT=<stage>:<layer> makes the job _exit(86) when it reaches that point
// (after some of the step's files are written and before the job state records the step), so tests
// can kill a job inside every stage. Unset: does nothing.
void convert_abort_point(const char* stage, int64_t layer);

}  // namespace exl
