package fanout

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestPartsRunInParallelAndOptionalFailuresOnlyMarkThePartMissing(t *testing.T) {
	g := New(context.Background())
	start := time.Now()
	var a, b string
	g.Core("a", func(ctx context.Context) error { time.Sleep(100 * time.Millisecond); a = "A"; return nil })
	g.Optional("b", time.Second, func(ctx context.Context) error { time.Sleep(100 * time.Millisecond); b = "B"; return nil })
	g.Optional("c", time.Second, func(ctx context.Context) error { time.Sleep(100 * time.Millisecond); return errors.New("down") })
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 180*time.Millisecond {
		t.Fatalf("three 100 ms parts took %v: not parallel", took)
	}
	partial, missing := g.Missing()
	if a != "A" || b != "B" || !partial || !reflect.DeepEqual(missing, []string{"c"}) {
		t.Fatalf("a=%q b=%q partial=%v missing=%v", a, b, partial, missing)
	}
}

func TestAnOptionalPartIsCutAtItsOwnDeadline(t *testing.T) {
	g := New(context.Background())
	start := time.Now()
	g.Core("core", func(ctx context.Context) error { return nil })
	g.Optional("slow", 50*time.Millisecond, func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	})
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 150*time.Millisecond {
		t.Fatalf("the slow part was not cut at 50 ms: %v", took)
	}
	if partial, missing := g.Missing(); !partial || missing[0] != "slow" {
		t.Fatalf("missing = %v", missing)
	}
}

func TestACoreFailureFailsTheWhole(t *testing.T) {
	g := New(context.Background())
	want := errors.New("products down")
	g.Core("product", func(ctx context.Context) error { return want })
	g.Optional("images", time.Second, func(ctx context.Context) error { return nil })
	if err := g.Wait(); !errors.Is(err, want) {
		t.Fatalf("Wait = %v, want %v", err, want)
	}
	if partial, _ := g.Missing(); partial {
		t.Fatal("an optional part that succeeded was reported missing")
	}
}

func TestAPanickingPartIsAnErrorNotACrash(t *testing.T) {
	g := New(context.Background())
	g.Core("core", func(ctx context.Context) error { return nil })
	g.Optional("flaky", time.Second, func(ctx context.Context) error { panic("nil client") })
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if partial, missing := g.Missing(); !partial || missing[0] != "flaky" {
		t.Fatalf("missing = %v", missing)
	}
	g = New(context.Background())
	g.Core("core", func(ctx context.Context) error { panic("boom") })
	if err := g.Wait(); err == nil {
		t.Fatal("a panicking core part did not fail the read")
	}
}
