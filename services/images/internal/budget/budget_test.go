package budget_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/marketmesh/marketmesh/services/images/internal/budget"
)

// reserve reserves n bytes in the background and reports the outcome.
func reserve(ctx context.Context, b *budget.Budget, n int64) <-chan error {
	done := make(chan error, 1)
	go func() {
		release, err := b.Reserve(ctx, n)
		if err == nil {
			defer release()
			<-ctx.Done() // hold the bytes until the test lets go
		}
		done <- err
	}()
	return done
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestReservationsUpToTheTotalAreGrantedAtOnce(t *testing.T) {
	b := budget.New(100, time.Hour)
	r1, err := b.Reserve(context.Background(), 60)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := b.Reserve(context.Background(), 40)
	if err != nil {
		t.Fatal(err)
	}
	if b.Reserved() != 100 || b.Peak() != 100 {
		t.Fatalf("reserved %d, peak %d; want 100, 100", b.Reserved(), b.Peak())
	}
	r1()
	r1() // releasing twice gives the bytes back once
	if b.Reserved() != 40 {
		t.Fatalf("reserved after one release = %d, want 40", b.Reserved())
	}
	r2()
	if b.Reserved() != 0 || b.Peak() != 100 {
		t.Fatalf("reserved %d, peak %d; want 0, 100", b.Reserved(), b.Peak())
	}
}

func TestAReservationWaitsForBytesToBeReleased(t *testing.T) {
	b := budget.New(100, time.Hour)
	hold, err := b.Reserve(context.Background(), 70)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	waiting := reserve(ctx, b, 50)
	select {
	case err := <-waiting:
		t.Fatalf("50 bytes granted with 70 of 100 reserved: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	hold()
	waitFor(t, "the waiting reservation", func() bool { return b.Reserved() == 50 })
}

func TestAReservationThatWaitsTooLongIsBusy(t *testing.T) {
	b := budget.New(100, 30*time.Millisecond)
	hold, err := b.Reserve(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	defer hold()
	start := time.Now()
	_, err = b.Reserve(context.Background(), 1)
	if !errors.Is(err, budget.ErrBusy) {
		t.Fatalf("Reserve = %v, want ErrBusy", err)
	}
	if d := time.Since(start); d < 30*time.Millisecond || d > 2*time.Second {
		t.Fatalf("ErrBusy after %v, want about the 30ms wait", d)
	}
}

func TestAReservationLargerThanTheTotalFailsAtOnce(t *testing.T) {
	b := budget.New(100, time.Hour)
	if _, err := b.Reserve(context.Background(), 101); !errors.Is(err, budget.ErrTooLarge) {
		t.Fatalf("Reserve(101 of 100) = %v, want ErrTooLarge", err)
	}
}

// Reservations are served in order, so a large one is not starved; one
// that gives up leaves the line at once and those behind it move on.
func TestAWaiterThatGivesUpFreesItsPlace(t *testing.T) {
	b := budget.New(100, time.Hour)
	hold, err := b.Reserve(context.Background(), 50)
	if err != nil {
		t.Fatal(err)
	}
	defer hold()
	bigCtx, giveUp := context.WithCancel(context.Background())
	big := reserve(bigCtx, b, 80) // waits: 50 are free
	time.Sleep(20 * time.Millisecond)
	smallCtx, stop := context.WithCancel(context.Background())
	defer stop()
	small := reserve(smallCtx, b, 20) // 50 are free, but the big one is first in line
	select {
	case err := <-small:
		t.Fatalf("the small reservation overtook the big one: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	giveUp()
	if err := <-big; !errors.Is(err, context.Canceled) {
		t.Fatalf("the big reservation = %v, want context.Canceled", err)
	}
	waitFor(t, "the small reservation", func() bool { return b.Reserved() == 70 })
}

func TestConcurrentReservationsNeverExceedTheTotal(t *testing.T) {
	b := budget.New(100, time.Minute)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			for j := range 50 {
				release, err := b.Reserve(context.Background(), int64(1+(i*7+j*13)%60))
				if err != nil {
					t.Error(err)
					return
				}
				if r := b.Reserved(); r > 100 {
					t.Errorf("%d bytes reserved of 100", r)
				}
				release()
			}
		})
	}
	wg.Wait()
	if b.Peak() > 100 || b.Reserved() != 0 {
		t.Fatalf("peak %d, reserved %d; want at most 100, then 0", b.Peak(), b.Reserved())
	}
}

func TestTheIdleFunctionRunsOnceABigBurstIsOver(t *testing.T) {
	b := budget.New(100, time.Hour)
	calls := make(chan struct{}, 10)
	b.WhenIdle(20*time.Millisecond, 50, func() { calls <- struct{}{} })
	take := func(n int64) func() {
		t.Helper()
		release, err := b.Reserve(context.Background(), n)
		if err != nil {
			t.Fatal(err)
		}
		return release
	}
	quiet := func(want int) {
		t.Helper()
		time.Sleep(100 * time.Millisecond)
		if got := len(calls); got != want {
			t.Fatalf("idle function ran %d times, want %d", got, want)
		}
	}

	take(30)() // a small burst
	quiet(0)

	r1, r2 := take(30), take(30) // 60 at once: a big burst
	r1()
	quiet(0) // not over yet
	r2()
	quiet(1)
	<-calls

	r := take(60)
	r()
	held := take(10) // back at work before the quiet period ends
	quiet(0)
	held()
	quiet(1) // the burst (60) still counts once the budget empties again
}
