#include "portico/transcode/path_template.h"

#include <gtest/gtest.h>

namespace portico::transcode {
namespace {

using Kind = Segment::Kind;

TEST(PathTemplateTest, ParsesLiteralsAndVariables) {
  auto t = PathTemplate::Parse("/v1/collections/{collection}/items/{id}");
  ASSERT_TRUE(t.ok()) << t.error().message;
  ASSERT_EQ(t->segments().size(), 5u);
  EXPECT_EQ(t->segments()[0], (Segment{Kind::kLiteral, "v1", ""}));
  EXPECT_EQ(t->segments()[2], (Segment{Kind::kSingle, "", "collection"}));
  EXPECT_EQ(t->segments()[4], (Segment{Kind::kSingle, "", "id"}));
  EXPECT_EQ(t->verb(), "");
  EXPECT_EQ(t->Variables(), (std::vector<std::string>{"collection", "id"}));
  EXPECT_EQ(t->Shape(), "/v1/collections/*/items/*");
  EXPECT_EQ(t->text(), "/v1/collections/{collection}/items/{id}");
}

TEST(PathTemplateTest, ParsesWildcardsAndDottedNames) {
  auto t = PathTemplate::Parse("/v1/{a.b=*}/x/{rest=**}");
  ASSERT_TRUE(t.ok()) << t.error().message;
  EXPECT_EQ(t->segments()[1], (Segment{Kind::kSingle, "", "a.b"}));
  EXPECT_EQ(t->segments()[3], (Segment{Kind::kMulti, "", "rest"}));
  EXPECT_EQ(t->Shape(), "/v1/*/x/**");

  auto anon = PathTemplate::Parse("/v1/*/**");
  ASSERT_TRUE(anon.ok());
  EXPECT_EQ(anon->segments()[1].kind, Kind::kSingle);
  EXPECT_EQ(anon->segments()[2].kind, Kind::kMulti);
  EXPECT_TRUE(anon->Variables().empty());
}

TEST(PathTemplateTest, ParsesCustomVerb) {
  auto t = PathTemplate::Parse("/v1/collections/{collection}/changes:watch");
  ASSERT_TRUE(t.ok()) << t.error().message;
  EXPECT_EQ(t->verb(), "watch");
  EXPECT_EQ(t->segments().back(), (Segment{Kind::kLiteral, "changes", ""}));
  EXPECT_EQ(t->Shape(), "/v1/collections/*/changes:watch");

  auto on_var = PathTemplate::Parse("/v1/items/{id}:undelete");
  ASSERT_TRUE(on_var.ok());
  EXPECT_EQ(on_var->verb(), "undelete");
  EXPECT_EQ(on_var->segments().back(), (Segment{Kind::kSingle, "", "id"}));
}

TEST(PathTemplateTest, DotsInLiteralsAreLiterals) {
  auto t = PathTemplate::Parse("/.well-known/jwks.json");
  ASSERT_TRUE(t.ok()) << t.error().message;
  EXPECT_EQ(t->segments()[0].literal, ".well-known");
  EXPECT_EQ(t->segments()[1].literal, "jwks.json");
}

TEST(PathTemplateTest, RejectsMalformedTemplates) {
  struct Case {
    const char* text;
    const char* why;
  };
  for (const Case& c : {
           Case{"", "start with '/'"},
           Case{"v1/users", "start with '/'"},
           Case{"/", "no segments"},
           Case{"/v1//users", "empty segment"},
           Case{"/v1/users/", "empty segment"},
           Case{"/v1/{id", "unbalanced '{'"},
           Case{"/v1/id}", "unbalanced '}'"},
           Case{"/v1/{}", "bad variable name"},
           Case{"/v1/{1abc}", "bad variable name"},
           Case{"/v1/{a..b}", "bad variable name"},
           Case{"/v1/{id}/{id}", "appears twice"},
           Case{"/v1/{path=**}/tail", "must be the last"},
           Case{"/v1/**/tail", "must be the last"},
           Case{"/v1/{name=users/*}", "not supported"},
           Case{"/v1/pre{id}", "whole segment"},
           Case{"/v1/a b", "invalid character"},
           Case{"/v1/a%20b", "invalid character"},
           Case{"/v1/x:", "empty custom verb"},
           Case{"/v1/x:a/b", ""},
       }) {
    auto t = PathTemplate::Parse(c.text);
    ASSERT_FALSE(t.ok()) << c.text;
    EXPECT_EQ(t.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(t.error().message.find(c.why), std::string::npos)
        << c.text << ": " << t.error().message;
    EXPECT_NE(t.error().message.find(c.text), std::string::npos) << t.error().message;
  }
}

TEST(PercentDecodeTest, DecodesEscapesOnce) {
  std::string out;
  ASSERT_TRUE(PercentDecode("a%2Fb%252F%e2%82%AC", &out));
  EXPECT_EQ(out, "a/b%2F\xe2\x82\xac");
  ASSERT_TRUE(PercentDecode("plus+stays", &out));
  EXPECT_EQ(out, "plus+stays");
  EXPECT_FALSE(PercentDecode("%", &out));
  EXPECT_FALSE(PercentDecode("%2", &out));
  EXPECT_FALSE(PercentDecode("%zz", &out));
  EXPECT_FALSE(PercentDecode("ab%g1", &out));
}

}  // namespace
}  // namespace portico::transcode
