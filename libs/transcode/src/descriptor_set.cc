#include "portico/transcode/descriptor_set.h"

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/dynamic_message.h>

namespace portico::transcode {
namespace {

namespace pb = google::protobuf;

class Collector : public pb::DescriptorPool::ErrorCollector {
 public:
  void AddError(const std::string& filename, const std::string& element_name,
                const pb::Message*, ErrorLocation, const std::string& message) override {
    if (!text.empty()) text += "; ";
    text += filename + ": " + (element_name.empty() ? "" : element_name + ": ") + message;
  }
  std::string text;
};

}  // namespace

struct DescriptorSet::Impl {
  // The generated pool underlies ours: a file compiled into the process is
  // found there (with its generated message classes and the extensions they
  // register), never built twice under the same name.
  pb::DescriptorPool pool{pb::DescriptorPool::generated_pool()};
  // Declared after the pool: it refers to the pool's descriptors.
  pb::DynamicMessageFactory factory{&pool};
};

DescriptorSet::DescriptorSet(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DescriptorSet::~DescriptorSet() = default;

const pb::DescriptorPool* DescriptorSet::pool() const { return &impl_->pool; }
pb::MessageFactory* DescriptorSet::factory() const { return &impl_->factory; }

Result<std::shared_ptr<const DescriptorSet>> DescriptorSet::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error::Unavailable("cannot read the descriptor set " + path);
  std::stringstream bytes;
  bytes << in.rdbuf();
  if (in.bad()) return Error::Unavailable("cannot read the descriptor set " + path);
  return Parse(bytes.str(), path);
}

Result<std::shared_ptr<const DescriptorSet>> DescriptorSet::Parse(std::string_view bytes,
                                                                  const std::string& origin) {
  pb::FileDescriptorSet set;
  if (!set.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return Error::InvalidArgument(origin + " is not a binary FileDescriptorSet");
  }
  auto impl = std::make_unique<Impl>();
  impl->factory.SetDelegateToGeneratedFactory(true);

  std::map<std::string, const pb::FileDescriptorProto*> by_name;
  for (const auto& f : set.file()) by_name.emplace(f.name(), &f);

  // Builds a file after the files it imports (protoc writes them in that
  // order, but a set may have been assembled by other tools).
  std::vector<const pb::FileDescriptor*> own;
  std::set<std::string> visiting;
  Collector errors;
  std::function<bool(const std::string&)> build = [&](const std::string& name) -> bool {
    if (impl->pool.FindFileByName(name) != nullptr) return true;  // built, or compiled in
    auto it = by_name.find(name);
    if (it == by_name.end()) return true;  // BuildFile reports the missing import
    if (!visiting.insert(name).second) return true;  // a cycle: BuildFile reports it
    for (const auto& dep : it->second->dependency()) {
      if (!build(dep)) return false;
    }
    const pb::FileDescriptor* file = impl->pool.BuildFileCollectingErrors(*it->second, &errors);
    if (file == nullptr) return false;
    own.push_back(file);
    return true;
  };
  for (const auto& f : set.file()) {
    if (!build(f.name())) {
      return Error::InvalidArgument("bad descriptors in " + origin + ": " + errors.text);
    }
  }

  std::unique_ptr<DescriptorSet> out(new DescriptorSet(std::move(impl)));
  out->origin_ = origin;
  for (const pb::FileDescriptor* file : own) {
    for (int i = 0; i < file->service_count(); ++i) {
      out->services_.push_back(file->service(i)->full_name());
    }
  }
  return std::shared_ptr<const DescriptorSet>(std::move(out));
}

}  // namespace portico::transcode
