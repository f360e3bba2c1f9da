#include <gtest/gtest.h>

#include <set>

#include "portico/core/result.h"
#include "portico/core/uuid.h"

namespace portico {
namespace {

TEST(Result, HoldsValueOrError) {
  Result<int> ok = 7;
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, 7);
  Result<int> bad = Error::NotFound("no such item");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(bad.error().message, "no such item");
  Status fine;
  EXPECT_TRUE(fine.ok());
  Status failed = Error::InvalidArgument("bad", {{"email", "required"}});
  ASSERT_FALSE(failed.ok());
  ASSERT_EQ(failed.error().fields.size(), 1u);
  EXPECT_EQ(failed.error().fields[0].field, "email");
}

TEST(Result, CodeNamesAreGrpcSpelling) {
  EXPECT_STREQ(ErrorCodeName(ErrorCode::kAlreadyExists), "ALREADY_EXISTS");
  EXPECT_STREQ(ErrorCodeName(ErrorCode::kVersionMismatch), "FAILED_PRECONDITION");
}

TEST(Uuid, V7IsCanonicalUniqueAndTimeOrdered) {
  std::set<std::string> seen;
  std::string prev;
  for (int i = 0; i < 1000; ++i) {
    std::string id = NewUuidV7();
    ASSERT_TRUE(IsUuid(id)) << id;
    EXPECT_EQ(id[14], '7');
    EXPECT_TRUE(id[19] == '8' || id[19] == '9' || id[19] == 'a' || id[19] == 'b') << id;
    EXPECT_TRUE(seen.insert(id).second);
    // Time first, then a per-process counter: strictly increasing.
    if (!prev.empty()) {
      EXPECT_LT(prev, id);
    }
    prev = id;
  }
}

TEST(Uuid, RejectsMalformed) {
  EXPECT_FALSE(IsUuid(""));
  EXPECT_FALSE(IsUuid("0190a0b2-7c1d-7e3f-8a4b-5c6d7e8f9a0"));
  EXPECT_FALSE(IsUuid("0190a0b2x7c1d-7e3f-8a4b-5c6d7e8f9a0b"));
  EXPECT_FALSE(IsUuid("0190a0b2-7c1d-7e3f-8a4b-5c6d7e8f9a0g"));
  EXPECT_TRUE(IsUuid("0190A0B2-7C1D-7E3F-8A4B-5C6D7E8F9A0B"));
}

}  // namespace
}  // namespace portico
