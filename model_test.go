package tokens_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/store/memstore"
)

// TestModel runs random sequences of operations against a Manager on
// memstore with a mock clock and, after every step, compares everything the
// public API shows with a small reference model written from the rules of
// docs/rules.md (R1-R11, R14-R17, R19-R24, S10), not from the implementation. A failure
// prints the seed, a replay command and the last operations. The model is
// in model_state_test.go, its operations in model_ops_test.go and its
// checks in model_checks_test.go.
//
//	go test -race -count=1 -run TestModel .                          # 10 seeds x 600 steps
//	go test -count=1 -run TestModel . -model.seed=7 -model.steps=900  # replay one seed
//	go test -count=1 -run TestModel . -model.seeds=40 -model.steps=5000
//
// TOKENS_MODEL_SEED and TOKENS_MODEL_STEPS work like the flags.
var (
	modelSeedFlag  = flag.Uint64("model.seed", 0, "TestModel: run only this seed (also TOKENS_MODEL_SEED)")
	modelStepsFlag = flag.Int("model.steps", 0, "TestModel: steps per seed, default 600 (also TOKENS_MODEL_STEPS)")
	modelSeedsFlag = flag.Int("model.seeds", 10, "TestModel: how many seeds, 1 to n, when no seed is given")
)

const (
	modelBase         = "https://share.example.com/credentials/"
	modelDefaultSteps = 600
	modelMaxLiveKeys  = 6
	modelLogSize      = 20
	// modelFullSweep is how many revealed tokens the after-step sweep
	// verifies all of; beyond it (long runs) it samples, so that a step
	// costs the same however long the run.
	modelFullSweep = 400
)

func TestModel(t *testing.T) {
	steps := modelDefaultSteps
	if *modelStepsFlag > 0 {
		steps = *modelStepsFlag
	} else if s := os.Getenv("TOKENS_MODEL_STEPS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("TOKENS_MODEL_STEPS: %v", err)
		}
		steps = n
	}
	var seeds []uint64
	seed := *modelSeedFlag
	if s := os.Getenv("TOKENS_MODEL_SEED"); seed == 0 && s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("TOKENS_MODEL_SEED: %v", err)
		}
		seed = n
	}
	if seed != 0 {
		seeds = []uint64{seed}
	} else {
		for i := 1; i <= *modelSeedsFlag; i++ {
			seeds = append(seeds, uint64(i))
		}
	}

	cover := &modelCoverage{counts: map[string]int{}}
	t.Run("seeds", func(t *testing.T) {
		for _, seed := range seeds {
			t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
				t.Parallel()
				runModel(t, seed, steps, cover, func() tokens.Store { return memstore.New() })
			})
		}
	})
	if testing.Verbose() && !t.Failed() {
		t.Logf("%d seeds x %d steps; outcomes seen:\n%s", len(seeds), steps, cover)
	}
}

// runModel drives one seeded run of steps operations against a Manager on
// the store newStore returns. It depends on nothing but the seed, so the
// first n steps of a run are the same whatever steps is.
func runModel(t *testing.T, seed uint64, steps int, cover *modelCoverage, newStore func() tokens.Store) {
	rng := rand.New(rand.NewPCG(seed, 0x746f6b656e73))
	r := &modelRun{
		t:     t,
		ctx:   context.Background(),
		rng:   rng,
		seed:  seed,
		steps: steps,
		clk:   clock.NewMock(),
		cover: map[string]int{},
	}
	// Start on a random microsecond between 2020 and 2030, often on a
	// month's last day so that R10's calendar months normalise.
	r.start = time.Date(2020+rng.IntN(10), time.Month(1+rng.IntN(12)), 1+rng.IntN(28),
		rng.IntN(24), rng.IntN(60), rng.IntN(60), rng.IntN(1e6)*1e3, time.UTC)
	if rng.IntN(3) == 0 {
		r.start = time.Date(r.start.Year(), r.start.Month()+1, 0, 23, 59, 59, 999999e3, time.UTC)
	}
	r.clk.Set(r.start)

	opts := []tokens.Option{tokens.WithClock(r.clk), tokens.WithShareBaseURL(modelBase)}
	r.alertAfter = 3 // the default
	switch rng.IntN(4) {
	case 1:
		r.alertAfter = 1
	case 2:
		r.alertAfter = 6
	case 3:
		r.alertAfter = []int{3, 12, 24}[rng.IntN(3)]
	}
	if r.alertAfter != 3 || rng.IntN(2) == 0 {
		opts = append(opts, tokens.WithAlertAfter(r.alertAfter))
	}
	r.ttl = 24 * time.Hour // the default
	if rng.IntN(4) == 0 {
		r.ttl = []time.Duration{90 * time.Minute, 24 * time.Hour, 72 * time.Hour}[rng.IntN(3)]
		opts = append(opts, tokens.WithLinkTTL(r.ttl))
	}
	// R16: the default retention, reuse detection off, or a retention of
	// days that the clock crosses, so that both sides of its end are seen.
	r.retention = tokens.DefaultRevokedTokenRetention
	switch rng.IntN(6) {
	case 1:
		opts = append(opts, tokens.WithRevokedTokenRetention(r.retention))
	case 2:
		r.retention = 0
		opts = append(opts, tokens.WithRevokedTokenRetention(0))
	case 3, 4, 5:
		r.retention = []time.Duration{26 * time.Hour, 72 * time.Hour, 7 * 24 * time.Hour}[rng.IntN(3)]
		opts = append(opts, tokens.WithRevokedTokenRetention(r.retention))
	}
	if rng.IntN(2) == 0 {
		r.actor = "model admin"
		r.ctx = tokens.WithActor(r.ctx, r.actor) // R17
	}
	r.store = newStore()
	m, err := tokens.NewManager(r.store, opts...)
	if err != nil {
		t.Fatalf("seed %d: NewManager: %v", seed, err)
	}
	r.m = m
	if r.revoking, err = tokens.NewManager(r.store, append(opts, tokens.WithLeakPolicy(tokens.RevokeLeaked))...); err != nil {
		t.Fatalf("seed %d: NewManager: %v", seed, err)
	}

	ops := r.ops()
	total := 0
	for _, op := range ops {
		total += op.weight
	}
	for r.step = 1; r.step <= steps; r.step++ {
		r.light = rng.IntN(4) == 0
		n := rng.IntN(total)
		for _, op := range ops {
			if n < op.weight {
				op.run()
				break
			}
			n -= op.weight
		}
		r.checkAll()
	}
	r.step = steps
	r.checkKeys()
	cover.add(r.cover)
}

type modelCoverage struct {
	mu     sync.Mutex
	counts map[string]int
}

func (c *modelCoverage) add(counts map[string]int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, n := range counts {
		c.counts[k] += n
	}
}

func (c *modelCoverage) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	lines := make([]string, 0, len(c.counts))
	for k, n := range c.counts {
		lines = append(lines, fmt.Sprintf("%8d  %s", n, k))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}
