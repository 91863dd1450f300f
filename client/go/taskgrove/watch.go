package taskgrove

import (
	"context"
	"math/rand"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	taskgrovev1 "taskgrove.dev/go/taskgrove/v1"
)

// Backoff bounds the reconnection delays of a Watcher: the n-th retry waits a random
// duration in [0, min(Max, Initial*2^n)] ("full jitter"), and after MaxRetries
// consecutive failures without an event the watch gives up.
type Backoff struct {
	Initial    time.Duration
	Max        time.Duration
	MaxRetries int
}

// DefaultBackoff is used when a Watcher's Backoff is zero.
var DefaultBackoff = Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second, MaxRetries: 20}

// Watcher delivers a WatchEvents stream event by event, in sequence order, reconnecting
// on UNAVAILABLE (a server restart) and after being cut off as too slow
// (RESOURCE_EXHAUSTED SUBSCRIBER_TOO_SLOW), after its resume point: no gap, no duplicate.
type Watcher struct {
	// Backoff may be changed before the first Next.
	Backoff Backoff

	client  taskgrovev1.TaskServiceClient
	ctx     context.Context
	req     *taskgrovev1.WatchEventsRequest
	stream  taskgrovev1.TaskService_WatchEventsClient
	pending []*taskgrovev1.TaskEvent
	last    int64
	retries int
}

// Watch starts watching with req (its AfterSequence is the starting point). Events come
// from Next; ctx ends the watch.
func (c *Client) Watch(ctx context.Context, req *taskgrovev1.WatchEventsRequest) *Watcher {
	return &Watcher{
		Backoff: DefaultBackoff,
		client:  c.Tasks,
		ctx:     ctx,
		req:     proto.Clone(req).(*taskgrovev1.WatchEventsRequest),
		last:    req.GetAfterSequence(),
	}
}

// LastSequence is the resume point: the sequence of the last event Next returned, or
// later, when an idle stream's heartbeat said nothing matching happened since.
func (w *Watcher) LastSequence() int64 { return w.last }

// Next returns the next event. Its error is an *Error (or the context's error); an
// UNAVAILABLE stream is retried transparently within the Backoff bounds.
func (w *Watcher) Next() (*taskgrovev1.TaskEvent, error) {
	for {
		if len(w.pending) > 0 {
			event := w.pending[0]
			w.pending = w.pending[1:]
			if event.GetSequence() <= w.last {
				continue // already delivered before a reconnect
			}
			w.last = event.GetSequence()
			return event, nil
		}
		if err := w.ctx.Err(); err != nil {
			return nil, err
		}
		if w.stream == nil {
			req := proto.Clone(w.req).(*taskgrovev1.WatchEventsRequest)
			req.AfterSequence = w.last
			req.IncludeSnapshot = false
			stream, err := w.client.WatchEvents(w.ctx, req)
			if err != nil {
				if retryErr := w.retry(err); retryErr != nil {
					return nil, retryErr
				}
				continue
			}
			w.stream = stream
		}
		resp, err := w.stream.Recv()
		if err != nil {
			w.stream = nil
			if retryErr := w.retry(err); retryErr != nil {
				return nil, retryErr
			}
			continue
		}
		w.retries = 0
		w.pending = append(w.pending, resp.GetEvents()...)
		// Received only with nothing pending: every matching event up to a heartbeat's
		// sequence has been delivered, so it is a safe resume point.
		if resp.GetHeartbeat() && resp.GetSequence() > w.last {
			w.last = resp.GetSequence()
		}
	}
}

// retry sleeps before a reconnection, or returns the error that ends the watch.
func (w *Watcher) retry(err error) error {
	if w.ctx.Err() != nil {
		return w.ctx.Err()
	}
	e := FromError(err)
	tooSlow := e.Code == codes.ResourceExhausted && e.Reason == "SUBSCRIBER_TOO_SLOW"
	if e.Code != codes.Unavailable && !tooSlow {
		return e
	}
	b := w.Backoff
	if b.Initial <= 0 || b.Max <= 0 {
		b = DefaultBackoff
	}
	if w.retries >= b.MaxRetries {
		return e
	}
	delay := b.Initial << uint(w.retries)
	if delay > b.Max || delay <= 0 {
		delay = b.Max
	}
	w.retries++
	timer := time.NewTimer(time.Duration(rand.Int63n(int64(delay) + 1)))
	defer timer.Stop()
	select {
	case <-w.ctx.Done():
		return w.ctx.Err()
	case <-timer.C:
		return nil
	}
}
