// Command watch prints a tree's events as JSON lines, one per event, until the root
// reaches a terminal status:
//
//	watch --root-id ID [--after-sequence N]
//
// Address and token come from TASKGROVE_ADDRESS and TASKGROVE_TOKEN. Each line is
// {"sequence":N,"task_id":"...","type":"STATUS_CHANGED","status":"COMPLETED"}.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	"taskgrove.dev/go/taskgrove"
	taskgrovev1 "taskgrove.dev/go/taskgrove/v1"
)

type line struct {
	Sequence int64  `json:"sequence"`
	TaskID   string `json:"task_id"`
	Type     string `json:"type"`
	Status   string `json:"status"`
}

func main() {
	rootID := flag.String("root-id", "", "the tree's root task id (required)")
	after := flag.Int64("after-sequence", 0, "start after this sequence")
	flag.Parse()
	if *rootID == "" {
		fmt.Fprintln(os.Stderr, "watch: --root-id is required")
		os.Exit(2)
	}
	ctx := context.Background()
	client, err := taskgrove.Dial(ctx, taskgrove.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "watch:", err)
		os.Exit(1)
	}
	defer client.Close()
	out := bufio.NewWriter(os.Stdout)
	w := client.Watch(ctx, &taskgrovev1.WatchEventsRequest{RootId: *rootID, AfterSequence: *after})
	for {
		event, err := w.Next()
		if err != nil {
			fmt.Fprintln(os.Stderr, "watch:", err)
			os.Exit(1)
		}
		data, _ := json.Marshal(line{
			Sequence: event.GetSequence(),
			TaskID:   event.GetTaskId(),
			Type:     strings.TrimPrefix(event.GetType().String(), "TASK_EVENT_TYPE_"),
			Status:   strings.TrimPrefix(event.GetStatus().String(), "TASK_STATUS_"),
		})
		out.Write(append(data, '\n'))
		out.Flush()
		if event.GetTaskId() == *rootID && taskgrove.Terminal(event.GetStatus()) {
			return
		}
	}
}
