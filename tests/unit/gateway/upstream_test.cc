// The upstream channels' service config and their reuse across reloads
// (services/gateway/src/upstream.h). No connection is made.
#include "upstream.h"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

#include "portico/transcode/route_table.h"

namespace portico::gateway {
namespace {

namespace json = boost::json;

TEST(ServiceConfig, RoundRobinHealthCheckedAndRetriesOnlyTheListedMethods) {
  const auto config =
      json::parse(ServiceConfigJson({"portico.users.v1.UserService/GetMe"})).as_object();
  EXPECT_TRUE(config.at("loadBalancingConfig").as_array().at(0).as_object().contains("round_robin"));
  EXPECT_EQ(config.at("healthCheckConfig").at("serviceName").as_string(), "");
  const auto& method_config = config.at("methodConfig").as_array().at(0).as_object();
  const auto& names = method_config.at("name").as_array();
  ASSERT_EQ(names.size(), 1u);
  EXPECT_EQ(names[0].at("service").as_string(), "portico.users.v1.UserService");
  EXPECT_EQ(names[0].at("method").as_string(), "GetMe");
  const auto& retry = method_config.at("retryPolicy").as_object();
  EXPECT_EQ(retry.at("maxAttempts").as_int64(), kRetryMaxAttempts);
  ASSERT_EQ(retry.at("retryableStatusCodes").as_array().size(), 1u);
  EXPECT_EQ(retry.at("retryableStatusCodes").as_array()[0].as_string(), "UNAVAILABLE");

  // Nothing safe: no retry policy at all.
  EXPECT_FALSE(json::parse(ServiceConfigJson({})).as_object().contains("methodConfig"));
}

TEST(Upstreams, SafeMethodsAreTheGetRoutesOfEachTarget) {
  auto table = transcode::RouteTable::Build({"portico.users.v1.UserService",
                                             "portico.data.v1.DataService"});
  ASSERT_TRUE(table.ok()) << table.error().message;
  auto up = Upstreams::Create({{"portico.users.v1.", "users:1"}, {"portico.data.v1.", "data:2"}},
                              {}, table->Services(), *table, nullptr);
  ASSERT_TRUE(up.ok()) << up.error().message;
  EXPECT_EQ((*up)->TargetOf("portico.users.v1.UserService"), "users:1");
  EXPECT_EQ((*up)->TargetOf("portico.data.v1.DataService"), "data:2");
  EXPECT_NE((*up)->StubFor("portico.users.v1.UserService"),
            (*up)->StubFor("portico.data.v1.DataService"));
  EXPECT_EQ((*up)->StubFor("acme.v1.Nothing"), nullptr);
}

TEST(Upstreams, AReloadKeepsChannelsWhoseConfigIsUnchanged) {
  auto users = transcode::RouteTable::Build({"portico.users.v1.UserService"});
  auto both = transcode::RouteTable::Build({"portico.users.v1.UserService",
                                            "portico.data.v1.DataService"});
  ASSERT_TRUE(users.ok() && both.ok());
  const std::vector<Upstream> targets = {{"portico.", "shared:1"}};
  const std::map<std::string, std::string> exact = {{"portico.data.v1.DataService", "data:2"}};
  auto first = Upstreams::Create(targets, exact, users->Services(), *users, nullptr);
  ASSERT_TRUE(first.ok());
  // Same routes: the very same channel.
  auto same = Upstreams::Create(targets, exact, users->Services(), *users, first->get());
  ASSERT_TRUE(same.ok());
  EXPECT_EQ((*same)->StubFor("portico.users.v1.UserService"),
            (*first)->StubFor("portico.users.v1.UserService"));
  // A new service on its own target: users' channel still shared.
  auto grown = Upstreams::Create(targets, exact, both->Services(), *both, first->get());
  ASSERT_TRUE(grown.ok());
  EXPECT_EQ((*grown)->StubFor("portico.users.v1.UserService"),
            (*first)->StubFor("portico.users.v1.UserService"));
  EXPECT_EQ((*grown)->TargetOf("portico.data.v1.DataService"), "data:2");
  // The data service's GET routes moved onto users' target: its retry list
  // changes, so it gets a new channel.
  auto moved = Upstreams::Create(targets, {}, both->Services(), *both, grown->get());
  ASSERT_TRUE(moved.ok());
  EXPECT_NE((*moved)->StubFor("portico.users.v1.UserService"),
            (*first)->StubFor("portico.users.v1.UserService"));
  EXPECT_EQ((*moved)->StubFor("portico.users.v1.UserService"),
            (*moved)->StubFor("portico.data.v1.DataService"));

  auto none = Upstreams::Create({}, {}, users->Services(), *users, nullptr);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().message.find("portico.users.v1.UserService"), std::string::npos);
}

}  // namespace
}  // namespace portico::gateway
