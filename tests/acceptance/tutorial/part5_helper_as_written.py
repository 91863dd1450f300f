# fmt: off
# (kept exactly as the tutorial writes it: not reformatted)
# Part 5 as the tutorial writes it; the only changes: the import line, and the helper is
# `async def` (it uses `await`). Its config "parent_id" values are config ids such as "root",
# not task ids: the tutorial's own Mistake 3. The SDK's NotFoundError (PARENT_NOT_FOUND) is
# left to propagate, so this script exits non-zero.
import asyncio
from taskgrove import TaskManager, TaskTreeNode, create_session

async def build_tree_from_tasks(task_manager, tasks_config):
    """
    Build a task tree from configuration

    tasks_config: List of dicts with task info
    """
    # Create all tasks first
    created_tasks = {}
    for config in tasks_config:
        task = await task_manager.task_repository.create_task(
            name=config["name"],
            user_id=config["user_id"],
            parent_id=config.get("parent_id"),
            priority=config.get("priority", 2),
            inputs=config.get("inputs", {})
        )
        created_tasks[config["id"]] = task

    # Build tree
    root_id = None
    nodes = {}

    # Find root (task with no parent)
    for task_id, task in created_tasks.items():
        if task.parent_id is None:
            root_id = task_id
            break

    # Create nodes
    for task_id, task in created_tasks.items():
        nodes[task_id] = TaskTreeNode(task)

    # Add children
    for task_id, task in created_tasks.items():
        if task.parent_id:
            parent_node = nodes[task.parent_id]
            parent_node.add_child(nodes[task_id])

    return nodes[root_id]

# Use it
async def main():
    db = create_session()
    task_manager = TaskManager(db)

    tasks_config = [
        {
            "id": "root",
            "name": "root_task",
            "user_id": "tutorial_user",
            "priority": 1
        },
        {
            "id": "child1",
            "name": "system_info_executor",
            "user_id": "tutorial_user",
            "parent_id": "root",
            "priority": 2,
            "inputs": {"resource": "cpu"}
        },
        {
            "id": "child2",
            "name": "system_info_executor",
            "user_id": "tutorial_user",
            "parent_id": "root",
            "priority": 2,
            "inputs": {"resource": "memory"}
        }
    ]

    # Build tree
    root = await build_tree_from_tasks(task_manager, tasks_config)

    # Execute
    await task_manager.distribute_task_tree(root)

if __name__ == "__main__":
    asyncio.run(main())
