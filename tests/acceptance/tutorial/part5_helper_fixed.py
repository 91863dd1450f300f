"""Part 5 with a corrected helper: config "parent_id" values are config ids, so the helper
creates parents first and maps each config id to the id of the task the server created."""

import asyncio

from taskgrove import TaskManager, TaskTreeNode, create_session


async def build_tree_from_tasks(task_manager, tasks_config):
    """Build a task tree from configuration (a list of dicts; parents before children)."""
    created_tasks = {}  # config id -> created Task
    for config in tasks_config:
        parent_config_id = config.get("parent_id")
        parent_id = created_tasks[parent_config_id].id if parent_config_id else None
        task = await task_manager.task_repository.create_task(
            name=config["name"],
            user_id=config["user_id"],
            parent_id=parent_id,
            priority=config.get("priority", 2),
            inputs=config.get("inputs", {}),
        )
        created_tasks[config["id"]] = task

    # Nodes keyed by the server's task ids, so task.parent_id finds its parent's node.
    nodes = {task.id: TaskTreeNode(task) for task in created_tasks.values()}
    root = None
    for task in created_tasks.values():
        if task.parent_id is None:
            root = root or nodes[task.id]
        else:
            nodes[task.parent_id].add_child(nodes[task.id])
    return root


async def main():
    db = create_session()
    task_manager = TaskManager(db)

    tasks_config = [
        {"id": "root", "name": "root_task", "user_id": "tutorial_user", "priority": 1},
        {
            "id": "child1",
            "name": "system_info_executor",
            "user_id": "tutorial_user",
            "parent_id": "root",
            "priority": 2,
            "inputs": {"resource": "cpu"},
        },
        {
            "id": "child2",
            "name": "system_info_executor",
            "user_id": "tutorial_user",
            "parent_id": "root",
            "priority": 2,
            "inputs": {"resource": "memory"},
        },
    ]

    root = await build_tree_from_tasks(task_manager, tasks_config)
    await task_manager.distribute_task_tree(root)

    print(f"Root: {root.task.id} {root.calculate_status()}")
    for child in root.children:
        print(f"{child.task.id}: {child.task.status} {child.task.inputs['resource']}")
    await db.close()


if __name__ == "__main__":
    asyncio.run(main())
