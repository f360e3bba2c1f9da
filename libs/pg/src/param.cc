#include "portico/pg/param.h"

#include <charconv>
#include <cmath>

namespace portico::pg {

Param::Param(double d) {
  if (std::isnan(d)) {
    text_ = "NaN";
  } else if (std::isinf(d)) {
    text_ = d > 0 ? "Infinity" : "-Infinity";
  } else {
    char buf[32];
    // Shortest text that reads back as the same double.
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);
    text_ = std::string(buf, ec == std::errc() ? end : buf);
  }
}

}  // namespace portico::pg
