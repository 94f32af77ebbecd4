// The DeepSeek architecture file against the published numbers (MODEL_SPEC §4.2, §4.3,
// Appendix B) and against parameter counts worked out by hand from §1.1's dimensions.
#include "engine/model/deepseek_v3.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>
#include <string>

#include "engine/core/error.h"
#include "engine/model/config.h"

namespace hetmoe {
namespace {

ModelConfig v3_config() {
  return load_model_config(HETMOE_TEST_DATA "/configs/deepseek-v3-r1.config.json");
}
ModelConfig v2_lite_config() {
  return load_model_config(HETMOE_TEST_DATA "/configs/deepseek-v2-lite.config.json");
}

std::map<std::string, TensorSpec> by_name(const std::vector<TensorSpec>& tensors) {
  std::map<std::string, TensorSpec> out;
  for (const TensorSpec& spec : tensors) out.emplace(spec.name, spec);
  return out;
}

double relative_error(double value, double reference) {
  return std::fabs(value - reference) / reference;
}

TEST(DeepseekV3Inventory, PublishedV3TensorCounts) {
  const ModelConfig config = v3_config();
  // MODEL_SPEC §4.2: 3 global + 3 dense layers × 20 + 59 MoE layers (3..61) × 1558 + 6 MTP
  // extras = 91,991 in the published checkpoint. The main model drops layer 61 (1558 regular
  // tensors + 6 MTP-only ones): 3 + 3·20 + 58·1558 = 90,427.
  EXPECT_EQ(model_tensors(config).size(), 90'427u);
  EXPECT_EQ(model_tensors(config, {.include_mtp = true}).size(), 91'991u);
  EXPECT_EQ(91'991u - 1558u - 6u, 90'427u);

  const auto tensors = model_tensors(config, {.include_mtp = true});
  std::set<std::string> names;
  for (const TensorSpec& spec : tensors) EXPECT_TRUE(names.insert(spec.name).second) << spec.name;
  size_t per_layer[62] = {};
  for (const TensorSpec& spec : tensors)
    if (spec.layer >= 0) ++per_layer[spec.layer];
  EXPECT_EQ(per_layer[0], 20u);
  EXPECT_EQ(per_layer[2], 20u);
  EXPECT_EQ(per_layer[3], 1558u);
  EXPECT_EQ(per_layer[60], 1558u);
  EXPECT_EQ(per_layer[61], 1558u + 6u);
}

TEST(DeepseekV3Inventory, OnlyLayersIsTheSameSubsetOfTheFullList) {
  const ModelConfig config = v3_config();
  const auto all = model_tensors(config);
  const auto some = model_tensors(config, {.only_layers = {0, 3, 60}});
  std::vector<std::string> expected;
  for (const TensorSpec& spec : all)
    if (spec.layer < 0 || spec.layer == 0 || spec.layer == 3 || spec.layer == 60)
      expected.push_back(spec.name);
  std::vector<std::string> names;
  for (const TensorSpec& spec : some) names.push_back(spec.name);
  EXPECT_EQ(names, expected);  // same tensors, same order
  EXPECT_EQ(some.size(), 3u + 20u + 2u * 1558u);
}

TEST(DeepseekV3Inventory, PublishedV3NamesShapesAndDtypes) {
  const auto t = by_name(model_tensors(v3_config(), {.include_mtp = true}));
  auto expect = [&](const std::string& name, DType dtype, Shape shape, TensorGroup group) {
    const auto it = t.find(name);
    ASSERT_NE(it, t.end()) << name;
    EXPECT_EQ(it->second.dtype, dtype) << name;
    EXPECT_EQ(it->second.shape, shape) << name << " " << it->second.shape.to_string();
    EXPECT_EQ(it->second.group, group) << name;
  };
  using G = TensorGroup;
  const DType bf16 = DType::kBF16, f8 = DType::kF8E4M3, f32 = DType::kF32;
  expect("model.embed_tokens.weight", bf16, {129280, 7168}, G::kEmbedding);
  expect("model.norm.weight", bf16, {7168}, G::kNorms);
  expect("lm_head.weight", bf16, {129280, 7168}, G::kLmHead);
  const std::string l0 = "model.layers.0.", l5 = "model.layers.5.";
  expect(l0 + "input_layernorm.weight", bf16, {7168}, G::kNorms);
  expect(l0 + "post_attention_layernorm.weight", bf16, {7168}, G::kNorms);
  expect(l0 + "self_attn.q_a_proj.weight", f8, {1536, 7168}, G::kAttention);
  expect(l0 + "self_attn.q_a_layernorm.weight", bf16, {1536}, G::kNorms);
  expect(l0 + "self_attn.q_b_proj.weight", f8, {24576, 1536}, G::kAttention);
  expect(l0 + "self_attn.kv_a_proj_with_mqa.weight", f8, {576, 7168}, G::kAttention);
  expect(l0 + "self_attn.kv_a_layernorm.weight", bf16, {512}, G::kNorms);
  expect(l0 + "self_attn.kv_b_proj.weight", f8, {32768, 512}, G::kAttention);
  expect(l0 + "self_attn.o_proj.weight", f8, {7168, 16384}, G::kAttention);
  expect(l0 + "mlp.gate_proj.weight", f8, {18432, 7168}, G::kDenseFfn);
  expect(l0 + "mlp.down_proj.weight", f8, {7168, 18432}, G::kDenseFfn);
  // Appendix B scale shapes: [ceil(out/128), ceil(in/128)].
  expect(l0 + "self_attn.q_a_proj.weight_scale_inv", f32, {12, 56}, G::kAttention);
  expect(l0 + "self_attn.q_b_proj.weight_scale_inv", f32, {192, 12}, G::kAttention);
  expect(l0 + "self_attn.kv_a_proj_with_mqa.weight_scale_inv", f32, {5, 56}, G::kAttention);
  expect(l0 + "self_attn.kv_b_proj.weight_scale_inv", f32, {256, 4}, G::kAttention);
  expect(l0 + "self_attn.o_proj.weight_scale_inv", f32, {56, 128}, G::kAttention);
  expect(l0 + "mlp.up_proj.weight_scale_inv", f32, {144, 56}, G::kDenseFfn);
  expect(l0 + "mlp.down_proj.weight_scale_inv", f32, {56, 144}, G::kDenseFfn);
  expect(l5 + "mlp.gate.weight", bf16, {256, 7168}, G::kRouter);
  expect(l5 + "mlp.gate.e_score_correction_bias", f32, {256}, G::kRouter);
  expect(l5 + "mlp.shared_experts.gate_proj.weight", f8, {2048, 7168}, G::kSharedExperts);
  expect(l5 + "mlp.shared_experts.down_proj.weight_scale_inv", f32, {56, 16}, G::kSharedExperts);
  expect(l5 + "mlp.experts.17.up_proj.weight", f8, {2048, 7168}, G::kRoutedExperts);
  expect(l5 + "mlp.experts.17.up_proj.weight_scale_inv", f32, {16, 56}, G::kRoutedExperts);
  expect(l5 + "mlp.experts.255.down_proj.weight", f8, {7168, 2048}, G::kRoutedExperts);
  expect(l5 + "mlp.experts.255.down_proj.weight_scale_inv", f32, {56, 16}, G::kRoutedExperts);
  // MTP (§2.10), listed only with include_mtp and grouped apart.
  expect("model.layers.61.eh_proj.weight", bf16, {7168, 14336}, G::kMtp);
  expect("model.layers.61.embed_tokens.weight", bf16, {129280, 7168}, G::kMtp);
  expect("model.layers.61.shared_head.head.weight", bf16, {129280, 7168}, G::kMtp);
  expect("model.layers.61.mlp.experts.0.gate_proj.weight", f8, {2048, 7168}, G::kMtp);
  EXPECT_EQ(t.count("model.layers.2.mlp.gate.weight"), 0u);  // dense layer: no router
  EXPECT_EQ(t.at(l5 + "mlp.experts.17.up_proj.weight").expert, 17);
  EXPECT_EQ(t.at(l5 + "mlp.experts.17.up_proj.weight").layer, 5);
  EXPECT_EQ(t.at("lm_head.weight").layer, -1);

  for (const TensorSpec& spec : model_tensors(v3_config())) EXPECT_LT(spec.layer, 61) << spec.name;
}

TEST(DeepseekV3Inventory, V2LiteIsAllBf16WithoutScales) {
  const ModelConfig config = v2_lite_config();
  // MODEL_SPEC §4.3: 27·7 + 3 + 26·196 + 3 = 5,291.
  const auto tensors = model_tensors(config);
  EXPECT_EQ(tensors.size(), 5'291u);
  EXPECT_EQ(model_tensors(config, {.include_mtp = true}).size(), 5'291u);  // no MTP layer
  for (const TensorSpec& spec : tensors) {
    EXPECT_EQ(spec.dtype, DType::kBF16) << spec.name;
    EXPECT_NE(spec.role, TensorRole::kScale) << spec.name;
    EXPECT_EQ(spec.name.find("q_a_proj"), std::string::npos);
    EXPECT_EQ(spec.name.find("e_score_correction_bias"), std::string::npos);
  }
  const auto t = by_name(tensors);
  EXPECT_EQ(t.at("model.layers.0.self_attn.q_proj.weight").shape, (Shape{3072, 2048}));
  EXPECT_EQ(t.at("model.layers.0.self_attn.kv_b_proj.weight").shape, (Shape{4096, 512}));
  EXPECT_EQ(t.at("model.layers.0.self_attn.o_proj.weight").shape, (Shape{2048, 2048}));
  EXPECT_EQ(t.at("model.layers.0.mlp.up_proj.weight").shape, (Shape{10944, 2048}));
  EXPECT_EQ(t.at("model.layers.26.mlp.gate.weight").shape, (Shape{64, 2048}));
  EXPECT_EQ(t.at("model.layers.1.mlp.shared_experts.down_proj.weight").shape, (Shape{2048, 2816}));
  EXPECT_EQ(t.at("model.layers.1.mlp.experts.63.gate_proj.weight").shape, (Shape{1408, 2048}));
}

// Counts worked out by hand from MODEL_SPEC §1.1 (see the arithmetic in each comment).
TEST(DeepseekV3Parameters, PublishedV3Is671BTotal37BActive) {
  const ParameterCounts p = count_parameters(v3_config());
  // embed + lm_head 2·129280·7168 + final norm 7168
  // + 61 layers × (attention 187,105,280 + norms 1536 + 512 + 2·7168)
  // + 3 dense × 3·18432·7168 + 58 MoE × (router 256·7168 + bias 256 + 257 experts · 3·2048·7168)
  EXPECT_EQ(p.total, 671'026'419'200u);
  EXPECT_EQ(p.routed_expert_single, 44'040'192u);
  EXPECT_EQ(p.embedding, 926'679'040u);
  // total − embedding − 58 · (256 − 8) routed experts
  EXPECT_EQ(p.active, 36'625'618'432u);
  EXPECT_EQ(p.active_with_embedding, 37'552'297'472u);
  // MTP: one MoE layer 11,507,286,272 + enorm/hnorm + eh_proj 7168·14336 + embed + head + norm.
  EXPECT_EQ(p.mtp, 13'463'426'304u);
  // Published: 671B total, 37B active, 685B with MTP. Tolerances: total 0.1%, active 1.5%
  // (37B is a rounded figure; ours is 36.6B), with MTP 0.2%.
  EXPECT_LT(relative_error(double(p.total), 671e9), 0.001);
  EXPECT_LT(relative_error(double(p.active), 37e9), 0.015);
  EXPECT_LT(relative_error(double(p.total + p.mtp), 685e9), 0.002);
}

TEST(DeepseekV3Parameters, V2LiteIs15Point7BTotal2Point4BActive) {
  const ParameterCounts p = count_parameters(v2_lite_config());
  // 2·102400·2048 + 2048 + 27 × 13,767,168 + 3·10944·2048 + 26 × (64·2048 + 66 · 3·1408·2048)
  EXPECT_EQ(p.total, 15'706'484'224u);
  EXPECT_EQ(p.active, 2'451'435'008u);  // total − embedding − 26 · 58 experts
  EXPECT_EQ(p.mtp, 0u);
  // Published: 15.7B total, 2.4B active. Tolerances: total 0.1%, active 3% (rounded figure).
  EXPECT_LT(relative_error(double(p.total), 15.7e9), 0.001);
  EXPECT_LT(relative_error(double(p.active), 2.4e9), 0.03);
}

TEST(DeepseekV3Bytes, GroupsAndRoutedExpertsPerLayer) {
  const ModelConfig config = v3_config();
  const ByteCounts b = count_bytes(config);
  EXPECT_EQ(b.dense_layers, 3);
  EXPECT_EQ(b.moe_layers, 58);
  // One expert: 3 · 2048·7168 FP8 bytes + (16·56 + 16·56 + 56·16) F32 scales.
  EXPECT_EQ(b.routed_expert_single, 3u * 2048 * 7168 + 3u * 896 * 4);
  EXPECT_EQ(b.routed_experts_per_moe_layer, 256u * b.routed_expert_single);
  EXPECT_EQ(b.by_group[size_t(TensorGroup::kRoutedExperts)], 58u * b.routed_experts_per_moe_layer);
  EXPECT_EQ(b.by_group[size_t(TensorGroup::kEmbedding)], 2u * 129280 * 7168);
  EXPECT_EQ(b.by_group[size_t(TensorGroup::kLmHead)], 2u * 129280 * 7168);
  EXPECT_EQ(b.by_group[size_t(TensorGroup::kRouter)], 58u * (256 * 7168 * 2 + 256 * 4));
  uint64_t sum = 0;
  for (int g = 0; g < kTensorGroupCount; ++g)
    if (TensorGroup(g) != TensorGroup::kMtp) sum += b.by_group[size_t(g)];
  EXPECT_EQ(sum, b.total);
  uint64_t inventory = 0;
  for (const TensorSpec& spec : model_tensors(config)) inventory += spec.nbytes();
  EXPECT_EQ(inventory, b.total);
  // MODEL_SPEC §4.1: R1 ships ≈641 GB (GiB) including the MTP layer; V2-Lite ≈29.3 GB (GiB).
  const double gib = double(uint64_t(1) << 30);
  EXPECT_NEAR(double(b.total + b.by_group[size_t(TensorGroup::kMtp)]) / gib, 641.0, 1.0);
  EXPECT_NEAR(double(count_bytes(v2_lite_config()).total) / gib, 29.3, 0.1);
  // V2-Lite is BF16: two bytes per parameter, nothing else.
  const ModelConfig lite = v2_lite_config();
  EXPECT_EQ(count_bytes(lite).total, 2 * count_parameters(lite).total);
  EXPECT_EQ(count_bytes(lite).routed_experts_per_moe_layer, 64u * 3 * 1408 * 2048 * 2);
}

TEST(DeepseekV3Bytes, KvCachePerToken) {
  EXPECT_EQ(kv_cache_bytes_per_token(v3_config()), 70'272u);  // 576 · 61 · 2
  EXPECT_EQ(kv_cache_bytes_per_token(v2_lite_config()), 31'104u);
  EXPECT_EQ(kv_cache_bytes_per_token(v3_config(), DType::kF32), 140'544u);
}

TEST(DeepseekV3Inventory, PartialEdgeBlocksRoundUp) {
  ModelConfig c = v3_config();
  c.hidden_size = 200;  // 1.56 blocks
  c.q_lora_rank = 130;
  c.intermediate_size = 300;
  c.num_hidden_layers = 1;
  c.num_nextn_predict_layers = 0;
  c.first_k_dense_replace = 1;
  const auto t = by_name(model_tensors(c));
  EXPECT_EQ(t.at("model.layers.0.self_attn.q_a_proj.weight_scale_inv").shape, (Shape{2, 2}));
  EXPECT_EQ(t.at("model.layers.0.mlp.down_proj.weight_scale_inv").shape, (Shape{2, 3}));
  EXPECT_EQ(t.at("model.layers.0.self_attn.kv_a_proj_with_mqa.weight_scale_inv").shape, (Shape{5, 2}));
}

TEST(DeepseekV3Inventory, RejectsImpossibleConfigs) {
  ModelConfig c = v3_config();
  c.num_experts_per_tok = 300;
  EXPECT_THROW(model_tensors(c), Error);
  c = v3_config();
  c.n_group = 7;  // does not divide 256
  EXPECT_THROW(model_tensors(c), Error);
  c = v3_config();
  c.n_routed_experts = 8;  // 8 groups of 1, 4 kept: only 4 experts selectable for top-8
  EXPECT_THROW(model_tensors(c), Error);
  c = v3_config();
  c.hidden_size = 0;
  EXPECT_THROW(model_tensors(c), Error);
}

TEST(DeepseekV3Inventory, MtpNames) {
  const ModelConfig c = v3_config();
  EXPECT_TRUE(is_mtp_tensor_name("model.layers.61.eh_proj.weight", c));
  EXPECT_TRUE(is_mtp_tensor_name("model.layers.62.input_layernorm.weight", c));
  EXPECT_FALSE(is_mtp_tensor_name("model.layers.60.input_layernorm.weight", c));
  EXPECT_FALSE(is_mtp_tensor_name("model.layers.61", c));
  EXPECT_FALSE(is_mtp_tensor_name("lm_head.weight", c));
  EXPECT_FALSE(is_mtp_tensor_name("model.layers.x.weight", c));
}

std::vector<FoundTensor> as_found(const std::vector<TensorSpec>& tensors) {
  std::vector<FoundTensor> found;
  for (const TensorSpec& spec : tensors) found.push_back({spec.name, spec.dtype, spec.shape});
  return found;
}

TEST(DeepseekV3Validation, AcceptsTheInventoryAndSkipsMtp) {
  const ModelConfig c = v3_config();
  const auto found = as_found(model_tensors(c, {.include_mtp = true}));
  const TensorValidation v = validate_tensors(c, found);
  EXPECT_TRUE(v.ok()) << v.describe();
  EXPECT_EQ(v.checked, 90'427u);
  EXPECT_EQ(v.skipped.size(), 1558u + 6u);
}

TEST(DeepseekV3Validation, ListsEveryProblemAtOnce) {
  ModelConfig c = v3_config();
  c.num_hidden_layers = 5;  // keep the test fast
  c.num_nextn_predict_layers = 0;
  auto found = as_found(model_tensors(c));
  const std::string removed = "model.layers.4.mlp.experts.9.up_proj.weight";
  const std::string reshaped = "model.layers.1.self_attn.kv_b_proj.weight";
  const std::string retyped = "model.layers.3.mlp.gate.weight";
  std::erase_if(found, [&](const FoundTensor& f) { return f.name == removed; });
  for (FoundTensor& f : found) {
    if (f.name == reshaped) f.shape = Shape{32768, 256};
    if (f.name == retyped) f.dtype = DType::kF32;
  }
  found.push_back({"model.layers.2.mlp.extra.weight", DType::kBF16, Shape{4}});
  found.push_back({"model.layers.5.eh_proj.weight", DType::kBF16, Shape{7168, 14336}});  // MTP
  const TensorValidation v = validate_tensors(c, found);
  EXPECT_FALSE(v.ok());
  ASSERT_EQ(v.missing.size(), 1u);
  EXPECT_EQ(v.missing[0], removed);
  ASSERT_EQ(v.extra.size(), 1u);
  EXPECT_EQ(v.extra[0], "model.layers.2.mlp.extra.weight");
  ASSERT_EQ(v.mismatched.size(), 2u);
  EXPECT_EQ(v.skipped.size(), 1u);
  const std::string message = v.describe();
  EXPECT_NE(message.find(removed), std::string::npos) << message;
  EXPECT_NE(message.find(reshaped + ": [32768, 256] F8_E4M3, expected [32768, 512] F8_E4M3"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find(retyped + ": [256, 7168] F32, expected [256, 7168] BF16"), std::string::npos)
      << message;
  EXPECT_NE(message.find("1 missing, 1 unexpected, 2 with the wrong shape or dtype"), std::string::npos)
      << message;
}

TEST(DeepseekV3Validation, CapsLongLists) {
  ModelConfig c = v3_config();
  c.num_hidden_layers = 4;
  c.num_nextn_predict_layers = 0;
  const TensorValidation v = validate_tensors(c, {});  // everything missing
  EXPECT_EQ(v.missing.size(), model_tensors(c).size());
  const std::string message = v.describe(5);
  EXPECT_NE(message.find("... and " + std::to_string(v.missing.size() - 5) + " more"), std::string::npos)
      << message;
}

}  // namespace
}  // namespace hetmoe
