"""Part 6's three tree patterns. Each pattern's fragment is verbatim; around it, a minimal main
creates the tasks it uses with `task_repository.create_task` exactly as Parts 2-4 do, executes
with `distribute_task_tree` and prints every task's status."""

import asyncio

from taskgrove import TaskManager, TaskTreeNode, create_session


async def create_root(task_manager):
    return await task_manager.task_repository.create_task(
        name="root_task",
        user_id="tutorial_user",
        priority=1,
    )


async def create_info_task(task_manager, parent, resource, priority=2):
    return await task_manager.task_repository.create_task(
        name="system_info_executor",
        user_id="tutorial_user",
        parent_id=parent.id,
        priority=priority,
        inputs={"resource": resource},
    )


async def run_and_report(task_manager, label, root):
    await task_manager.distribute_task_tree(root)
    print(f"{label} root {root.task.id}: {root.calculate_status()}")
    for node in root.walk():
        task = await task_manager.task_repository.get_task_by_id(node.task.id)
        print(f"{label} task {task.id}: {task.status}")


async def pattern1_flat(task_manager):
    root_task = await create_root(task_manager)
    child1 = await create_info_task(task_manager, root_task, "cpu")
    child2 = await create_info_task(task_manager, root_task, "memory")
    child3 = await create_info_task(task_manager, root_task, "disk")

    # fmt: off
    # All tasks are direct children of root
    root = TaskTreeNode(root_task)
    root.add_child(TaskTreeNode(child1))
    root.add_child(TaskTreeNode(child2))
    root.add_child(TaskTreeNode(child3))

    # fmt: on
    await run_and_report(task_manager, "pattern1", root)


async def pattern2_deep(task_manager):
    root_task = await create_root(task_manager)
    child1 = await create_info_task(task_manager, root_task, "cpu")
    grandchild1 = await create_info_task(task_manager, child1, "memory", priority=3)
    great_grandchild1 = await create_info_task(task_manager, grandchild1, "disk", priority=3)

    # fmt: off
    # Tree with many levels
    root = TaskTreeNode(root_task)
    level1 = TaskTreeNode(child1)
    level2 = TaskTreeNode(grandchild1)
    level3 = TaskTreeNode(great_grandchild1)

    level2.add_child(level3)
    level1.add_child(level2)
    root.add_child(level1)

    # fmt: on
    await run_and_report(task_manager, "pattern2", root)


async def pattern3_balanced(task_manager):
    root_task = await create_root(task_manager)
    children = [
        await create_info_task(task_manager, root_task, resource)
        for resource in ("cpu", "memory", "disk")
    ]
    grandchildren = [
        await create_info_task(task_manager, children[i], "all", priority=3)
        for i in range(3)
        for _ in range(2)
    ]

    # fmt: off
    # Tree where each node has similar number of children
    root = TaskTreeNode(root_task)
    for i in range(3):
        child = TaskTreeNode(children[i])
        for j in range(2):
            grandchild = TaskTreeNode(grandchildren[i*2 + j])
            child.add_child(grandchild)
        root.add_child(child)

    # fmt: on
    await run_and_report(task_manager, "pattern3", root)


async def main():
    db = create_session()
    task_manager = TaskManager(db)
    await pattern1_flat(task_manager)
    await pattern2_deep(task_manager)
    await pattern3_balanced(task_manager)
    await db.close()


if __name__ == "__main__":
    asyncio.run(main())
