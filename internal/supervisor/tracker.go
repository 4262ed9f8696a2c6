package supervisor

import "sync"

// tracker counts goroutines so that Stop can wait for them. Unlike a
// sync.WaitGroup it may be added to while someone waits (an attempt
// abandoned by its caller as the pool stops): the wait then lasts until
// that goroutine too is done.
type tracker struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to 0; nil while nobody waits
}

// Go runs fn on a tracked goroutine.
func (t *tracker) Go(fn func()) {
	t.mu.Lock()
	t.n++
	t.mu.Unlock()
	go func() {
		defer t.done()
		fn()
	}()
}

func (t *tracker) done() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n--
	if t.n == 0 && t.idle != nil {
		close(t.idle)
		t.idle = nil
	}
}

// Wait waits until no tracked goroutine runs.
func (t *tracker) Wait() {
	t.mu.Lock()
	if t.n == 0 {
		t.mu.Unlock()
		return
	}
	if t.idle == nil {
		t.idle = make(chan struct{})
	}
	idle := t.idle
	t.mu.Unlock()
	<-idle
}
