#include "bitstream/nal.h"

#include <cstring>

#include "common/error.h"

namespace bitsr {

void split_annexb(const uint8_t* data, size_t size, std::vector<NalSpan>& out) {
  // Find each 00 00 01; a NAL runs to the next start code, minus trailing zero bytes
  // (trailing_zero_8bits and the leading zero of a 4-byte start code).
  size_t i = 0;
  auto find_sc = [&](size_t from) -> size_t {
    while (from + 2 < size) {
      const void* p = std::memchr(data + from, 0, size - from - 2);
      if (!p) return size;
      size_t k = (const uint8_t*)p - data;
      if (data[k + 1] == 0 && data[k + 2] == 1) return k;
      from = k + 1;
    }
    return size;
  };
  size_t sc = find_sc(0);
  while (sc < size) {
    size_t start = sc + 3;
    size_t next = find_sc(start);
    size_t end = next;
    while (end > start && data[end - 1] == 0) --end;
    if (end > start) out.push_back({data + start, end - start, start});
    sc = next;
  }
  (void)i;
}

void split_length_prefixed(const uint8_t* data, size_t size, int length_size, std::vector<NalSpan>& out) {
  if (length_size != 1 && length_size != 2 && length_size != 4)
    fail("lengthSizeMinusOne", "unsupported NAL length size " + std::to_string(length_size));
  size_t pos = 0;
  while (pos < size) {
    if (size - pos < (size_t)length_size) fail("NALUnitLength", "truncated NAL length prefix");
    uint64_t len = 0;
    for (int k = 0; k < length_size; ++k) len = (len << 8) | data[pos + k];
    pos += length_size;
    if (len > size - pos) fail("NALUnitLength", "NAL length " + std::to_string(len) + " runs past the packet");
    if (len > 0) out.push_back({data + pos, (size_t)len, pos});
    pos += (size_t)len;
  }
}

void unescape_rbsp(const uint8_t* data, size_t size, std::vector<uint8_t>& out, std::vector<uint32_t>* removed) {
  out.resize(size);
  uint8_t* dst = out.data();
  size_t o = 0, i = 0;
  while (i < size) {
    // Fast path: copy runs without a possible 00 00 03 pattern.
    const void* z = std::memchr(data + i, 0, size - i);
    size_t zi = z ? (size_t)((const uint8_t*)z - data) : size;
    if (zi + 2 >= size) {
      std::memcpy(dst + o, data + i, size - i);
      o += size - i;
      break;
    }
    std::memcpy(dst + o, data + i, zi - i);
    o += zi - i;
    i = zi;
    if (data[i + 1] == 0 && data[i + 2] == 3) {
      dst[o++] = 0;
      dst[o++] = 0;
      if (removed) removed->push_back((uint32_t)(i + 2));
      i += 3;
    } else {
      dst[o++] = data[i++];
    }
  }
  out.resize(o);
}

NalHeader parse_nal_header(const uint8_t* data, size_t size) {
  if (size < 2) fail("nal_unit_header", "NAL unit shorter than its 2-byte header");
  if (data[0] & 0x80) fail("forbidden_zero_bit", "forbidden_zero_bit is set");
  NalHeader h;
  h.type = (data[0] >> 1) & 0x3f;
  h.layer_id = ((data[0] & 1) << 5) | (data[1] >> 3);
  int tid_plus1 = data[1] & 7;
  if (tid_plus1 == 0) fail("nuh_temporal_id_plus1", "nuh_temporal_id_plus1 is 0");
  h.temporal_id = tid_plus1 - 1;
  return h;
}

int parse_hvcc(const uint8_t* data, size_t size, std::vector<NalSpan>& nals) {
  if (size < 23) fail("hvcC", "hvcC record shorter than 23 bytes");
  if (data[0] != 1) fail("configurationVersion", "unknown hvcC configurationVersion " + std::to_string(data[0]));
  int length_size = (data[21] & 3) + 1;
  int num_arrays = data[22];
  size_t pos = 23;
  for (int a = 0; a < num_arrays; ++a) {
    if (size - pos < 3) fail("hvcC", "truncated hvcC array");
    int num_nalus = (data[pos + 1] << 8) | data[pos + 2];
    pos += 3;
    for (int n = 0; n < num_nalus; ++n) {
      if (size - pos < 2) fail("hvcC", "truncated hvcC NAL length");
      size_t len = (data[pos] << 8) | data[pos + 1];
      pos += 2;
      if (len > size - pos) fail("hvcC", "hvcC NAL unit runs past the record");
      if (len) nals.push_back({data + pos, len, pos});
      pos += len;
    }
  }
  return length_size;
}

}  // namespace bitsr
