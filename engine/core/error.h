// hetmoe's one error type for library code: an exception that carries where and what.
//
// Library code throws hetmoe::Error and never exits; only the CLI decides how a user sees it.
// Every error says what went wrong, the context it happened in (file, tensor, expert, ...)
// and, where we can tell, what to do about it.
#pragma once

#include <source_location>
#include <stdexcept>
#include <string>

namespace hetmoe {

class Error : public std::runtime_error {
 public:
  struct Context {
    std::string path;    // file the error is about, if any
    std::string tensor;  // tensor (Hugging Face name) the error is about, if any
    std::string hint;    // what the user can do about it
  };

  Error(std::string what, Context context = {},
        std::source_location where = std::source_location::current());

  const std::string& message() const { return message_; }
  const Context& context() const { return context_; }
  // Where in hetmoe's source the error was raised ("engine/model/safetensors.cpp:123").
  const std::string& origin() const { return origin_; }

 private:
  std::string message_;
  Context context_;
  std::string origin_;
};

// Throws hetmoe::Error when `condition` is false. Use for conditions a user's input can
// break (files, flags, budgets); use assert() for programming errors.
inline void check(bool condition, const std::string& what, const Error::Context& context = {},
                  std::source_location where = std::source_location::current()) {
  if (!condition) throw Error(what, context, where);
}

}  // namespace hetmoe
