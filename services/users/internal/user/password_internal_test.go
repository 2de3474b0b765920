package user

import (
	"errors"
	"sync"
	"testing"
	"time"
)

// fillHashSlots takes every slot until the returned function gives them back.
func fillHashSlots(t *testing.T) (release func()) {
	t.Helper()
	n := cap(hashSlots)
	for range n {
		select {
		case hashSlots <- struct{}{}:
		case <-time.After(10 * time.Second):
			t.Fatal("a hash slot stayed taken")
		}
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			for range n {
				<-hashSlots
			}
		})
	}
	t.Cleanup(release)
	return release
}

// Password hashing runs at most GOMAXPROCS at once; beyond, a hash or check
// waits at most HashWait, then fails with ErrBusy rather than with a
// verdict: a busy check must never read as a wrong password.
func TestPasswordWorkIsBoundedAndBusyIsNotAVerdict(t *testing.T) {
	hash, err := HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	u := User{PasswordHash: hash}
	old := HashWait
	HashWait = 50 * time.Millisecond
	t.Cleanup(func() { HashWait = old })

	release := fillHashSlots(t)
	start := time.Now()
	if _, err := HashPassword("correct horse"); !errors.Is(err, ErrBusy) {
		t.Fatalf("HashPassword with every slot taken: %v, want ErrBusy", err)
	}
	if waited := time.Since(start); waited < HashWait || waited > 5*time.Second {
		t.Fatalf("waited %v for a slot, want about HashWait (%v)", waited, HashWait)
	}
	if err := u.Authenticate("correct horse"); !errors.Is(err, ErrBusy) {
		t.Fatalf("Authenticate with every slot taken: %v, want ErrBusy", err)
	}
	if err := u.Authenticate("wrong"); !errors.Is(err, ErrBusy) {
		t.Fatalf("Authenticate (wrong password) with every slot taken: %v, want ErrBusy, not a verdict", err)
	}
	if err := NoAccount("whatever"); !errors.Is(err, ErrBusy) {
		t.Fatalf("NoAccount with every slot taken: %v, want ErrBusy", err)
	}
	if _, err := New("id", Draft{Email: "ada@example.com", Name: "Ada", Password: "correct horse"}, time.Now()); !errors.Is(err, ErrBusy) {
		t.Fatalf("New with every slot taken: %v, want ErrBusy", err)
	}

	// A check that waits gets the slot freed within HashWait.
	HashWait = 5 * time.Second
	done := make(chan error, 1)
	go func() { done <- u.Authenticate("correct horse") }()
	time.Sleep(20 * time.Millisecond)
	release()
	if err := <-done; err != nil {
		t.Fatalf("Authenticate once a slot was freed: %v", err)
	}
	if err := u.Authenticate("wrong"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("wrong password with slots free: %v", err)
	}
}
