package main

import (
	"math/bits"
	"time"
)

// subBuckets is how many buckets split each power of two of nanoseconds,
// so a quantile is off by less than 1/subBuckets (1.6%).
const subBuckets = 64

// A histogram counts latencies in fixed memory, however long the run.
// Values below subBuckets nanoseconds have a bucket each; above, bucket
// widths grow with the value.
type histogram struct {
	counts [subBuckets * 64]int64
	total  int64
}

func bucket(d time.Duration) int {
	v := uint64(max(d, 0))
	if v < subBuckets {
		return int(v)
	}
	shift := bits.Len64(v) - 7 // v>>shift is in [subBuckets, 2*subBuckets)
	return (shift+1)*subBuckets + int(v>>shift) - subBuckets
}

// lowest returns the smallest value that falls in bucket b.
func lowest(b int) time.Duration {
	if b < subBuckets {
		return time.Duration(b)
	}
	shift := b/subBuckets - 1
	return time.Duration(uint64(b%subBuckets+subBuckets) << shift)
}

func (h *histogram) add(d time.Duration) {
	h.counts[bucket(d)]++
	h.total++
}

func (h *histogram) merge(o *histogram) {
	for i, n := range o.counts {
		h.counts[i] += n
	}
	h.total += o.total
}

// quantile returns the latency that a fraction q of the values do not
// exceed, as the middle of its bucket; 0 if there are none.
func (h *histogram) quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := int64(q*float64(h.total-1)) + 1
	var seen int64
	for b, n := range h.counts {
		if seen += n; seen >= rank {
			lo, hi := lowest(b), lowest(b+1)
			return lo + (hi-lo)/2
		}
	}
	panic("unreachable: rank exceeds the count")
}
