# fmt: off
# (kept exactly as the tutorial writes it: not reformatted)
# Part 4 continues Part 2's file: the imports below are Part 2's (import line adapted).
import asyncio
from taskgrove import TaskManager, TaskTreeNode, create_session

async def main():
    db = create_session()
    task_manager = TaskManager(db)

    # Level 1: Root
    root_task = await task_manager.task_repository.create_task(
        name="root_task",
        user_id="tutorial_user",
        priority=1
    )

    # Level 2: Children
    child1 = await task_manager.task_repository.create_task(
        name="system_info_executor",
        user_id="tutorial_user",
        parent_id=root_task.id,
        priority=2,
        inputs={"resource": "cpu"}
    )

    child2 = await task_manager.task_repository.create_task(
        name="system_info_executor",
        user_id="tutorial_user",
        parent_id=root_task.id,
        priority=2,
        inputs={"resource": "memory"}
    )

    # Level 3: Grandchildren
    grandchild1 = await task_manager.task_repository.create_task(
        name="system_info_executor",
        user_id="tutorial_user",
        parent_id=child1.id,  # Child of child1
        priority=3,
        inputs={"resource": "all"}
    )

    grandchild2 = await task_manager.task_repository.create_task(
        name="system_info_executor",
        user_id="tutorial_user",
        parent_id=child2.id,  # Child of child2
        priority=3,
        inputs={"resource": "all"}
    )

    # Build tree
    root = TaskTreeNode(root_task)
    child1_node = TaskTreeNode(child1)
    child2_node = TaskTreeNode(child2)

    child1_node.add_child(TaskTreeNode(grandchild1))
    child2_node.add_child(TaskTreeNode(grandchild2))

    root.add_child(child1_node)
    root.add_child(child2_node)

    # Execute
    await task_manager.distribute_task_tree(root)

    # Check results
    print("Tree execution completed!")

if __name__ == "__main__":
    asyncio.run(main())
