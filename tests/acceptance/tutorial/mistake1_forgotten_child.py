"""Tutorial Part 9, Mistake 1: the child is created with parent_id=root but never add_child'ed.

The server's tree is the truth: executing the root executes the child anyway, and
distribute_task_tree's refresh adds the child to the local root node."""

import asyncio

from taskgrove import TaskManager, TaskTreeNode, create_session


async def main():
    db = create_session()
    task_manager = TaskManager(db)

    root_task = await task_manager.task_repository.create_task(
        name="root_task",
        user_id="tutorial_user",
        priority=1,
    )
    child_task = await task_manager.task_repository.create_task(
        name="system_info_executor",
        user_id="tutorial_user",
        parent_id=root_task.id,
        priority=2,
        inputs={"resource": "cpu"},
    )

    # Wrong: Created tasks but didn't add to tree
    root = TaskTreeNode(root_task)
    child = TaskTreeNode(child_task)
    # Forgot: root.add_child(child)
    print(f"Children before execution: {len(root.children)}")

    await task_manager.distribute_task_tree(root)

    child_result = await task_manager.task_repository.get_task_by_id(child_task.id)
    print(f"Child task status: {child_result.status}")
    print(f"Local child node status: {child.task.status}")
    in_tree = any(node.task.id == child_task.id for node in root.children)
    print(f"Child added to root.children by refresh: {in_tree}")
    print(f"Overall status: {root.calculate_status()}")
    await db.close()


if __name__ == "__main__":
    asyncio.run(main())
