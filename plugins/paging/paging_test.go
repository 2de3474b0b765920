package paging

import "testing"

func TestSize(t *testing.T) {
	for _, c := range []struct{ in, want int }{
		{-5, DefaultSize}, {0, DefaultSize}, {1, 1}, {37, 37}, {MaxSize, MaxSize}, {MaxSize + 1, MaxSize}, {1 << 30, MaxSize},
	} {
		if got := Size(c.in); got != c.want {
			t.Errorf("Size(%d) = %d, want %d", c.in, got, c.want)
		}
	}
}
