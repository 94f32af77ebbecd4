// Checkpoint: a Hugging Face model folder's safetensors files and the index over their tensors.
#include <algorithm>
#include <atomic>
#include <exception>
#include <fstream>
#include <sstream>
#include <thread>
#include <unordered_map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cpu/dequant.h"
#include "engine/core/error.h"
#include "engine/model/safetensors.h"

namespace hetmoe {
namespace {

using nlohmann::json;

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

// model.safetensors.index.json's weight_map: tensor name -> shard, shards numbered in name order. Parsed with
// SAX: R1's index lists 92k tensors, and a DOM would cost more than every shard header together.
struct WeightMap {
  std::vector<std::string> shards;
  std::unordered_map<std::string, uint32_t> shard_of;
};

class IndexParser {
 public:
  IndexParser(const std::string& path, WeightMap& map) : path_(path), map_(map) {}
  bool saw_weight_map() const { return saw_weight_map_; }

  bool null() { return value("null"); }
  bool boolean(bool v) { return value(v ? "true" : "false"); }
  bool number_integer(int64_t v) { return value(std::to_string(v)); }
  bool number_unsigned(uint64_t v) { return value(std::to_string(v)); }
  bool number_float(double, const std::string& text) { return value(text); }
  bool binary(json::binary_t&) { return value("binary"); }
  bool string(std::string& text) {
    if (depth_ != 2 || !in_weight_map_) return value(text);
    add(text);
    return true;
  }
  bool start_object(size_t) { return open("an object", true); }
  bool start_array(size_t) { return open("an array", false); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  bool key(std::string& key) {
    if (depth_ == 1) {
      top_key_is_map_ = key == "weight_map";
    } else if (depth_ == 2 && in_weight_map_) {
      tensor_ = key;
    }
    return true;
  }
  bool parse_error(size_t, const std::string&, const nlohmann::detail::exception& error) {
    throw Error(fmt::format("index is not valid JSON: {}", error.what()), {.path = path_});
  }

 private:
  bool value(const std::string& text) {
    if (depth_ == 0) throw Error("index is not a JSON object", {.path = path_});
    if (depth_ == 1 && top_key_is_map_)
      throw Error("index's \"weight_map\" is not an object", {.path = path_});
    if (depth_ == 2 && in_weight_map_)
      throw Error(fmt::format("weight_map value is not a file name: {}", text.substr(0, 60)),
                  {.path = path_, .tensor = tensor_});
    return true;
  }
  bool open(const char* what, bool object) {
    if (depth_ == 0 && !object) throw Error("index is not a JSON object", {.path = path_});
    if (depth_ == 1 && top_key_is_map_) {
      if (!object) throw Error("index's \"weight_map\" is not an object", {.path = path_});
      in_weight_map_ = true;
      saw_weight_map_ = true;
    } else if (depth_ == 2 && in_weight_map_) {
      throw Error(fmt::format("weight_map value is not a file name: it is {}", what),
                  {.path = path_, .tensor = tensor_});
    }
    ++depth_;
    return true;
  }
  bool close() {
    --depth_;
    if (depth_ == 1) in_weight_map_ = false;
    return true;
  }
  void add(const std::string& shard) {
    if (shard != last_shard_name_) {
      const std::filesystem::path file = shard;
      // Shards live in the model folder: refuse names that would reach outside it.
      const bool escapes =
          std::any_of(file.begin(), file.end(), [](const auto& part) { return part == ".."; });
      if (file.empty() || file.is_absolute() || escapes)
        throw Error(
            fmt::format("weight_map names shard \"{}\", which is not a file inside the model folder", shard),
            {.path = path_, .tensor = tensor_});
      const std::string normal = file.lexically_normal().string();
      auto it = std::find(map_.shards.begin(), map_.shards.end(), normal);
      last_shard_ = uint32_t(it - map_.shards.begin());
      if (it == map_.shards.end()) map_.shards.push_back(normal);
      last_shard_name_ = shard;
    }
    if (!map_.shard_of.emplace(tensor_, last_shard_).second)
      throw Error("weight_map lists the tensor twice", {.path = path_, .tensor = tensor_});
  }

  const std::string& path_;
  WeightMap& map_;
  int depth_ = 0;
  bool top_key_is_map_ = false;
  bool in_weight_map_ = false;
  bool saw_weight_map_ = false;
  std::string tensor_;
  std::string last_shard_name_;  // consecutive entries usually share a shard
  uint32_t last_shard_ = 0;
};

WeightMap read_weight_map(const std::filesystem::path& index_path) {
  const std::string where = index_path.string();
  std::ifstream stream(index_path, std::ios::binary);
  if (!stream) throw Error("cannot open the checkpoint index", {.path = where});
  std::ostringstream text;
  text << stream.rdbuf();
  const std::string contents = std::move(text).str();
  WeightMap map;
  IndexParser parser(where, map);
  json::sax_parse(contents.begin(), contents.end(), &parser);
  if (!parser.saw_weight_map()) throw Error("index has no \"weight_map\" object", {.path = where});
  // Number the shards in name order (model-00001-of-… first), as files() lists them.
  std::vector<uint32_t> order(map.shards.size());
  for (uint32_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](uint32_t a, uint32_t b) { return map.shards[a] < map.shards[b]; });
  std::vector<uint32_t> rank(order.size());
  std::vector<std::string> sorted(order.size());
  for (uint32_t i = 0; i < order.size(); ++i) {
    rank[order[i]] = i;
    sorted[i] = std::move(map.shards[order[i]]);
  }
  map.shards = std::move(sorted);
  for (auto& entry : map.shard_of) entry.second = rank[entry.second];
  return map;
}

// Opens every file, in parallel: header parsing is CPU-bound and shards are independent.
// Reports the error of the first failing file in order, so messages do not depend on timing.
std::vector<std::unique_ptr<SafetensorsFile>> open_files(const std::vector<std::filesystem::path>& paths) {
  std::vector<std::unique_ptr<SafetensorsFile>> files(paths.size());
  std::vector<std::exception_ptr> errors(paths.size());
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < paths.size();) {
      try {
        files[i] = SafetensorsFile::open(paths[i]);
      } catch (...) {
        errors[i] = std::current_exception();
      }
    }
  };
  const size_t threads =
      std::min<size_t>({paths.size(), std::max(1u, std::thread::hardware_concurrency()), 16});
  std::vector<std::thread> pool;
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& thread : pool) thread.join();
  for (const auto& error : errors)
    if (error) std::rethrow_exception(error);
  return files;
}

const uint8_t* aligned_or_copy(const uint8_t* data, uint64_t bytes, size_t alignment,
                               std::vector<uint8_t>& storage) {
  if (reinterpret_cast<uintptr_t>(data) % alignment == 0) return data;
  // Safetensors does not promise alignment; copy into memory that is (new[] aligns to max_align_t).
  storage.assign(data, data + bytes);
  return storage.data();
}

}  // namespace

std::unique_ptr<Checkpoint> Checkpoint::open(const std::filesystem::path& directory) {
  auto checkpoint = std::make_unique<Checkpoint>();
  std::error_code ec;
  std::vector<std::filesystem::path> paths;
  WeightMap weight_map;
  bool indexed = false;
  if (std::filesystem::is_regular_file(directory, ec) && directory.extension() == ".safetensors") {
    checkpoint->directory_ =
        directory.has_parent_path() ? directory.parent_path() : std::filesystem::path(".");
    paths.push_back(directory);
  } else if (!std::filesystem::is_directory(directory, ec)) {
    throw Error("not a model folder",
                {.path = directory.string(),
                 .hint = "pass the folder holding config.json and the .safetensors files"});
  } else if (std::filesystem::exists(directory / kIndexFile, ec)) {
    indexed = true;
    weight_map = read_weight_map(directory / kIndexFile);
    if (weight_map.shards.empty())
      throw Error("weight_map lists no tensors", {.path = (directory / kIndexFile).string()});
    for (const std::string& shard : weight_map.shards) {
      paths.push_back(directory / shard);
      if (!std::filesystem::exists(paths.back(), ec)) {
        std::string needed;  // the first tensor (by name) the index places there
        for (const auto& [name, index] : weight_map.shard_of)
          if (weight_map.shards[index] == shard && (needed.empty() || name < needed)) needed = name;
        throw Error(fmt::format("shard listed in {} is missing", kIndexFile),
                    {.path = paths.back().string(),
                     .tensor = needed,
                     .hint = "the download is incomplete; fetch every file the index names"});
      }
    }
  } else if (std::filesystem::exists(directory / kSingleFile, ec)) {
    paths.push_back(directory / kSingleFile);
  } else {
    for (const auto& item : std::filesystem::directory_iterator(directory, ec))
      if (item.path().extension() == ".safetensors" && item.is_regular_file(ec)) paths.push_back(item.path());
    if (paths.empty())
      throw Error(fmt::format("no {}, {} or other .safetensors file", kSingleFile, kIndexFile),
                  {.path = directory.string(), .hint = "download the model's weights into this folder"});
    if (paths.size() > 1)
      throw Error(fmt::format("{} .safetensors files but no {} to say which tensors they hold", paths.size(),
                              kIndexFile),
                  {.path = directory.string(), .hint = "add the index file from the model's repository"});
  }
  if (checkpoint->directory_.empty()) checkpoint->directory_ = directory;
  checkpoint->files_ = open_files(paths);

  // Every tensor of every shard must be where the index says; names must be unique overall.
  std::vector<std::pair<const std::string*, Entry>> entries;
  for (size_t file_index = 0; file_index < checkpoint->files_.size(); ++file_index) {
    const SafetensorsFile* file = checkpoint->files_[file_index].get();
    for (const TensorInfo& info : file->tensors()) {
      if (indexed) {
        auto listed = weight_map.shard_of.find(info.name);
        if (listed == weight_map.shard_of.end())
          throw Error(fmt::format("tensor is in the shard but not in {}", kIndexFile),
                      {.path = file->path().string(), .tensor = info.name});
        if (listed->second != file_index)
          throw Error(fmt::format("tensor is in this shard but {} places it in {}", kIndexFile,
                                  weight_map.shards[listed->second]),
                      {.path = file->path().string(), .tensor = info.name});
      }
      entries.push_back({&info.name, Entry{file, &info}});
    }
  }
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return *a.first < *b.first; });
  for (size_t i = 0; i < entries.size(); ++i) {
    if (i > 0 && *entries[i].first == *entries[i - 1].first)
      throw Error(fmt::format("tensor appears in two files (also in {})",
                              entries[i - 1].second.file->path().string()),
                  {.path = entries[i].second.file->path().string(), .tensor = *entries[i].first});
    checkpoint->index_.emplace_hint(checkpoint->index_.end(), *entries[i].first, entries[i].second);
  }
  if (indexed && checkpoint->index_.size() != weight_map.shard_of.size()) {
    for (const auto& [name, shard] : weight_map.shard_of)
      if (!checkpoint->index_.contains(name))
        throw Error(
            fmt::format("{} lists the tensor in this shard, but the shard does not hold it", kIndexFile),
            {.path = (directory / weight_map.shards[shard]).string(), .tensor = name});
  }
  return checkpoint;
}

const Checkpoint::Entry* Checkpoint::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &it->second;
}

const Checkpoint::Entry& Checkpoint::at(const std::string& name) const {
  const Entry* entry = find(name);
  if (!entry) throw Error("no such tensor in the checkpoint", {.path = directory_.string(), .tensor = name});
  return *entry;
}

std::vector<float> Checkpoint::load_float(const std::string& name, int64_t block) const {
  const Entry& entry = at(name);
  const TensorInfo& info = *entry.info;
  const std::string where = entry.file->path().string();
  const uint64_t count = uint64_t(info.shape.numel());
  std::vector<float> out;

  if (info.dtype == DType::kF8E4M3) {
    check(block > 0, fmt::format("FP8 block size must be positive, got {}", block),
          {.path = where, .tensor = name});
    check(info.shape.rank == 2,
          fmt::format("F8_E4M3 weight has shape {}; block dequantisation needs a 2-D weight",
                      info.shape.to_string()),
          {.path = where, .tensor = name});
    const std::string scale_name = name + "_scale_inv";
    const Entry* scale = find(scale_name);
    check(scale != nullptr, "F8_E4M3 weight has no scale tensor '" + scale_name + "'",
          {.path = where, .tensor = name, .hint = "FP8 weights need their per-block weight_scale_inv"});
    const int64_t rows = info.shape[0], cols = info.shape[1];
    const Shape expected{(rows + block - 1) / block, (cols + block - 1) / block};
    check(scale->info->dtype == DType::kF32,
          fmt::format("scale dtype is {}, expected F32", dtype_name(scale->info->dtype)),
          {.path = scale->file->path().string(), .tensor = scale_name});
    check(scale->info->shape == expected,
          fmt::format("scale shape {} does not match weight {} with {}x{} blocks (expected {})",
                      scale->info->shape.to_string(), info.shape.to_string(), block, block,
                      expected.to_string()),
          {.path = scale->file->path().string(),
           .tensor = scale_name,
           .hint = "check quantization_config.weight_block_size"});
    std::vector<uint8_t> scale_copy;
    const auto* scales = reinterpret_cast<const float*>(
        aligned_or_copy(scale->file->data(*scale->info), scale->info->nbytes(), alignof(float), scale_copy));
    out.resize(count);
    if (count > 0) {
      cpu::dequant_fp8_rows(cpu::Fp8BlockMatrix{.codes = entry.file->data(info),
                                                .scale_inv = scales,
                                                .rows = rows,
                                                .cols = cols,
                                                .block = block},
                            0, rows, out.data());
    }
    return out;
  }

  if (info.dtype != DType::kBF16 && info.dtype != DType::kF16 && info.dtype != DType::kF32)
    throw Error(fmt::format("dtype {} cannot be loaded as float (F8_E4M3, BF16, F16 or F32 only)",
                            dtype_name(info.dtype)),
                {.path = where, .tensor = name});
  std::vector<uint8_t> copy;
  const uint8_t* source =
      aligned_or_copy(entry.file->data(info), info.nbytes(), size_t(dtype_bits(info.dtype) / 8), copy);
  out.resize(count);
  convert_to_float(info.dtype, source, count, out.data());
  return out;
}

}  // namespace hetmoe
