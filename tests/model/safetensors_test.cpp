#include "engine/model/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/error.h"
#include "tests/scratch_dir.h"

namespace hetmoe {
namespace {

namespace fs = std::filesystem;

const fs::path kFixture = fs::path(HETMOE_TEST_DATA) / "safetensors" / "numpy_reference.safetensors";

std::vector<uint8_t> read_bytes(const fs::path& path) {
  std::ifstream stream(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(stream), {});
}

void write_bytes(const fs::path& path, const std::vector<uint8_t>& bytes) {
  std::ofstream stream(path, std::ios::binary);
  stream.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

// A raw safetensors file: 8-byte length (`declared_length` overrides the true one), header, data.
std::vector<uint8_t> raw_file(const std::string& header, uint64_t data_bytes,
                              std::optional<uint64_t> declared_length = std::nullopt) {
  const uint64_t length = declared_length.value_or(header.size());
  std::vector<uint8_t> bytes;
  bytes.reserve(8 + header.size() + data_bytes);
  for (int i = 0; i < 8; ++i) bytes.push_back(uint8_t(length >> (8 * i)));
  for (char c : header) bytes.push_back(uint8_t(c));
  for (uint64_t i = 0; i < data_bytes; ++i) bytes.push_back(uint8_t(i * 7));
  return bytes;
}

struct TensorBytes {
  std::string name;
  DType dtype;
  Shape shape;
  std::vector<uint8_t> bytes;
};

std::vector<uint8_t> random_bytes(size_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> bytes(count);
  for (auto& byte : bytes) byte = uint8_t(rng());
  return bytes;
}

// Writes `tensors` in chunks of `chunk` bytes that run across tensor boundaries.
void write_file(const fs::path& path, const std::vector<TensorBytes>& tensors, size_t chunk,
                std::map<std::string, std::string> metadata = {}) {
  SafetensorsWriter writer(path, std::move(metadata));
  writer.set_durable(false);
  std::vector<uint8_t> all;
  for (const TensorBytes& tensor : tensors) {
    writer.declare(tensor.name, tensor.dtype, tensor.shape);
    all.insert(all.end(), tensor.bytes.begin(), tensor.bytes.end());
  }
  for (size_t at = 0; at < all.size(); at += chunk)
    writer.write(all.data() + at, std::min(chunk, all.size() - at));
  const uint64_t expected_size = writer.total_bytes();
  writer.finish();
  EXPECT_EQ(fs::file_size(path), expected_size);
}

std::vector<TensorBytes> mixed_tensors() {
  return {
      {"model.layers.0.mlp.down_proj.weight", DType::kF8E4M3, Shape{3, 5}, random_bytes(15, 1)},
      {"model.layers.0.mlp.down_proj.weight_scale_inv", DType::kF32, Shape{1, 1}, random_bytes(4, 2)},
      {"model.norm.weight", DType::kBF16, Shape{4, 3}, random_bytes(24, 3)},
      {"bias", DType::kF32, Shape{7}, random_bytes(28, 4)},
      {"positions", DType::kI64, Shape{2, 2}, random_bytes(32, 5)},
      {"empty", DType::kF32, Shape{0, 3}, {}},
      {"scalar", DType::kF32, Shape{}, random_bytes(4, 6)},
      {"odd", DType::kU8, Shape{1}, random_bytes(1, 7)},
  };
}

void expect_tensors(const SafetensorsFile& file, const std::vector<TensorBytes>& tensors) {
  ASSERT_EQ(file.tensors().size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    SCOPED_TRACE(tensors[i].name);
    const TensorInfo& info = file.tensors()[i];  // declaration order is file order
    EXPECT_EQ(info.name, tensors[i].name);
    EXPECT_EQ(info.dtype, tensors[i].dtype);
    EXPECT_EQ(info.shape, tensors[i].shape);
    ASSERT_EQ(info.nbytes(), tensors[i].bytes.size());
    if (info.nbytes() > 0) {
      EXPECT_EQ(std::memcmp(file.data(info), tensors[i].bytes.data(), info.nbytes()), 0);
    }
    EXPECT_EQ(file.find(info.name), &info);
    const TensorView view = file.view(info);
    EXPECT_EQ(view.dtype(), info.dtype);
    EXPECT_EQ(view.shape(), info.shape);
    EXPECT_EQ(view.data(), file.data(info));
  }
}

TEST(Safetensors, RoundTripsMixedDtypes) {
  const testing::ScratchDir dir("safetensors");
  const auto tensors = mixed_tensors();
  for (size_t chunk : {size_t(1), size_t(7), size_t(64), size_t(1) << 20}) {
    SCOPED_TRACE(chunk);
    const fs::path path = dir / "mixed.safetensors";
    write_file(path, tensors, chunk, {{"format", "pt"}, {"source", "hetmoe test"}});
    EXPECT_FALSE(fs::exists(dir / "mixed.safetensors.tmp"));
    auto file = SafetensorsFile::open(path);
    expect_tensors(*file, tensors);
    EXPECT_EQ(file->metadata(),
              (std::map<std::string, std::string>{{"format", "pt"}, {"source", "hetmoe test"}}));
    EXPECT_EQ(file->data_offset() % 8, 0u);  // header padded with spaces
    EXPECT_EQ(file->file_size(), fs::file_size(path));
    EXPECT_EQ(file->find("absent"), nullptr);
  }
}

TEST(Safetensors, StreamsLargeTensorsAcrossTheBuffer) {
  const testing::ScratchDir dir("safetensors");
  // Larger than the writer's 8 MiB buffer, with odd sizes so writes straddle buffer boundaries.
  const std::vector<TensorBytes> tensors = {
      {"small", DType::kU8, Shape{3}, random_bytes(3, 11)},
      {"large", DType::kBF16, Shape{3, 1'500'001}, random_bytes(9'000'006, 12)},
      {"medium", DType::kF32, Shape{1000, 1001}, random_bytes(4'004'000, 13)},
  };
  for (size_t chunk : {size_t(999'983), size_t(17) << 20}) {
    SCOPED_TRACE(chunk);
    write_file(dir / "large.safetensors", tensors, chunk);
    expect_tensors(*SafetensorsFile::open(dir / "large.safetensors"), tensors);
  }
}

// Generated by the Python safetensors library (0.8.0) with:
//   save_file({"int64_ramp": np.array([0, -1, 1 << 40], np.int64),
//              "f32_matrix": np.array([[0.5, -1.25, 3.0], [1e-3, 7.0, -0.0]], np.float32),
//              "f16_vector": np.array([1.0, -2.0, 0.5, 65504.0], np.float16),
//              "u8_bytes": np.arange(1, 6, dtype=np.uint8), "i8_values": np.array([-128, 0, 127], np.int8),
//              "scalar": np.array(2.5, np.float32), "empty": np.zeros((0, 4), np.float32)},
//             "numpy_reference.safetensors", metadata={"format": "np"})
TEST(Safetensors, ReadsAndReproducesTheReferenceLibrarysFile) {
  auto file = SafetensorsFile::open(kFixture);
  EXPECT_EQ(file->metadata(), (std::map<std::string, std::string>{{"format", "np"}}));
  ASSERT_EQ(file->tensors().size(), 7u);

  const TensorInfo* ramp = file->find("int64_ramp");
  ASSERT_NE(ramp, nullptr);
  EXPECT_EQ(ramp->dtype, DType::kI64);
  EXPECT_EQ(ramp->shape, Shape{3});
  int64_t ints[3];
  std::memcpy(ints, file->data(*ramp), sizeof ints);
  EXPECT_EQ(ints[0], 0);
  EXPECT_EQ(ints[1], -1);
  EXPECT_EQ(ints[2], int64_t(1) << 40);

  const TensorInfo* matrix = file->find("f32_matrix");
  ASSERT_NE(matrix, nullptr);
  EXPECT_EQ(matrix->shape, (Shape{2, 3}));
  float floats[6];
  std::memcpy(floats, file->data(*matrix), sizeof floats);
  EXPECT_EQ(floats[1], -1.25f);
  EXPECT_EQ(floats[3], 1e-3f);
  EXPECT_TRUE(std::signbit(floats[5]));

  const TensorInfo* half = file->find("f16_vector");
  ASSERT_NE(half, nullptr);
  std::vector<float> halves(4);
  convert_to_float(half->dtype, file->data(*half), 4, halves.data());
  EXPECT_EQ(halves, (std::vector<float>{1.0f, -2.0f, 0.5f, 65504.0f}));

  const TensorInfo* scalar = file->find("scalar");
  ASSERT_NE(scalar, nullptr);
  EXPECT_EQ(scalar->shape.rank, 0);
  float value;
  std::memcpy(&value, file->data(*scalar), 4);
  EXPECT_EQ(value, 2.5f);

  const TensorInfo* empty = file->find("empty");
  ASSERT_NE(empty, nullptr);
  EXPECT_EQ(empty->shape, (Shape{0, 4}));
  EXPECT_EQ(empty->nbytes(), 0u);

  const TensorInfo* i8 = file->find("i8_values");
  ASSERT_NE(i8, nullptr);
  EXPECT_EQ(int8_t(file->data(*i8)[0]), -128);

  // Declared in the reference writer's order (its file order), hetmoe writes the same bytes.
  std::vector<TensorBytes> tensors;
  for (const TensorInfo& info : file->tensors())
    tensors.push_back({info.name, info.dtype, info.shape,
                       std::vector<uint8_t>(file->data(info), file->data(info) + info.nbytes())});
  const testing::ScratchDir dir("safetensors");
  write_file(dir / "copy.safetensors", tensors, 5, {{"format", "np"}});
  EXPECT_EQ(read_bytes(dir / "copy.safetensors"), read_bytes(kFixture));
}

TEST(Safetensors, WriterRejectsMisuse) {
  const testing::ScratchDir dir("safetensors");
  const fs::path path = dir / "w.safetensors";
  {
    SafetensorsWriter writer(path);
    writer.declare("a", DType::kF32, Shape{2});
    EXPECT_THROW(writer.declare("a", DType::kF32, Shape{2}), Error);
    EXPECT_THROW(writer.declare("__metadata__", DType::kF32, Shape{2}), Error);
    EXPECT_THROW(writer.declare("neg", DType::kF32, Shape{-1}), Error);
    EXPECT_THROW(writer.declare("huge", DType::kF32, Shape{int64_t(1) << 62, 4}), Error);
    const float values[3] = {1, 2, 3};
    try {
      writer.write(values, 12);
      FAIL() << "expected an overflow error";
    } catch (const Error& error) {
      EXPECT_NE(std::string(error.what()).find("overflows"), std::string::npos) << error.what();
    }
    writer.write(values, 4);
    EXPECT_TRUE(fs::exists(dir / "w.safetensors.tmp"));
    EXPECT_THROW(writer.declare("late", DType::kF32, Shape{1}), Error);
    try {
      writer.finish();
      FAIL() << "expected an incomplete-data error";
    } catch (const Error& error) {
      EXPECT_EQ(error.context().tensor, "a");
      EXPECT_NE(std::string(error.what()).find("before all data arrived"), std::string::npos) << error.what();
    }
  }
  // Destroyed without finish(): no temporary and no final file left behind.
  EXPECT_FALSE(fs::exists(dir / "w.safetensors.tmp"));
  EXPECT_FALSE(fs::exists(path));

  // A folder that does not exist: the first write fails, naming the temporary file, and so
  // does every later call.
  {
    SafetensorsWriter writer(dir / "absent" / "x.safetensors");
    writer.declare("a", DType::kU8, Shape{4});
    const uint8_t four[4] = {1, 2, 3, 4};
    try {
      writer.write(four, 4);
      FAIL() << "expected an error";
    } catch (const Error& error) {
      EXPECT_NE(error.context().path.find("x.safetensors.tmp"), std::string::npos) << error.what();
    }
    EXPECT_THROW(writer.write(four, 4), Error);
    EXPECT_THROW(writer.finish(), Error);
  }

  // No tensors at all is still a valid file, and so is one holding only empty tensors.
  {
    SafetensorsWriter writer(path);
    writer.finish();
  }
  EXPECT_TRUE(SafetensorsFile::open(path)->tensors().empty());
  {
    SafetensorsWriter writer(path);
    writer.declare("nothing", DType::kBF16, Shape{0});
    writer.finish();
  }
  EXPECT_EQ(SafetensorsFile::open(path)->find("nothing")->nbytes(), 0u);
}

// --- malformed files --------------------------------------------------------------------------

struct Malformed {
  const char* what;
  std::vector<uint8_t> bytes;
  const char* message;  // substring the error must contain
  const char* tensor;   // tensor the error must name ("" if none)
};

std::string entry(const std::string& name, const std::string& dtype, const std::string& shape,
                  const std::string& offsets) {
  return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":" + offsets +
         "}";
}

std::vector<Malformed> malformed_files() {
  std::vector<Malformed> cases;
  cases.push_back({"shorter than 8 bytes", {1, 2, 3, 4, 5}, "shorter than the 8-byte header length", ""});
  cases.push_back({"header length past end", raw_file("{}", 0, 1000), "runs past the end of the file", ""});
  cases.push_back({"header length above 100 MB", raw_file("{}", 0, 200'000'000), "exceeds the limit", ""});
  cases.push_back({"header length 2^64-1", raw_file("{}", 0, ~uint64_t(0)), "exceeds the limit", ""});
  cases.push_back({"empty header", raw_file("", 0), "not valid JSON", ""});
  cases.push_back({"invalid JSON", raw_file("{\"a\": {\"dtype\": ", 0), "not valid JSON", ""});
  cases.push_back({"invalid UTF-8", raw_file("{\"\xff\xfe\":{}}", 0), "not valid JSON", ""});
  cases.push_back({"JSON not an object", raw_file("[1, 2, 3]", 0), "not an object", ""});
  cases.push_back({"entry not an object", raw_file("{\"a\": 5}", 0), "not an object", "a"});
  cases.push_back(
      {"missing dtype", raw_file("{\"a\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1), "no dtype", "a"});
  cases.push_back(
      {"missing shape", raw_file("{\"a\":{\"dtype\":\"U8\",\"data_offsets\":[0,1]}}", 1), "no shape", "a"});
  cases.push_back({"missing data_offsets", raw_file("{\"a\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1),
                   "no data_offsets", "a"});
  cases.push_back({"data_offsets not a pair", raw_file("{" + entry("a", "U8", "[1]", "[0]") + "}", 1),
                   "two non-negative integers", "a"});
  cases.push_back({"data_offsets negative", raw_file("{" + entry("a", "U8", "[1]", "[-1,0]") + "}", 1),
                   "two non-negative integers", "a"});
  cases.push_back({"offsets out of range", raw_file("{" + entry("a", "U8", "[100]", "[0,100]") + "}", 16),
                   "run past the data buffer", "a"});
  cases.push_back({"begin after end", raw_file("{" + entry("a", "U8", "[4]", "[8,4]") + "}", 8),
                   "begin after they end", "a"});
  cases.push_back(
      {"overlapping tensors",
       raw_file("{" + entry("a", "U8", "[8]", "[0,8]") + "," + entry("b", "U8", "[8]", "[4,12]") + "}", 12),
       "overlap tensor 'a'", "b"});
  cases.push_back(
      {"gap between tensors",
       raw_file("{" + entry("a", "U8", "[4]", "[0,4]") + "," + entry("b", "U8", "[4]", "[8,12]") + "}", 12),
       "4 unused bytes", "b"});
  cases.push_back(
      {"gap at the start", raw_file("{" + entry("a", "U8", "[4]", "[4,8]") + "}", 8), "unused bytes", "a"});
  cases.push_back({"bytes after the last tensor", raw_file("{" + entry("a", "U8", "[4]", "[0,4]") + "}", 9),
                   "cover 4 of the 9 data bytes", ""});
  cases.push_back({"shape x dtype != length", raw_file("{" + entry("a", "F32", "[3]", "[0,8]") + "}", 8),
                   "needs 12", "a"});
  cases.push_back({"unknown dtype", raw_file("{" + entry("a", "F7", "[1]", "[0,1]") + "}", 1),
                   "unknown dtype \"F7\"", "a"});
  cases.push_back(
      {"hetmoe-only dtype", raw_file("{" + entry("a", "I4", "[2]", "[0,1]") + "}", 1), "unknown dtype", "a"});
  cases.push_back({"dtype not a string",
                   raw_file("{\"a\":{\"dtype\":3,\"shape\":[1],\"data_offsets\":[0,1]}}", 1),
                   "dtype is not a string", "a"});
  cases.push_back({"negative dimension", raw_file("{" + entry("a", "U8", "[-3]", "[0,0]") + "}", 0),
                   "not a non-negative integer", "a"});
  cases.push_back({"fractional dimension", raw_file("{" + entry("a", "U8", "[1.5]", "[0,1]") + "}", 1),
                   "not a non-negative integer", "a"});
  cases.push_back({"shape not an array", raw_file("{" + entry("a", "U8", "4", "[0,4]") + "}", 4),
                   "shape is not an array", "a"});
  cases.push_back({"shape product overflows 64 bits",
                   raw_file("{" + entry("a", "U8", "[4294967296,4294967296]", "[0,0]") + "}", 0),
                   "overflows 64 bits", "a"});
  cases.push_back({"dimension above int64",
                   raw_file("{" + entry("a", "U8", "[18446744073709551615]", "[0,0]") + "}", 0),
                   "overflows 64 bits", "a"});
  cases.push_back({"bytes overflow 64 bits",
                   raw_file("{" + entry("a", "F32", "[4611686018427387904]", "[0,0]") + "}", 0),
                   "overflows 64 bits in bytes", "a"});
  cases.push_back(
      {"rank above 4", raw_file("{" + entry("a", "U8", "[1,1,1,1,1]", "[0,1]") + "}", 1), "rank 5", "a"});
  cases.push_back(
      {"duplicate tensor",
       raw_file("{" + entry("a", "U8", "[1]", "[0,1]") + "," + entry("a", "U8", "[1]", "[1,2]") + "}", 2),
       "names the tensor twice", "a"});
  cases.push_back({"non-string metadata", raw_file("{\"__metadata__\":{\"format\":1}}", 0),
                   "__metadata__ value of \"format\" is not a string", ""});
  cases.push_back({"metadata not an object", raw_file("{\"__metadata__\":[\"pt\"]}", 0),
                   "__metadata__ is not an object", ""});
  return cases;
}

TEST(Safetensors, RejectsMalformedFilesWithClearErrors) {
  const testing::ScratchDir dir("safetensors");
  for (const Malformed& test : malformed_files()) {
    SCOPED_TRACE(test.what);
    const fs::path path = dir / "bad.safetensors";
    write_bytes(path, test.bytes);
    try {
      SafetensorsFile::open(path);
      ADD_FAILURE() << "opened without an error";
    } catch (const Error& error) {
      const std::string message = error.what();
      EXPECT_NE(message.find(test.message), std::string::npos) << message;
      EXPECT_EQ(error.context().path, path.string()) << message;
      EXPECT_NE(message.find(path.string()), std::string::npos) << message;
      EXPECT_EQ(error.context().tensor, test.tensor) << message;
    }
  }
}

// Every truncation and many random corruptions of a valid file: each opens or throws
// hetmoe::Error, never anything else (run under ASan/UBSan to catch out-of-bounds reads).
TEST(Safetensors, SurvivesTruncationAndCorruption) {
  const testing::ScratchDir dir("safetensors");
  const fs::path good = dir / "good.safetensors";
  write_file(good, mixed_tensors(), 1 << 20, {{"format", "pt"}});
  const std::vector<uint8_t> bytes = read_bytes(good);
  const fs::path bad = dir / "bad.safetensors";
  // Shrink one file step by step and rewrite it in place: truncating a file to zero and refilling
  // it makes ext4 flush it to disk each time (auto_da_alloc), which would make this test crawl.
  write_bytes(bad, bytes);
  for (size_t length = bytes.size(); length-- > 0;) {
    fs::resize_file(bad, length);
    EXPECT_THROW(SafetensorsFile::open(bad), Error) << "truncated to " << length;
  }
  write_bytes(bad, bytes);
  std::mt19937 rng(42);
  constexpr std::string_view kJsonBytes = "{}[]\",:0123456789-e. ";
  const uint64_t header_end = SafetensorsFile::open(good)->data_offset();
  for (int trial = 0; trial < 2000; ++trial) {
    std::vector<uint8_t> corrupt = bytes;
    for (int flips = 1 + int(rng() % 3); flips > 0; --flips) {
      const size_t at = rng() % header_end;
      corrupt[at] = (rng() % 2) ? uint8_t(rng()) : uint8_t(kJsonBytes[rng() % kJsonBytes.size()]);
    }
    std::fstream(bad, std::ios::in | std::ios::out | std::ios::binary)
        .write(reinterpret_cast<const char*>(corrupt.data()), std::streamsize(corrupt.size()));
    try {
      SafetensorsFile::open(bad);
    } catch (const Error&) {
    } catch (const std::exception& other) {
      ADD_FAILURE() << "trial " << trial << ": not a hetmoe::Error: " << other.what();
    }
  }
}

TEST(Safetensors, RejectsWhatIsNotARegularFile) {
  const testing::ScratchDir dir("safetensors");
  EXPECT_THROW(SafetensorsFile::open(dir / "absent.safetensors"), Error);
  EXPECT_THROW(SafetensorsFile::open(dir.path()), Error);
}

TEST(Safetensors, ToleratesTrailingSpacesAndUnalignedHeaders) {
  const testing::ScratchDir dir("safetensors");
  // Header length 59: not a multiple of 8, and trailing whitespace of several kinds.
  for (const std::string padding : {"", "   ", " \n\t  \r\n "}) {
    SCOPED_TRACE(padding.size());
    const std::string header = "{" + entry("x", "U8", "[3]", "[0,3]") + "," +
                               entry("s", "F32", "[]", "[3,7]") + "," + entry("e", "BF16", "[0]", "[7,7]") +
                               "}" + padding;
    write_bytes(dir / "t.safetensors", raw_file(header, 7));
    auto file = SafetensorsFile::open(dir / "t.safetensors");
    ASSERT_EQ(file->tensors().size(), 3u);
    EXPECT_EQ(file->tensors()[0].name, "x");
    EXPECT_EQ(file->find("s")->shape.rank, 0);
    EXPECT_EQ(file->find("e")->nbytes(), 0u);
    EXPECT_EQ(file->data_offset(), 8 + header.size());
    EXPECT_EQ(file->data(*file->find("x"))[1], 7);
  }
}

}  // namespace
}  // namespace hetmoe
