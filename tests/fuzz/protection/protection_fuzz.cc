// Feeds arbitrary bytes to the gateway's protection parsers that read
// request headers and bodies: addresses and X-Forwarded-For, CIDR lists,
// Accept-Encoding, the JSON nesting scan; checks their properties.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "client_address.h"
#include "compress.h"
#include "protection.h"

using namespace portico::gateway;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);

  // A parsed address prints to text that parses to the same address.
  if (auto a = IpAddress::Parse(in)) {
    auto again = IpAddress::Parse(a->ToString());
    if (!again || again->v4 != a->v4 || again->bytes != a->bytes) std::abort();
  }
  // The client is the peer or an address that parses.
  static const CidrSet trusted = *CidrSet::Parse("10.0.0.0/8, 127.0.0.1, 2001:db8::/32");
  const std::string client = ResolveClientAddress("10.0.0.1", {in}, trusted);
  if (!IpAddress::Parse(client)) std::abort();
  (void)CidrSet::Parse(in);
  (void)RateLimitKey(in);
  (void)AcceptsGzip(in);
  // Deeper than n implies deeper than anything less.
  for (std::size_t n = 1; n < 8; ++n) {
    if (JsonDeeperThan(in, n) && !JsonDeeperThan(in, n - 1)) std::abort();
  }
  return 0;
}
