package rpcclient

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
)

// pool keeps the gRPC connections of the stack's calls (see invoke): the
// rules of the go-micro gRPC client's own pool (plugins/v4/client/grpc
// v1.2.1, grpc_pool.go), which the stack's calls used before they stopped
// going through that client's Call. Per address: a connection carries up to
// maxStreams calls at once; a connection that is shut down, failing, or
// older than ttl is not handed out again (and closed once it carries no
// call); one whose call failed is closed once it carries no call; at most
// maxIdle connections wait idle and at most size are kept.
type pool struct {
	size int
	ttl  int64 // seconds

	// maxStreams on a *poolConn
	maxStreams int
	// maxIdle conns per address
	maxIdle int

	sync.Mutex
	conns map[string]*streamsPool
}

type streamsPool struct {
	// head of list
	head *poolConn
	// busy conns list
	busy *poolConn
	// the size of list
	count int
	// idle conn
	idle int
}

type poolConn struct {
	// grpc conn
	*grpc.ClientConn
	addr string

	// pool and streams pool
	pool    *pool
	sp      *streamsPool
	streams int
	created int64

	// list
	pre  *poolConn
	next *poolConn
	in   bool
}

func newPool(size int, ttl time.Duration, idle int, ms int) *pool {
	if ms <= 0 {
		ms = 1
	}
	if idle < 0 {
		idle = 0
	}
	return &pool{
		size:       size,
		ttl:        int64(ttl.Seconds()),
		maxStreams: ms,
		maxIdle:    idle,
		conns:      make(map[string]*streamsPool),
	}
}

// resize applies a changed pool size and TTL (client Init).
func (p *pool) resize(size int, ttl time.Duration) {
	p.Lock()
	p.size = size
	p.ttl = int64(ttl.Seconds())
	p.Unlock()
}

// getConn returns a connection to addr with a stream counted for the
// caller, dialing one (with dial, given dialCtx) when none can take it.
func (p *pool) getConn(addr string, dial func() (*grpc.ClientConn, error)) (*poolConn, error) {
	now := time.Now().Unix()
	p.Lock()
	sp, ok := p.conns[addr]
	if !ok {
		sp = &streamsPool{head: &poolConn{}, busy: &poolConn{}, count: 0, idle: 0}
		p.conns[addr] = sp
	}
	// while we have conns check streams and then return one
	// otherwise we'll create a new conn
	conn := sp.head.next
	for conn != nil {
		// check conn state
		// https://github.com/grpc/grpc/blob/master/doc/connectivity-semantics-and-api.md
		switch conn.GetState() {
		case connectivity.Connecting:
			conn = conn.next
			continue
		case connectivity.Shutdown:
			next := conn.next
			if conn.streams == 0 {
				removeConn(conn)
				sp.idle--
			}
			conn = next
			continue
		case connectivity.TransientFailure:
			next := conn.next
			if conn.streams == 0 {
				removeConn(conn)
				conn.ClientConn.Close()
				sp.idle--
			}
			conn = next
			continue
		case connectivity.Ready:
		case connectivity.Idle:
		}
		// an old conn
		if now-conn.created > p.ttl {
			next := conn.next
			if conn.streams == 0 {
				removeConn(conn)
				conn.ClientConn.Close()
				sp.idle--
			}
			conn = next
			continue
		}
		// a busy conn
		if conn.streams >= p.maxStreams {
			next := conn.next
			removeConn(conn)
			addConnAfter(conn, sp.busy)
			conn = next
			continue
		}
		// an idle conn
		if conn.streams == 0 {
			sp.idle--
		}
		// a good conn
		conn.streams++
		p.Unlock()
		return conn, nil
	}
	p.Unlock()

	// create new conn
	cc, err := dial()
	if err != nil {
		return nil, err
	}
	conn = &poolConn{ClientConn: cc, addr: addr, pool: p, sp: sp, streams: 1, created: time.Now().Unix()}

	// add conn to streams pool
	p.Lock()
	if sp.count < p.size {
		addConnAfter(conn, sp.head)
	}
	p.Unlock()

	return conn, nil
}

// release gives back the caller's stream on conn; err is the call's.
func (p *pool) release(conn *poolConn, err error) {
	p.Lock()
	p, sp, created := conn.pool, conn.sp, conn.created
	// try to add conn
	if !conn.in && sp.count < p.size {
		addConnAfter(conn, sp.head)
	}
	if !conn.in {
		p.Unlock()
		conn.ClientConn.Close()
		return
	}
	// a busy conn
	if conn.streams >= p.maxStreams {
		removeConn(conn)
		addConnAfter(conn, sp.head)
	}
	conn.streams--
	// if streams == 0, we can do something
	if conn.streams == 0 {
		// 1. it has errored
		// 2. too many idle conn or
		// 3. conn is too old
		now := time.Now().Unix()
		if err != nil || sp.idle >= p.maxIdle || now-created > p.ttl {
			removeConn(conn)
			p.Unlock()
			conn.ClientConn.Close()
			return
		}
		sp.idle++
	}
	p.Unlock()
}

func removeConn(conn *poolConn) {
	if conn.pre != nil {
		conn.pre.next = conn.next
	}
	if conn.next != nil {
		conn.next.pre = conn.pre
	}
	conn.pre = nil
	conn.next = nil
	conn.in = false
	conn.sp.count--
}

func addConnAfter(conn *poolConn, after *poolConn) {
	conn.next = after.next
	conn.pre = after
	if after.next != nil {
		after.next.pre = conn
	}
	after.next = conn
	conn.in = true
	conn.sp.count++
}

// dialContext is the context of a dial: the call's, bounded by the dial timeout.
func dialContext(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if timeout > 0 {
		return context.WithTimeout(ctx, timeout)
	}
	return context.WithCancel(ctx)
}
