// The json_object rules and rewrites (an item's `data`) on hostile input.
// Input: the text a client sends as `data`. Properties checked:
// - a value ValidateJsonObject accepts, sent as {"data": <value>}, is
//   accepted by EncodeJsonObjectFields, and the text it passes on is
//   accepted again (the gateway and the data service agree);
// - that text spliced into a response (DecodeJsonObjectFields) is valid JSON
//   and holds it unchanged;
// - a value the rules refuse is refused by the request rewrite too.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <boost/json/parse.hpp>
#include <google/protobuf/util/json_util.h>

#include "portico/data/v1/data.pb.h"
#include "portico/transcode/json_object.h"

namespace tc = portico::transcode;
namespace v1 = portico::data::v1;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const bool valid = tc::ValidateJsonObject(text, "data").ok();
  const std::string body = "{\"data\":" + std::string(text) + "}";
  auto encoded = tc::EncodeJsonObjectFields(v1::CreateItemRequest::descriptor(), body);
  if (!valid) {
    // Refused alone: refused inside a request too (unless the text closes
    // the object early and smuggles more members in, which protobuf's
    // parser then judges; those never become `data`).
    if (encoded.ok() && text.find('}') == std::string_view::npos) std::abort();
    return 0;
  }
  if (!encoded.ok()) std::abort();
  v1::CreateItemRequest req;
  google::protobuf::util::JsonParseOptions options;
  if (!google::protobuf::util::JsonStringToMessage(*encoded, &req, options).ok()) std::abort();
  if (!tc::ValidateJsonObject(req.data(), "data").ok()) std::abort();

  v1::Item item;
  item.set_id("i");
  item.set_data(req.data());
  std::string printed;
  if (!google::protobuf::util::MessageToJsonString(item, &printed).ok()) std::abort();
  auto decoded = tc::DecodeJsonObjectFields(v1::Item::descriptor(), printed);
  if (!decoded.ok()) std::abort();
  if (decoded->find(req.data()) == std::string::npos) std::abort();
  boost::system::error_code ec;
  boost::json::parse_options deep;
  deep.max_depth = 200;
  (void)boost::json::parse(*decoded, ec, {}, deep);
  if (ec) std::abort();
  return 0;
}
