// Feeds arbitrary bytes to the ListItems filter compiler and orderBy parser
// (both take query parameters straight from the network) and checks that
// whatever compiles is SQL made only of our own tokens, with every value
// passed as a parameter.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "filter.h"

namespace {

// Characters the compiler's own SQL is made of. A quote, semicolon or
// comment dash here would mean input text reached the SQL.
bool IsOwnSqlChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view(" _$:()[]@#<>=,").find(c) != std::string_view::npos;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  constexpr int kFirst = 4;
  auto compiled = portico::data::CompileFilter(input, kFirst);
  if (compiled.ok()) {
    const std::string& sql = compiled->sql;
    if (sql.empty()) std::abort();
    int highest = 0;
    for (std::size_t i = 0; i < sql.size(); ++i) {
      if (!IsOwnSqlChar(sql[i])) std::abort();
      if (sql[i] == '$') {
        int n = 0;
        std::size_t j = i + 1;
        while (j < sql.size() && sql[j] >= '0' && sql[j] <= '9') n = n * 10 + (sql[j++] - '0');
        if (n < kFirst) std::abort();
        highest = std::max(highest, n);
      }
    }
    if (highest != static_cast<int>(compiled->params.size()) + kFirst - 1 &&
        !(compiled->params.empty() && highest == 0)) {
      std::abort();
    }
  } else {
    const auto& e = compiled.error();
    if (e.fields.size() != 1 || e.fields[0].field != "filter" ||
        e.fields[0].message.find("position ") == std::string::npos) {
      std::abort();
    }
  }
  auto order = portico::data::ParseOrderBy(input);
  if (order.ok()) {
    // The normalized form parses to itself.
    auto again = portico::data::ParseOrderBy(order->Normalized());
    if (!again.ok() || again->Normalized() != order->Normalized()) std::abort();
  }
  return 0;
}
