# fmt: off
# (kept exactly as the tutorial writes it: not reformatted)
import asyncio
from taskgrove import TaskManager, TaskTreeNode, create_session

async def main():
    db = create_session()
    task_manager = TaskManager(db)

    # Step 1: Create root task
    root_task = await task_manager.task_repository.create_task(
        name="root_task",
        user_id="tutorial_user",
        priority=1
    )

    # Step 2: Create child task
    child_task = await task_manager.task_repository.create_task(
        name="system_info_executor",
        user_id="tutorial_user",
        parent_id=root_task.id,  # This makes it a child
        priority=2,
        inputs={"resource": "cpu"}
    )

    # Step 3: Build task tree
    root = TaskTreeNode(root_task)
    root.add_child(TaskTreeNode(child_task))

    # Step 4: Execute
    await task_manager.distribute_task_tree(root)

    # Step 5: Check results
    child_result = await task_manager.task_repository.get_task_by_id(child_task.id)
    print(f"Child task status: {child_result.status}")
    print(f"Child task result: {child_result.result}")

if __name__ == "__main__":
    asyncio.run(main())
