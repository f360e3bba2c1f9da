#pragma once
// The data service's housekeeping loop around Items::Prune.

#include <chrono>
#include <functional>
#include <stop_token>

#include "items.h"

namespace portico::data {

/// Most batches in one pass; a pass goes on while batches come back full.
inline constexpr int kMaxPruneBatchesPerPass = 100;

/// Runs `prune` (Items::Prune with a deadline) in passes until `stop` is
/// requested, waiting `interval` (or until stop) between passes. A pass runs
/// batches while they come back full (kPruneBatchSize tombstones or keys),
/// at most kMaxPruneBatchesPerPass; `stop` is checked before every batch, so
/// a shutdown waits for one batch at most. A batch that fails or throws ends
/// its pass: it is logged (once, until a batch works again) and never
/// propagated, so the thread running this never dies of it. Blocks.
void RunPruner(const std::function<Result<PruneReport>(Deadline)>& prune,
               std::chrono::milliseconds interval, std::stop_token stop);

}  // namespace portico::data
