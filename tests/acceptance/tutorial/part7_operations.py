# fmt: off
# (kept exactly as the tutorial writes it: not reformatted)
# Part 4's example (verbatim, import line adapted), followed after execution by Part 7's
# calculate_progress, calculate_status and traverse_tree, verbatim.
import asyncio
from taskgrove import TaskManager, TaskTreeNode, create_session

def traverse_tree(node, level=0):
    """Traverse tree and print structure"""
    indent = " " * level
    print(f"{indent}- {node.task.name} (status: {node.task.status})")
    for child in node.children:
        traverse_tree(child, level + 1)

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

    # After execution
    progress = root.calculate_progress()
    print(f"Overall progress: {progress * 100}%")

    status = root.calculate_status()
    print(f"Overall status: {status}")
    # Returns: "completed", "failed", "in_progress", or "pending"

    # Use it
    traverse_tree(root)

if __name__ == "__main__":
    asyncio.run(main())
