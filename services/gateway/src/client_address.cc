// Addresses are parsed with inet_pton/inet_ntop (POSIX) rather than
// Boost.Asio's ip::address, to keep Asio out of this Beast-free file.
#include "client_address.h"
#include "portico/core/strings.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace portico::gateway {
namespace {

std::optional<IpAddress> ParseExact(std::string_view text) {
  if (text.empty() || text.size() > INET6_ADDRSTRLEN) return std::nullopt;
  const std::string s(text);
  IpAddress a;
  if (inet_pton(AF_INET, s.c_str(), a.bytes.data()) == 1) return a;
  std::array<std::uint8_t, 16> v6{};
  if (inet_pton(AF_INET6, s.c_str(), v6.data()) != 1) return std::nullopt;
  static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(v6.data(), kMapped, 12) == 0) {
    std::copy(v6.begin() + 12, v6.end(), a.bytes.begin());
    return a;
  }
  a.v4 = false;
  a.bytes = v6;
  return a;
}

bool IsPort(std::string_view s) {
  return !s.empty() && s.size() <= 5 &&
         std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// True if the first `prefix` bits of a and b agree.
bool SamePrefix(const IpAddress& a, const IpAddress& b, int prefix) {
  if (a.v4 != b.v4) return false;
  const int full = prefix / 8;
  if (std::memcmp(a.bytes.data(), b.bytes.data(), static_cast<std::size_t>(full)) != 0) {
    return false;
  }
  const int rest = prefix % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xff << (8 - rest));
  return (a.bytes[full] & mask) == (b.bytes[full] & mask);
}

}  // namespace

std::optional<IpAddress> IpAddress::Parse(std::string_view text) {
  text = TrimBlanks(text);
  if (text.starts_with('[')) {
    const auto close = text.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    const std::string_view rest = text.substr(close + 1);
    if (!rest.empty() && !(rest.front() == ':' && IsPort(rest.substr(1)))) return std::nullopt;
    auto a = ParseExact(text.substr(1, close - 1));
    if (a && a->v4) return std::nullopt;  // "[1.2.3.4]" is not a spelling anyone uses
    return a;
  }
  if (auto a = ParseExact(text)) return a;
  // "a.b.c.d:port" (one colon only: more colons is IPv6, which needs brackets
  // to carry a port).
  if (const auto colon = text.find(':'); colon != std::string_view::npos &&
                                         text.find(':', colon + 1) == std::string_view::npos &&
                                         IsPort(text.substr(colon + 1))) {
    auto a = ParseExact(text.substr(0, colon));
    if (a && a->v4) return a;
  }
  return std::nullopt;
}

std::string IpAddress::ToString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(v4 ? AF_INET : AF_INET6, bytes.data(), buf, sizeof buf);
  return buf;
}

Result<CidrSet> CidrSet::Parse(std::string_view list) {
  CidrSet set;
  while (!list.empty()) {
    const auto comma = list.find(',');
    const std::string_view entry = TrimBlanks(list.substr(0, comma));
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    if (entry.empty()) continue;
    auto bad = [&](std::string_view why) {
      return Error::InvalidArgument("\"" + std::string(entry) +
                                    "\" is not a network: " + std::string(why));
    };
    const auto slash = entry.find('/');
    const auto base = ParseExact(entry.substr(0, slash));
    if (!base) return bad("expected an IPv4 or IPv6 address, optionally with /prefix");
    Net net{*base, base->v4 ? 32 : 128};
    if (slash != std::string_view::npos) {
      const std::string_view p = entry.substr(slash + 1);
      int prefix = -1;
      const auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), prefix);
      if (ec != std::errc() || end != p.data() + p.size() || p.empty() || prefix < 0 ||
          prefix > net.prefix) {
        return bad("the prefix length must be 0-" + std::to_string(net.prefix));
      }
      net.prefix = prefix;
    }
    IpAddress masked = net.base;
    const int width = net.base.v4 ? 4 : 16;
    for (int i = 0; i < width; ++i) {
      const int keep = std::clamp(net.prefix - 8 * i, 0, 8);
      masked.bytes[i] &= static_cast<std::uint8_t>(keep == 0 ? 0 : 0xff << (8 - keep));
    }
    if (masked.bytes != net.base.bytes) {
      return bad("bits are set past the prefix (did you mean " + masked.ToString() + "/" +
                 std::to_string(net.prefix) + "?)");
    }
    set.nets_.push_back(net);
  }
  return set;
}

bool CidrSet::Contains(const IpAddress& address) const {
  return std::any_of(nets_.begin(), nets_.end(),
                     [&](const Net& n) { return SamePrefix(n.base, address, n.prefix); });
}

std::string ResolveClientAddress(std::string_view peer,
                                 const std::vector<std::string_view>& forwarded_for,
                                 const CidrSet& trusted) {
  auto current = IpAddress::Parse(peer);
  if (!current) return std::string(peer);
  if (trusted.empty() || !trusted.Contains(*current) || forwarded_for.empty()) {
    return current->ToString();
  }
  std::vector<std::string_view> hops;
  for (std::string_view value : forwarded_for) {
    while (true) {
      const auto comma = value.find(',');
      hops.push_back(TrimBlanks(value.substr(0, comma)));
      if (comma == std::string_view::npos) break;
      value.remove_prefix(comma + 1);
    }
  }
  for (auto it = hops.rbegin(); it != hops.rend(); ++it) {
    if (it->empty()) continue;  // "a,,b": an empty element carries nothing
    auto hop = IpAddress::Parse(*it);
    if (!hop) break;
    current = hop;
    if (!trusted.Contains(*hop)) break;
  }
  return current->ToString();
}

std::string RateLimitKey(std::string_view client_address) {
  auto a = IpAddress::Parse(client_address);
  if (!a) return std::string(client_address);
  if (a->v4) return a->ToString();
  std::fill(a->bytes.begin() + 8, a->bytes.end(), 0);
  return a->ToString() + "/64";
}

}  // namespace portico::gateway
