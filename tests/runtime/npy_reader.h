// Minimal reader for the float32 C-order .npy fixtures the Python reference writes.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace hetmoe::testing {

struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<float> values;
};

inline NpyArray read_npy_f32(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  char magic[8];
  in.read(magic, 8);
  if (std::memcmp(magic, "\x93NUMPY", 6) != 0) throw std::runtime_error(path + ": not a .npy file");
  uint32_t header_length = 0;
  if (magic[6] == 1) {
    uint16_t length16 = 0;
    in.read(reinterpret_cast<char*>(&length16), 2);
    header_length = length16;
  } else {
    in.read(reinterpret_cast<char*>(&header_length), 4);
  }
  std::string header(header_length, ' ');
  in.read(header.data(), header_length);
  if (header.find("'<f4'") == std::string::npos || header.find("'fortran_order': False") == std::string::npos)
    throw std::runtime_error(path + ": expected little-endian float32 C-order data");
  NpyArray array;
  const size_t open = header.find('(', header.find("'shape'")), close = header.find(')', open);
  std::string dims = header.substr(open + 1, close - open - 1);
  int64_t count = 1;
  for (size_t at = 0; at < dims.size();) {
    const size_t comma = dims.find(',', at);
    const std::string item = dims.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    if (item.find_first_of("0123456789") != std::string::npos) {
      array.shape.push_back(std::stoll(item));
      count *= array.shape.back();
    }
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  array.values.resize(size_t(count));
  in.read(reinterpret_cast<char*>(array.values.data()), std::streamsize(count * 4));
  if (!in) throw std::runtime_error(path + ": truncated data");
  return array;
}

}  // namespace hetmoe::testing
