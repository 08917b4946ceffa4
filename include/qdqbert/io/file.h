#pragma once
/// \file
/// Whole-file reads and atomic writes, torch-free (the core target). Every reader of a user-supplied
/// file goes through read_file, so they all refuse the same things the same way.

#include <string>

#include "qdqbert/io/atomic_file.h"

namespace qdqbert::io {

/// The bytes of `path`. Errors (qdqbert::Error) name `what` and the path: a missing file, a directory
/// or special file (a FIFO would block forever), or a read failure.
std::string read_file(const std::string& path, const std::string& what);

}  // namespace qdqbert::io
