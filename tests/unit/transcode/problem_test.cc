#include "portico/transcode/problem.h"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

#include "portico/api/v1/error_details.pb.h"

namespace portico::transcode {
namespace {

TEST(ProblemTest, EveryGrpcCodeMapsPerTheDesign) {
  struct Case {
    int code;
    const char* name;
    int http;
  };
  for (const Case& c : {
           Case{0, "OK", 200},
           Case{1, "CANCELLED", 499},
           Case{2, "UNKNOWN", 500},
           Case{3, "INVALID_ARGUMENT", 400},
           Case{4, "DEADLINE_EXCEEDED", 504},
           Case{5, "NOT_FOUND", 404},
           Case{6, "ALREADY_EXISTS", 409},
           Case{7, "PERMISSION_DENIED", 403},
           Case{8, "RESOURCE_EXHAUSTED", 429},
           Case{9, "FAILED_PRECONDITION", 400},
           Case{10, "ABORTED", 409},
           Case{11, "OUT_OF_RANGE", 400},
           Case{12, "UNIMPLEMENTED", 501},
           Case{13, "INTERNAL", 500},
           Case{14, "UNAVAILABLE", 503},
           Case{15, "DATA_LOSS", 500},
           Case{16, "UNAUTHENTICATED", 401},
       }) {
    EXPECT_EQ(GrpcCodeName(c.code), c.name);
    EXPECT_EQ(HttpStatusForGrpc(c.code), c.http) << c.name;
    if (c.code != 0) {
      Problem p = ProblemFromRpcStatus(c.code, "backend says", "");
      EXPECT_EQ(p.status, c.http) << c.name;
      EXPECT_EQ(p.code, c.name);
    }
  }
  EXPECT_EQ(GrpcCodeName(99), "UNKNOWN");
  EXPECT_EQ(HttpStatusForGrpc(99), 500);
}

std::string Details(const std::string& reason, int retry_after = 0,
                    std::vector<std::pair<std::string, std::string>> violations = {}) {
  portico::api::v1::ErrorDetails d;
  d.set_reason(reason);
  d.set_retry_after_seconds(retry_after);
  for (const auto& [f, m] : violations) {
    auto* v = d.add_field_violations();
    v->set_field(f);
    v->set_description(m);
  }
  return d.SerializeAsString();
}

TEST(ProblemTest, VersionMismatchIs412OtherPreconditions400) {
  EXPECT_EQ(ProblemFromRpcStatus(9, "stale", Details("VERSION_MISMATCH")).status, 412);
  EXPECT_EQ(ProblemFromRpcStatus(9, "nope", Details("SOMETHING_ELSE")).status, 400);
  EXPECT_EQ(ProblemFromRpcStatus(9, "nope", "").status, 400);
  EXPECT_EQ(ProblemFromRpcStatus(9, "garbage details", "\xff\xff\xff").status, 400);
}

TEST(ProblemTest, FeedAndIdempotencyReasonsAre410And422) {
  auto gone = ProblemFromRpcStatus(9, "sync again", Details("SINCE_TOO_OLD"));
  EXPECT_EQ(gone.status, 410);
  EXPECT_EQ(gone.code, "FAILED_PRECONDITION");
  EXPECT_EQ(gone.detail, "sync again");
  EXPECT_EQ(ReasonPhrase(410), "Gone");
  EXPECT_EQ(ProblemType(410), "https://portico.dev/problems/gone");
  auto reused = ProblemFromRpcStatus(9, "other body", Details("IDEMPOTENCY_KEY_REUSED"));
  EXPECT_EQ(reused.status, 422);
  EXPECT_EQ(ReasonPhrase(422), "Unprocessable Content");
  // The reasons refine FAILED_PRECONDITION only.
  EXPECT_EQ(ProblemFromRpcStatus(6, "busy", Details("IDEMPOTENCY_IN_FLIGHT")).status, 409);
  EXPECT_EQ(ProblemFromRpcStatus(3, "bad", Details("SINCE_TOO_OLD")).status, 400);
}

TEST(ProblemTest, RetryAfterForResourceExhausted) {
  EXPECT_EQ(ProblemFromRpcStatus(8, "slow down", Details("", 30)).retry_after_seconds, 30);
  EXPECT_EQ(ProblemFromRpcStatus(8, "slow down", "").retry_after_seconds, 1);
  EXPECT_EQ(ProblemFromRpcStatus(5, "x", Details("", 30)).retry_after_seconds, 0);
}

TEST(ProblemTest, FieldViolationsAndMessagesFor4xx) {
  Problem p = ProblemFromRpcStatus(
      3, "invalid account", Details("", 0, {{"email", "must be an address"}, {"password", "short"}}));
  EXPECT_EQ(p.detail, "invalid account");
  ASSERT_EQ(p.errors.size(), 2u);
  EXPECT_EQ(p.errors[0].field, "email");
  EXPECT_EQ(p.errors[0].message, "must be an address");
}

TEST(ProblemTest, ServerErrorsNeverLeakTheBackendMessage) {
  for (int code : {1, 2, 4, 12, 13, 14, 15}) {
    Problem p = ProblemFromRpcStatus(code, "pq: connection to 10.0.0.5 refused", "");
    EXPECT_EQ(p.detail.find("10.0.0.5"), std::string::npos) << code;
    EXPECT_FALSE(p.detail.empty());
  }
  Problem internal = ProblemFromError(Error::Internal("secret stack"));
  EXPECT_EQ(internal.status, 500);
  EXPECT_EQ(internal.detail.find("secret"), std::string::npos);
}

TEST(ProblemTest, FromError) {
  Problem p = ProblemFromError(Error::InvalidArgument("bad field", {{"pageSize", "too big"}}));
  EXPECT_EQ(p.status, 400);
  EXPECT_EQ(p.code, "INVALID_ARGUMENT");
  EXPECT_EQ(p.detail, "bad field");
  ASSERT_EQ(p.errors.size(), 1u);
  EXPECT_EQ(p.errors[0].field, "pageSize");
  EXPECT_EQ(ProblemFromError(Error{ErrorCode::kVersionMismatch, "stale", {}}).status, 412);
  EXPECT_EQ(ProblemFromError(Error::Unauthenticated("no")).status, 401);
}

TEST(ProblemTest, RendersRfc9457Json) {
  Problem p = ProblemFromRpcStatus(5, "item not found", "");
  auto v = boost::json::parse(RenderProblem(p, "req-1")).as_object();
  EXPECT_EQ(v.at("type").as_string(), "https://portico.dev/problems/not-found");
  EXPECT_EQ(v.at("title").as_string(), "Not Found");
  EXPECT_EQ(v.at("status").as_int64(), 404);
  EXPECT_EQ(v.at("detail").as_string(), "item not found");
  EXPECT_EQ(v.at("code").as_string(), "NOT_FOUND");
  EXPECT_EQ(v.at("requestId").as_string(), "req-1");
  EXPECT_TRUE(v.at("errors").as_array().empty());

  Problem with_fields = ProblemFromError(Error::InvalidArgument("bad", {{"a.b", "why \"quoted\""}}));
  auto w = boost::json::parse(RenderProblem(with_fields, "r")).as_object();
  const auto& e = w.at("errors").as_array().at(0).as_object();
  EXPECT_EQ(e.at("field").as_string(), "a.b");
  EXPECT_EQ(e.at("message").as_string(), "why \"quoted\"");
  EXPECT_EQ(w.at("type").as_string(), "https://portico.dev/problems/bad-request");

  EXPECT_EQ(ProblemType(413), "https://portico.dev/problems/content-too-large");
  EXPECT_EQ(ProblemType(429), "https://portico.dev/problems/too-many-requests");
  auto made = MakeProblem(405, "UNIMPLEMENTED", "use GET");
  EXPECT_EQ(made.status, 405);
  EXPECT_EQ(ReasonPhrase(405), "Method Not Allowed");
}

TEST(ProblemTest, RendersValidUtf8WhateverTheInput) {
  Problem p = ProblemFromError(
      Error::InvalidArgument("unknown query parameter \"\xff\xfe\"", {{"\xc0\xaf", "x"}}));
  const std::string json = RenderProblem(p, "r");
  boost::system::error_code ec;
  auto v = boost::json::parse(json, ec);
  ASSERT_FALSE(ec) << json;
  EXPECT_EQ(v.as_object().at("detail").as_string(),
            "unknown query parameter \"\xEF\xBF\xBD\xEF\xBF\xBD\"");
  EXPECT_EQ(v.as_object().at("errors").as_array().at(0).as_object().at("field").as_string(),
            "\xEF\xBF\xBD\xEF\xBF\xBD");
}

}  // namespace
}  // namespace portico::transcode
