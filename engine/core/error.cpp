#include "engine/core/error.h"

#include <string_view>

namespace hetmoe {
namespace {

std::string format_error(const std::string& what, const Error::Context& context) {
  std::string text;
  if (!context.path.empty()) text += context.path + ": ";
  if (!context.tensor.empty()) text += "tensor '" + context.tensor + "': ";
  text += what;
  if (!context.hint.empty()) text += " (hint: " + context.hint + ")";
  return text;
}

std::string short_origin(const std::source_location& where) {
  std::string_view file = where.file_name();
  // Keep the path from the repository's top-level module folder on.
  for (std::string_view top : {"/engine/", "/cpu/", "/gpu/", "/io/", "/tools/", "/tests/", "/bench/"}) {
    if (auto at = file.rfind(top); at != std::string_view::npos) {
      file.remove_prefix(at + 1);
      break;
    }
  }
  return std::string(file) + ":" + std::to_string(where.line());
}

}  // namespace

Error::Error(std::string what, Context context, std::source_location where)
    : std::runtime_error(format_error(what, context)),
      message_(std::move(what)),
      context_(std::move(context)),
      origin_(short_origin(where)) {}

}  // namespace hetmoe
