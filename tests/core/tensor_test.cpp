#include "engine/core/tensor.h"

#include <gtest/gtest.h>

#include "engine/core/error.h"

namespace hetmoe {
namespace {

TEST(TensorView, ContiguousStridesAndRows) {
  float data[6] = {0, 1, 2, 3, 4, 5};
  TensorView view(DType::kF32, Shape{2, 3}, data);
  EXPECT_EQ(view.stride(0), 3);
  EXPECT_EQ(view.stride(1), 1);
  EXPECT_TRUE(view.is_contiguous());
  EXPECT_EQ(view.nbytes(), 24u);
  EXPECT_EQ(view.row(1).data_as<float>()[2], 5.0f);
  EXPECT_THROW(view.row(2), Error);
  TensorView transposed(DType::kF32, Shape{3, 2}, {1, 3, 0, 0}, data);
  EXPECT_FALSE(transposed.is_contiguous());
  EXPECT_EQ(Shape({576, 7168}).to_string(), "[576, 7168]");
}

TEST(Error, CarriesContextAndOrigin) {
  try {
    check(false, "bad thing", {.path = "/m/model.safetensors", .tensor = "lm_head.weight", .hint = "re-download"});
    FAIL();
  } catch (const Error& error) {
    EXPECT_STREQ(error.what(), "/m/model.safetensors: tensor 'lm_head.weight': bad thing (hint: re-download)");
    EXPECT_EQ(error.context().tensor, "lm_head.weight");
    EXPECT_NE(error.origin().find("tests/core/tensor_test.cpp:"), std::string::npos) << error.origin();
  }
}

}  // namespace
}  // namespace hetmoe
