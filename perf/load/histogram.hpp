#pragma once
// histogram.hpp: a log-linear latency histogram (HDR-style) for weft-load.
//
// Values below 2^kSubBits land in exact buckets; above, each power-of-two range
// [2^e, 2^(e+1)) is split into 2^(kSubBits-1) equal buckets, so a bucket's width
// is at most 1/64 of its value: percentiles are exact to within ~1.6%. Recording
// is one bit_width and one increment, cheap enough for every round trip.
// Rejected: storing every sample and sorting (megabytes per second at 100k msg/s),
// fixed-width buckets (either coarse at microseconds or huge at seconds).
//
// One histogram per load thread (no sharing on the hot path); merged at the end.

#include <array>
#include <bit>
#include <cstdint>

namespace load {

class histogram {
 public:
  static constexpr unsigned kSubBits = 7;  // 128 exact values, then 64 buckets per octave
  static constexpr unsigned kHalf = 1u << (kSubBits - 1);
  static constexpr unsigned kMaxShift = 64 - kSubBits;
  static constexpr unsigned kBuckets = (kMaxShift + 1) * kHalf + kHalf;

  void record(std::uint64_t v) {
    ++counts_[index(v)];
    ++total_;
    sum_ += v;
    if (v > max_) max_ = v;
  }

  void merge(const histogram& o) {
    for (unsigned i = 0; i < kBuckets; ++i) counts_[i] += o.counts_[i];
    total_ += o.total_;
    sum_ += o.sum_;
    if (o.max_ > max_) max_ = o.max_;
  }

  std::uint64_t count() const { return total_; }
  std::uint64_t max() const { return max_; }
  double mean() const { return total_ ? double(sum_) / double(total_) : 0.0; }

  // percentile: the value at quantile q in [0, 1] (bucket midpoint; 0 when empty).
  std::uint64_t percentile(double q) const {
    if (total_ == 0) return 0;
    auto rank = static_cast<std::uint64_t>(q * double(total_) + 0.5);
    if (rank < 1) rank = 1;
    if (rank > total_) rank = total_;
    std::uint64_t seen = 0;
    for (unsigned i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= rank) {
        std::uint64_t mid = midpoint(i);
        return mid < max_ ? mid : max_;
      }
    }
    return max_;
  }

  static unsigned index(std::uint64_t v) {
    if (v < (1u << kSubBits)) return static_cast<unsigned>(v);
    unsigned shift = static_cast<unsigned>(std::bit_width(v)) - kSubBits;  // >= 1
    return shift * kHalf + static_cast<unsigned>(v >> shift);  // v >> shift in [kHalf, 2*kHalf)
  }

  static std::uint64_t midpoint(unsigned i) {
    if (i < (1u << kSubBits)) return i;
    unsigned shift = i / kHalf - 1;
    std::uint64_t sub = i - shift * kHalf;  // in [kHalf, 2*kHalf)
    return (sub << shift) + ((std::uint64_t{1} << shift) >> 1);
  }

 private:
  std::array<std::uint64_t, kBuckets> counts_{};
  std::uint64_t total_ = 0;
  std::uint64_t sum_ = 0;
  std::uint64_t max_ = 0;
};

}  // namespace load
