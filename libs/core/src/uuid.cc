#include "portico/core/uuid.h"

#include <sodium.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace portico {

std::string NewUuidV7() {
  static const bool sodium_ready = sodium_init() >= 0;
  if (!sodium_ready) std::abort();  // No CSPRNG: nothing safe can be done.
  std::array<std::uint8_t, 16> b;
  randombytes_buf(b.data(), b.size());
  std::uint64_t ms = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::system_clock::now().time_since_epoch())
          .count());
  // RFC 9562 §6.2 method 1: the 12-bit rand_a field is a counter, so ids made
  // by this process are strictly increasing even within one millisecond. A
  // new millisecond restarts it at a random value in its lower half; an
  // overflow borrows the next millisecond.
  std::uint16_t counter;
  {
    static std::mutex mu;
    static std::uint64_t last_ms = 0;     // guarded by mu
    static std::uint16_t last_count = 0;  // guarded by mu
    std::lock_guard lock(mu);
    if (ms > last_ms) {
      last_ms = ms;
      last_count = static_cast<std::uint16_t>(((b[6] << 8) | b[7]) & 0x07FF);
    } else if (++last_count > 0x0FFF) {
      ++last_ms;
      last_count = 0;
    }
    ms = last_ms;
    counter = last_count;
  }
  for (int i = 0; i < 6; ++i) b[i] = static_cast<std::uint8_t>(ms >> (40 - 8 * i));
  b[6] = static_cast<std::uint8_t>(0x70 | (counter >> 8));  // version 7
  b[7] = static_cast<std::uint8_t>(counter & 0xFF);
  b[8] = static_cast<std::uint8_t>(0x80 | (b[8] & 0x3F));  // RFC 4122 variant
  char out[37];
  std::snprintf(out, sizeof out,
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
                b[15]);
  return std::string(out, 36);
}

bool IsUuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
      return false;
    }
  }
  return true;
}

}  // namespace portico
