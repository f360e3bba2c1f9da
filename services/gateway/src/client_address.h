#pragma once
// Who the client is: the peer address, or the address a trusted reverse proxy
// saw, taken from X-Forwarded-For. This is the address the gateway logs,
// rate-limits and forwards as `x-client-address`.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "portico/core/result.h"

namespace portico::gateway {

/// An IPv4 or IPv6 address. IPv4 (and IPv4-mapped IPv6, "::ffff:a.b.c.d")
/// is kept as IPv4, so the two spellings of one address compare equal.
struct IpAddress {
  bool v4 = true;
  std::array<std::uint8_t, 16> bytes{};  // the first 4 for IPv4

  /// Accepts "203.0.113.7", "2001:db8::1", "[2001:db8::1]", and with a port
  /// as proxies sometimes write them: "203.0.113.7:4711", "[2001:db8::1]:4711".
  /// Surrounding blanks are ignored. nullopt for anything else.
  static std::optional<IpAddress> Parse(std::string_view text);
  /// Canonical text ("203.0.113.7", "2001:db8::1").
  std::string ToString() const;
};

/// A set of networks in CIDR notation.
class CidrSet {
 public:
  /// Parses a comma-separated list of "addr/prefix" or bare addresses (a
  /// host: /32 or /128), IPv4 or IPv6, e.g. "10.0.0.0/8, 2001:db8::/32,
  /// 127.0.0.1". Bits past the prefix must be zero. kInvalidArgument naming
  /// the bad entry. An empty list is an empty set.
  static Result<CidrSet> Parse(std::string_view list);

  bool Contains(const IpAddress& address) const;
  bool empty() const { return nets_.empty(); }

 private:
  struct Net {
    IpAddress base;
    int prefix = 0;
  };
  std::vector<Net> nets_;
};

/// The client of a request that came from `peer` with these X-Forwarded-For
/// header values (every occurrence, in order). If the peer is not trusted,
/// X-Forwarded-For is ignored and the peer is the client. Otherwise the list
/// is walked from the right, skipping trusted hops; the first untrusted
/// address is the client. If every hop is trusted, the leftmost is the
/// client. An entry that is not an address ends the walk: the last address
/// reached (the trusted hop that wrote it) is the client, since nothing to
/// its left can be believed. Returns the canonical text of the address (or
/// `peer` as given if it does not parse).
std::string ResolveClientAddress(std::string_view peer,
                                 const std::vector<std::string_view>& forwarded_for,
                                 const CidrSet& trusted);

/// The rate-limiting key of a client address: an IPv4 address itself, an
/// IPv6 address its /64 (one site usually holds a whole /64, and handing out
/// new addresses from it is free). Other text is its own key.
std::string RateLimitKey(std::string_view client_address);

}  // namespace portico::gateway
