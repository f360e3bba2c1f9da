#pragma once
// Service contracts loaded at run time from a FileDescriptorSet (the output
// of `protoc --include_imports --descriptor_set_out`), so the gateway can
// route services it was not compiled with. Their messages are dynamic
// messages; files the process was compiled with are taken from the
// generated pool instead of being built a second time.

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "portico/core/result.h"

namespace google::protobuf {
class DescriptorPool;
class MessageFactory;
}  // namespace google::protobuf

namespace portico::transcode {

class DescriptorSet {
 public:
  /// Reads and builds the binary FileDescriptorSet at `path`.
  /// kUnavailable if the file cannot be read; kInvalidArgument if it is not a
  /// FileDescriptorSet or its descriptors do not build (a missing import, an
  /// unknown type, a name defined twice), with protobuf's reason.
  /// Blocks (file I/O).
  static Result<std::shared_ptr<const DescriptorSet>> Load(const std::string& path);
  /// The same from the serialized set; `origin` names it in errors.
  static Result<std::shared_ptr<const DescriptorSet>> Parse(std::string_view bytes,
                                                            const std::string& origin);
  ~DescriptorSet();
  DescriptorSet(const DescriptorSet&) = delete;
  DescriptorSet& operator=(const DescriptorSet&) = delete;

  /// A pool holding the set's files, on top of the generated pool (so
  /// imports such as google/protobuf/*.proto and portico/api/v1/annotations.proto
  /// resolve to the compiled-in descriptors). Immutable; thread-safe.
  const google::protobuf::DescriptorPool* pool() const;
  /// Makes messages of pool() types: dynamic messages for the set's own
  /// types, generated ones for compiled-in types. Thread-safe.
  google::protobuf::MessageFactory* factory() const;
  /// Full names of the services defined by the set's own files (not by
  /// files that were compiled in), in file order.
  const std::vector<std::string>& services() const { return services_; }
  /// Where the set came from (its path), for messages.
  const std::string& origin() const { return origin_; }

 private:
  struct Impl;
  explicit DescriptorSet(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  std::vector<std::string> services_;
  std::string origin_;
};

}  // namespace portico::transcode
