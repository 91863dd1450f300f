# fmt: off
# (kept exactly as the tutorial writes it: not reformatted)
# Part 3 continues Part 2's file: the imports below are Part 2's (import line adapted).
import asyncio
from taskgrove import TaskManager, TaskTreeNode, create_session

async def main():
    db = create_session()
    task_manager = TaskManager(db)

    # Create root
    root_task = await task_manager.task_repository.create_task(
        name="root_task",
        user_id="tutorial_user",
        priority=1
    )

    # Create multiple children
    child1 = await task_manager.task_repository.create_task(
        name="system_info_executor",
        user_id="tutorial_user",
        parent_id=root_task.id,  # Child of root
        priority=2,
        inputs={"resource": "cpu"}
    )

    child2 = await task_manager.task_repository.create_task(
        name="system_info_executor",
        user_id="tutorial_user",
        parent_id=root_task.id,  # Also child of root
        priority=2,
        inputs={"resource": "memory"}
    )

    child3 = await task_manager.task_repository.create_task(
        name="system_info_executor",
        user_id="tutorial_user",
        parent_id=root_task.id,  # Also child of root
        priority=2,
        inputs={"resource": "disk"}
    )

    # Build tree
    root = TaskTreeNode(root_task)
    root.add_child(TaskTreeNode(child1))
    root.add_child(TaskTreeNode(child2))
    root.add_child(TaskTreeNode(child3))

    # Execute
    await task_manager.distribute_task_tree(root)

    # Check all results
    for child in [child1, child2, child3]:
        result = await task_manager.task_repository.get_task_by_id(child.id)
        print(f"{child.id}: {result.status}")

if __name__ == "__main__":
    asyncio.run(main())
