// Driver for fuzz targets in builds without libFuzzer (g++): replays every
// file under the corpus folders given as arguments, then feeds a fixed
// number of deterministic mutations of them, so the suite exercises each
// parser on hostile input on every run. Real fuzzing: PORTICO_BUILD_FUZZERS=ON.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

int main(int argc, char** argv) {
  std::vector<std::string> seeds;
  for (int i = 1; i < argc; ++i) {
    std::filesystem::path root(argv[i]);
    if (!std::filesystem::exists(root)) continue;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(root)) {
      if (!entry.is_regular_file()) continue;
      std::ifstream in(entry.path(), std::ios::binary);
      seeds.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
  }
  if (seeds.empty()) seeds.emplace_back();
  for (const auto& s : seeds) {
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
  }
  std::mt19937_64 rng(0x5eed);
  constexpr int kRounds = 20000;
  for (int round = 0; round < kRounds; ++round) {
    std::string input = seeds[rng() % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 8);
    for (int e = 0; e < edits; ++e) {
      const auto op = rng() % 4;
      const auto pos = input.empty() ? 0 : rng() % (input.size() + 1);
      if (op == 0 && !input.empty()) {
        input[pos % input.size()] = static_cast<char>(rng());
      } else if (op == 1) {
        input.insert(input.begin() + static_cast<std::ptrdiff_t>(pos), static_cast<char>(rng()));
      } else if (op == 2 && !input.empty()) {
        input.erase(pos % input.size(), 1 + rng() % 4);
      } else {
        const auto& other = seeds[rng() % seeds.size()];
        if (!other.empty()) {
          const auto from = rng() % other.size();
          input.insert(pos, other.substr(from, 1 + rng() % 16));
        }
      }
    }
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(input.data()), input.size());
  }
  std::printf("replayed %zu seeds and %d mutations\n", seeds.size(), kRounds);
  return 0;
}
