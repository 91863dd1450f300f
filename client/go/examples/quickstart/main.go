// Command quickstart creates a small tree of sleep_executor tasks, executes it, watches
// it until the root completes and prints the root's result. The address and token come
// from TASKGROVE_ADDRESS and TASKGROVE_TOKEN.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"taskgrove.dev/go/taskgrove"
	taskgrovev1 "taskgrove.dev/go/taskgrove/v1"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client, err := taskgrove.Dial(ctx, taskgrove.Options{})
	if err != nil {
		return err
	}
	defer client.Close()
	inputs, err := taskgrove.Inputs(map[string]interface{}{"seconds": 0.1})
	if err != nil {
		return err
	}
	created, err := client.Tasks.CreateTaskTree(ctx, &taskgrovev1.CreateTaskTreeRequest{Tasks: []*taskgrovev1.Task{
		{Id: "root", Name: "quickstart", Executor: "sleep_executor", Inputs: inputs},
		{Id: "a", ParentId: "root", Name: "a", Executor: "sleep_executor", Inputs: inputs},
		{Id: "b", ParentId: "root", Name: "b", Executor: "sleep_executor", Inputs: inputs},
	}})
	if err != nil {
		return taskgrove.FromError(err)
	}
	rootID := created.GetTaskIds()["root"]
	fmt.Println("created tree", rootID, "with", len(created.GetTasks()), "tasks")
	w := client.Watch(ctx, &taskgrovev1.WatchEventsRequest{RootId: rootID})
	if _, err := client.Tasks.ExecuteTask(ctx, &taskgrovev1.ExecuteTaskRequest{Id: rootID}); err != nil {
		return taskgrove.FromError(err)
	}
	for {
		event, err := w.Next()
		if err != nil {
			return err
		}
		fmt.Println("event", event.GetSequence(), event.GetName(), event.GetType(), event.GetStatus())
		if event.GetTaskId() == rootID && taskgrove.Terminal(event.GetStatus()) {
			break
		}
	}
	root, err := client.Tasks.GetTask(ctx, &taskgrovev1.GetTaskRequest{Id: rootID})
	if err != nil {
		return taskgrove.FromError(err)
	}
	fmt.Println("root", root.GetStatus(), "result:", root.GetResult().AsInterface())
	if root.GetStatus() != taskgrovev1.TaskStatus_TASK_STATUS_COMPLETED {
		return fmt.Errorf("root ended %s", root.GetStatus())
	}
	return nil
}
