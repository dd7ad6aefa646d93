// NAL unit framing: Annex B start codes, ISO/IEC 14496-15 length prefixes (hvcC/avcC),
// and emulation-prevention removal.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace bitsr {

struct NalSpan {
  const uint8_t* data;  // first byte of the NAL unit header
  size_t size;          // bytes, trailing zero bytes removed
  size_t offset;        // byte offset of `data` in the buffer that was split
};

// Splits an Annex B byte stream. Bytes before the first start code are ignored.
void split_annexb(const uint8_t* data, size_t size, std::vector<NalSpan>& out);

// Splits length-prefixed NAL units (length_size 1, 2 or 4 bytes, big endian).
// Throws BitstreamError if a length runs past the buffer.
void split_length_prefixed(const uint8_t* data, size_t size, int length_size, std::vector<NalSpan>& out);

// Removes emulation_prevention_three_byte (00 00 03 -> 00 00) from `size` bytes.
// `removed`, if given, receives the escaped-domain offsets of the removed 0x03 bytes, in
// increasing order; entry points in slice headers count those bytes.
void unescape_rbsp(const uint8_t* data, size_t size, std::vector<uint8_t>& out,
                   std::vector<uint32_t>* removed = nullptr);

struct NalHeader {
  int type = 0;
  int layer_id = 0;
  int temporal_id = 0;
};
// Parses and checks the two-byte NAL unit header.
NalHeader parse_nal_header(const uint8_t* data, size_t size);

// Parses a HEVCDecoderConfigurationRecord (hvcC). Returns the NAL length size and appends the
// parameter-set NAL units it carries (pointing into `data`).
int parse_hvcc(const uint8_t* data, size_t size, std::vector<NalSpan>& nals);

}  // namespace bitsr
