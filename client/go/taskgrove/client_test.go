package taskgrove_test

// These tests run against a real taskgrove server: TASKGROVE_ADDRESS (no auth) and
// TASKGROVE_TEST_AUTH_ADDRESS with TASKGROVE_TEST_AUTH_TOKEN (a tokens-file server).
// tests/clients/test_go.py starts both and runs `go test`.

import (
	"context"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	"taskgrove.dev/go/taskgrove"
	taskgrovev1 "taskgrove.dev/go/taskgrove/v1"
)

func dial(t *testing.T, opts taskgrove.Options) *taskgrove.Client {
	t.Helper()
	if opts.Address == "" && os.Getenv("TASKGROVE_ADDRESS") == "" {
		t.Fatal("TASKGROVE_ADDRESS is not set: run through tests/clients/test_go.py")
	}
	client, err := taskgrove.Dial(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

func timeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func sleepTree(t *testing.T, seconds float64) []*taskgrovev1.Task {
	inputs, err := taskgrove.Inputs(map[string]interface{}{"seconds": seconds})
	if err != nil {
		t.Fatal(err)
	}
	return []*taskgrovev1.Task{
		{Id: "root", Name: "root", Executor: "sleep_executor", Inputs: inputs},
		{Id: "child", ParentId: "root", Name: "child", Executor: "sleep_executor", Inputs: inputs},
	}
}

func TestCreateTreeReadsInputsBack(t *testing.T) {
	client, ctx := dial(t, taskgrove.Options{}), timeout(t)
	created, err := client.Tasks.CreateTaskTree(ctx, &taskgrovev1.CreateTaskTreeRequest{Tasks: sleepTree(t, 0.25)})
	if err != nil {
		t.Fatal(err)
	}
	if len(created.GetTasks()) != 2 || created.GetTaskIds()["root"] == "" || created.GetTaskIds()["child"] == "" {
		t.Fatalf("created %v", created)
	}
	task, err := client.Tasks.GetTask(ctx, &taskgrovev1.GetTaskRequest{Id: created.GetTaskIds()["child"]})
	if err != nil {
		t.Fatal(err)
	}
	if got := task.GetInputs().AsMap()["seconds"]; got != 0.25 {
		t.Fatalf("inputs.seconds = %v, want 0.25", got)
	}
	if task.GetParentId() != created.GetTaskIds()["root"] || task.GetStatus() != taskgrovev1.TaskStatus_TASK_STATUS_PENDING {
		t.Fatalf("child %v", task)
	}
}

// run creates a sleep tree, executes it and returns its root id and every event Watch
// delivered up to the root's terminal one.
func run(t *testing.T, client *taskgrove.Client, ctx context.Context) (string, []*taskgrovev1.TaskEvent) {
	created, err := client.Tasks.CreateTaskTree(ctx, &taskgrovev1.CreateTaskTreeRequest{Tasks: sleepTree(t, 0.05)})
	if err != nil {
		t.Fatal(err)
	}
	rootID := created.GetTaskIds()["root"]
	if _, err := client.Tasks.ExecuteTask(ctx, &taskgrovev1.ExecuteTaskRequest{Id: rootID}); err != nil {
		t.Fatal(err)
	}
	w := client.Watch(ctx, &taskgrovev1.WatchEventsRequest{RootId: rootID})
	var events []*taskgrovev1.TaskEvent
	for i := 0; i < 1000; i++ {
		event, err := w.Next()
		if err != nil {
			t.Fatalf("after %d events: %v", len(events), err)
		}
		events = append(events, event)
		if event.GetTaskId() == rootID && taskgrove.Terminal(event.GetStatus()) {
			return rootID, events
		}
	}
	t.Fatal("no terminal root event in 1000 events")
	return "", nil
}

func TestExecuteToCompletionAndWatch(t *testing.T) {
	client, ctx := dial(t, taskgrove.Options{}), timeout(t)
	rootID, events := run(t, client, ctx)
	last := events[len(events)-1]
	if last.GetStatus() != taskgrovev1.TaskStatus_TASK_STATUS_COMPLETED {
		t.Fatalf("root ended %v", last)
	}
	created := map[string]bool{}
	for i, e := range events {
		if i > 0 && e.GetSequence() <= events[i-1].GetSequence() {
			t.Fatalf("sequence %d after %d", e.GetSequence(), events[i-1].GetSequence())
		}
		if e.GetRootId() != rootID {
			t.Fatalf("event of another tree: %v", e)
		}
		if e.GetType() == taskgrovev1.TaskEventType_TASK_EVENT_TYPE_CREATED {
			created[e.GetTaskId()] = true
		}
	}
	if len(created) != 2 {
		t.Fatalf("CREATED events for %d tasks, want 2", len(created))
	}
	tree, err := client.Tasks.GetTaskTree(ctx, &taskgrovev1.GetTaskTreeRequest{Id: rootID})
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tree.GetTasks() {
		if task.GetStatus() != taskgrovev1.TaskStatus_TASK_STATUS_COMPLETED {
			t.Fatalf("%s is %v", task.GetName(), task.GetStatus())
		}
		if got := task.GetResult().GetStructValue().AsMap()["slept_seconds"]; got != 0.05 {
			t.Fatalf("%s result %v", task.GetName(), task.GetResult())
		}
	}
}

func TestWatchResumesAfterSequence(t *testing.T) {
	client, ctx := dial(t, taskgrove.Options{}), timeout(t)
	rootID, events := run(t, client, ctx)
	middle := events[len(events)/2]
	w := client.Watch(ctx, &taskgrovev1.WatchEventsRequest{RootId: rootID, AfterSequence: middle.GetSequence()})
	event, err := w.Next()
	if err != nil {
		t.Fatal(err)
	}
	if want := events[len(events)/2+1]; event.GetSequence() != want.GetSequence() {
		t.Fatalf("resumed at %d, want %d", event.GetSequence(), want.GetSequence())
	}
}

// settle waits (bounded) until every task of the tree has finished: a root with an
// executor may finish before its children.
func settle(t *testing.T, client *taskgrove.Client, ctx context.Context, rootID string) {
	for i := 0; i < 500; i++ {
		tree, err := client.Tasks.GetTaskTree(ctx, &taskgrovev1.GetTaskTreeRequest{Id: rootID})
		if err != nil {
			t.Fatal(err)
		}
		done := true
		for _, task := range tree.GetTasks() {
			done = done && taskgrove.Terminal(task.GetStatus())
		}
		if done {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the tree did not finish in 5 s")
}

func TestHeartbeatsMoveTheResumePoint(t *testing.T) {
	client := dial(t, taskgrove.Options{})
	rootID, _ := run(t, client, timeout(t))
	settle(t, client, timeout(t), rootID)
	newerID, newer := run(t, client, timeout(t)) // events of another tree, after all of rootID's
	settle(t, client, timeout(t), newerID)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	w := client.Watch(ctx, &taskgrovev1.WatchEventsRequest{
		RootId: rootID, HeartbeatInterval: durationpb.New(20 * time.Millisecond),
	})
	var last int64
	for i := 0; i < 100; i++ {
		event, err := w.Next()
		if err == context.DeadlineExceeded {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if event.GetRootId() != rootID {
			t.Fatalf("an event of another tree: %v", event)
		}
		last = event.GetSequence()
	}
	// Idle heartbeats said nothing of rootID happened up to the newest event anywhere:
	// a resume starts there rather than replaying the other tree's events to skip them.
	want := newer[len(newer)-1].GetSequence()
	if last >= want {
		t.Fatalf("rootID's last event %d is after the newer tree's %d", last, want)
	}
	if got := w.LastSequence(); got < want {
		t.Fatalf("resume point %d, want at least %d", got, want)
	}
}

func TestUnknownIDIsNotFound(t *testing.T) {
	client, ctx := dial(t, taskgrove.Options{}), timeout(t)
	_, err := client.Tasks.GetTask(ctx, &taskgrovev1.GetTaskRequest{Id: "01a24b79-0611-7000-99f5-000000000000"})
	e := taskgrove.FromError(err)
	if e == nil || e.Code != codes.NotFound || e.Reason != "TASK_NOT_FOUND" {
		t.Fatalf("got %#v", e)
	}
}

func TestBadInputIsInvalidArgumentWithFieldViolations(t *testing.T) {
	client, ctx := dial(t, taskgrove.Options{}), timeout(t)
	_, err := client.Tasks.CreateTaskTree(ctx, &taskgrovev1.CreateTaskTreeRequest{Tasks: []*taskgrovev1.Task{
		{Id: "root", Name: "", Executor: "sleep_executor"},
	}})
	e := taskgrove.FromError(err)
	if e == nil || e.Code != codes.InvalidArgument || e.Reason != "NAME_REQUIRED" {
		t.Fatalf("got %#v", e)
	}
	if len(e.FieldViolations) == 0 || e.FieldViolations[0].Field == "" {
		t.Fatalf("field violations %#v", e.FieldViolations)
	}
}

func TestTokenAuth(t *testing.T) {
	address, token := os.Getenv("TASKGROVE_TEST_AUTH_ADDRESS"), os.Getenv("TASKGROVE_TEST_AUTH_TOKEN")
	if address == "" || token == "" {
		t.Fatal("TASKGROVE_TEST_AUTH_ADDRESS/TOKEN are not set: run through tests/clients/test_go.py")
	}
	ctx := timeout(t)
	req := &taskgrovev1.ListExecutorsRequest{}
	_, err := dial(t, taskgrove.Options{Address: address}).Tasks.ListExecutors(ctx, req)
	if e := taskgrove.FromError(err); e == nil || e.Code != codes.Unauthenticated || e.Reason != "AUTHENTICATION_REQUIRED" {
		t.Fatalf("no token: %#v", e)
	}
	_, err = dial(t, taskgrove.Options{Address: address, Token: "wrong-token"}).Tasks.ListExecutors(ctx, req)
	if e := taskgrove.FromError(err); e == nil || e.Code != codes.Unauthenticated || e.Reason != "INVALID_CREDENTIALS" {
		t.Fatalf("wrong token: %#v", e)
	}
	resp, err := dial(t, taskgrove.Options{Address: address, Token: token}).Tasks.ListExecutors(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetExecutors()) == 0 {
		t.Fatal("no executors")
	}
}
