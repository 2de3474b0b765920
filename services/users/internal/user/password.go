package user

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"
)

// Argon2id parameters: OWASP's minimum recommendation (19 MiB, 2 passes),
// which keeps a login around tens of milliseconds on one core.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
	argonSaltLen = 16

	// maxArgonMemory bounds the memory cost (KiB) a stored hash may ask for.
	maxArgonMemory = 1 << 20
)

// hashSlots bounds the argon2id computations running at once (sign-ups,
// logins, and the equal-time check of a login to no account) to the
// processor count. Each takes a core and 19 MiB for tens of milliseconds:
// without a bound, a burst of logins would run hundreds at once, every one
// slowed by all the others and their memory adding up past the container's
// limit. With it, a burst queues for a slot, at most HashWait.
var hashSlots = make(chan struct{}, max(1, runtime.GOMAXPROCS(0)))

// HashWait is the longest a password hash or check waits for a slot; then
// it fails with ErrBusy. Shorter than the callers' RPC deadline (1 s), so
// the caller gets the answer instead of a timeout.
var HashWait = 500 * time.Millisecond

// ErrBusy: every slot stayed taken for HashWait; nothing was checked or
// changed, and the caller may retry shortly (503 with Retry-After).
var ErrBusy = errors.New("users is busy: too many password checks at once; retry in a second")

// hashSlot takes a slot, waiting at most HashWait; release gives it back.
func hashSlot() (release func(), err error) {
	select {
	case hashSlots <- struct{}{}:
		return releaseSlot, nil
	default:
	}
	t := time.NewTimer(HashWait)
	defer t.Stop()
	select {
	case hashSlots <- struct{}{}:
		return releaseSlot, nil
	case <-t.C:
		return nil, ErrBusy
	}
}

// releaseSlot gives a slot back; the last one out asks for the hashes'
// memory to go back to the operating system (see returnMemory).
func releaseSlot() {
	<-hashSlots
	if len(hashSlots) == 0 {
		select {
		case hashesDone <- struct{}{}:
		default:
		}
	}
}

// hashesDone wakes returnMemory when no hash is running.
var hashesDone = make(chan struct{}, 1)

// returnMemory gives argon2id's memory back to the operating system once
// hashing has stopped for a moment. Each hash allocates 19 MiB that is
// garbage as soon as it returns, but the Go runtime keeps freed pages for
// minutes: a users process that served a few logins would sit at 60 MiB
// resident while idle, two hashes' worth above its working set. At most
// once a second, and only when no hash ran for 100 ms: under a steady
// stream of logins the memory is reused, not returned.
func returnMemory() {
	for range hashesDone {
		time.Sleep(100 * time.Millisecond)
		if len(hashSlots) == 0 {
			debug.FreeOSMemory()
		}
		time.Sleep(time.Second)
	}
}

func init() { go returnMemory() }

// checkPassword is VerifyPassword within a slot.
func checkPassword(hash, password string) (bool, error) {
	release, err := hashSlot()
	if err != nil {
		return false, err
	}
	defer release()
	return VerifyPassword(hash, password), nil
}

// HashPassword returns a PHC-format argon2id hash of password. It waits for
// a slot (see hashSlots) and fails with ErrBusy after HashWait.
func HashPassword(password string) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password salt: %w", err)
	}
	release, err := hashSlot()
	if err != nil {
		return "", err
	}
	defer release()
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, argonMemory, argonTime, argonThreads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// VerifyPassword reports whether password matches the PHC hash (constant
// time). It takes no slot: callers go through checkPassword.
func VerifyPassword(hash, password string) bool {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return false
	}
	b64 := base64.RawStdEncoding
	salt, err1 := b64.DecodeString(parts[4])
	want, err2 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil {
		return false
	}
	// argon2 panics on zero passes or lanes and on an empty key, and a huge
	// memory cost would exhaust the process: such a hash is not ours.
	if t < 1 || p < 1 || m > maxArgonMemory || len(want) < argonKeyLen/2 {
		return false
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// dummyHash makes a login for an unknown email cost the same as a wrong
// password, so timing does not reveal which emails are registered.
var dummyHash, _ = HashPassword("marketmesh-timing-equalizer")

// VerifyNobody spends the time of a password check against no account,
// within a slot like any check (ErrBusy when none is free in time).
func VerifyNobody(password string) error {
	_, err := checkPassword(dummyHash, password)
	return err
}
