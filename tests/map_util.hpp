// Creating maps in tests: one place for the error check.
#pragma once

#include <gtest/gtest.h>

#include <memory>

#include "bpfvm/map.hpp"

namespace bpfvm::test {

// create_map(spec), failing the test (and returning nullptr) when the map cannot be created.
inline std::shared_ptr<Map> make_map(const MapSpec& spec) {
  auto r = create_map(spec);
  EXPECT_TRUE(r.ok()) << spec.name << ": " << (r.ok() ? "" : r.error().to_string());
  return r.ok() ? *r : nullptr;
}

}  // namespace bpfvm::test
