package bench

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// runClients runs b.N operations on `clients` concurrent workers (each
// worker takes the next operation number until b.N are taken) and reports
// the throughput as `unit`/s with the p50 and p99 latency of one operation.
func runClients(b *testing.B, clients int, unit string, op func(worker, i int) error) {
	b.Helper()
	lats := make([][]time.Duration, clients)
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1))
				if i > b.N || failed.Load() != nil {
					return
				}
				t := time.Now()
				if err := op(w, i); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
				lats[w] = append(lats[w], time.Since(t))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if p := failed.Load(); p != nil {
		b.Fatalf("operation failed: %v", *p)
	}
	all := slices.Concat(lats...)
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), unit+"/s")
	reportLatency(b, all)
}

// reportLatency reports the p50 and p99 of a set of durations in ms.
func reportLatency(b *testing.B, all []time.Duration) {
	if len(all) == 0 {
		return
	}
	slices.Sort(all)
	b.ReportMetric(ms(percentile(all, 50)), "p50-ms")
	b.ReportMetric(ms(percentile(all, 99)), "p99-ms")
}

func percentile(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100
	return sorted[max(0, min(len(sorted)-1, i-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
