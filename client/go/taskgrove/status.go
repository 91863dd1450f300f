package taskgrove

import taskgrovev1 "taskgrove.dev/go/taskgrove/v1"

// Terminal reports whether a task in this status is done: COMPLETED, FAILED or CANCELLED.
func Terminal(s taskgrovev1.TaskStatus) bool {
	switch s {
	case taskgrovev1.TaskStatus_TASK_STATUS_COMPLETED, taskgrovev1.TaskStatus_TASK_STATUS_FAILED,
		taskgrovev1.TaskStatus_TASK_STATUS_CANCELLED:
		return true
	}
	return false
}
