#pragma once
// The OpenAPI 3.1 document of a route table, generated from the same
// descriptors that route requests, so that routes and documentation cannot
// drift (DESIGN §4). Schemas follow the proto3 JSON mapping.

#include <memory>
#include <string>
#include <string_view>

#include "portico/core/result.h"
#include "portico/transcode/route_table.h"

namespace google::protobuf {
class Descriptor;
class DescriptorPool;
class EnumDescriptor;
class EnumValueDescriptor;
class FieldDescriptor;
class MethodDescriptor;
class ServiceDescriptor;
}  // namespace google::protobuf

namespace portico::transcode {

/// Doc comments of proto elements. Compiled-in descriptors carry no source
/// info, so the comments come from FileDescriptorSets made with
/// `protoc --include_imports --include_source_info`, looked up by the
/// element's full name. Not thread-safe while Add runs; const use is.
class ProtoComments {
 public:
  ProtoComments();
  ~ProtoComments();
  ProtoComments(ProtoComments&&) noexcept;
  ProtoComments& operator=(ProtoComments&&) noexcept;

  /// Adds the files of a serialized FileDescriptorSet; files already known
  /// (by name) are skipped. kInvalidArgument if `serialized` is not a
  /// FileDescriptorSet or a file cannot be built (e.g. an import missing
  /// from the set); files added before the failing one stay.
  Status Add(std::string_view serialized);

  /// The element's leading comment (else its trailing one), with comment
  /// markers' indentation removed and surrounding blank lines trimmed; ""
  /// if there is none. Uses the descriptor's own source info first, so
  /// descriptors from a pool that has it need no Add.
  std::string Of(const google::protobuf::Descriptor* d) const;
  std::string Of(const google::protobuf::FieldDescriptor* d) const;
  std::string Of(const google::protobuf::EnumDescriptor* d) const;
  std::string Of(const google::protobuf::EnumValueDescriptor* d) const;
  std::string Of(const google::protobuf::ServiceDescriptor* d) const;
  std::string Of(const google::protobuf::MethodDescriptor* d) const;

 private:
  std::unique_ptr<google::protobuf::DescriptorPool> pool_;
};

struct OpenApiOptions {
  std::string title = "Portico API";
  std::string version = "0.0.0";
  std::string description;                  // Markdown, in info.description
  const ProtoComments* comments = nullptr;  // may be null: descriptors' own source info only
};

/// The OpenAPI 3.1 document (JSON text) describing every route of `table`:
/// one operation per route (operationId from the RPC), path and query
/// parameters from the request fields the path and body leave, the request
/// body, the success response with its status and the headers the rule
/// declares, problem+json errors, bearer security per access policy, and a
/// schema for every reachable message and enum. Deterministic for a given
/// table and options; never fails. Thread-safe for a table nobody mutates.
std::string GenerateOpenApi(const RouteTable& table, const OpenApiOptions& options);

}  // namespace portico::transcode
