// Errors raised by the parser. Every failure carries where it happened so a user can
// find the broken byte: NAL index in the stream, byte offset of that NAL, and the
// syntax element being read.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace bitsr {

// Base of every error about the input: where it happened (filled in by the decoder for the
// NAL unit being processed; -1 when unknown) and which syntax element was being read.
struct StreamError : std::runtime_error {
  std::string element;
  int64_t nal_index = -1;
  int64_t byte_offset = -1;
  StreamError(const std::string& elem, const std::string& msg) : std::runtime_error(msg), element(elem) {}
};

// Malformed data: concealed unless the decoder is strict.
struct BitstreamError : StreamError {
  explicit BitstreamError(const std::string& elem, const std::string& msg = "")
      : StreamError(elem, msg.empty() ? ("invalid " + elem) : msg) {}
};

// Valid syntax that bitsr does not implement (SCC, multi-layer, ...). Always raised.
struct UnsupportedError : StreamError {
  explicit UnsupportedError(const std::string& msg, const std::string& elem = "") : StreamError(elem, msg) {}
};

// A configured resource limit was exceeded (picture size, slices, DPB, ...). Always raised:
// limits are policy, never concealed.
struct LimitError : StreamError {
  explicit LimitError(const std::string& msg, const std::string& elem = "") : StreamError(elem, msg) {}
};

[[noreturn]] inline void fail(const char* element) { throw BitstreamError(element); }
[[noreturn]] inline void fail(const char* element, const std::string& msg) { throw BitstreamError(element, msg); }

// Checked range for a value just read: the message names the syntax element.
template <class T>
inline T check_range(T v, long long lo, long long hi, const char* element) {
  if ((long long)v < lo || (long long)v > hi)
    fail(element, std::string(element) + " = " + std::to_string((long long)v) + " out of range [" + std::to_string(lo) +
                      ", " + std::to_string(hi) + "]");
  return v;
}

}  // namespace bitsr
