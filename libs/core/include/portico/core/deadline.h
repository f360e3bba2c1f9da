#pragma once
// A point in time by which an operation must finish, propagated from the
// caller (gRPC deadline, HTTP request budget) to every blocking call.

#include <chrono>

namespace portico {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

/// A deadline `d` from now.
inline Deadline DeadlineIn(Clock::duration d) { return Clock::now() + d; }

/// Time left before `deadline`, never negative.
inline Clock::duration TimeLeft(Deadline deadline) {
  auto left = deadline - Clock::now();
  return left < Clock::duration::zero() ? Clock::duration::zero() : left;
}

}  // namespace portico
