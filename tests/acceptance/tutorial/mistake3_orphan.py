"""Tutorial Part 9, Mistake 3: a task whose parent_id does not exist is rejected with
NotFoundError, reason PARENT_NOT_FOUND; nothing is written. Then the right way."""

import asyncio

from taskgrove import NotFoundError, TaskManager, create_session


async def main():
    db = create_session()
    task_manager = TaskManager(db)
    create_task = task_manager.task_repository.create_task

    # Wrong: Task with parent_id that doesn't exist
    try:
        await create_task(
            name="system_info_executor",
            user_id="tutorial_user",
            parent_id="nonexistent_id",
            inputs={"resource": "cpu"},
        )
    except NotFoundError as error:
        print(f"Orphan rejected: {type(error).__name__} reason={error.reason}")
        print(f"Error: {error}")
    else:
        print("Orphan was created!")

    # Right: Create parent first
    parent = await create_task(name="root_task", user_id="tutorial_user", priority=1)
    child = await create_task(
        name="system_info_executor",
        user_id="tutorial_user",
        parent_id=parent.id,
        inputs={"resource": "cpu"},
    )
    print(f"Parent: {parent.id}")
    print(f"Child: {child.id} parent={child.parent_id}")
    await db.close()


if __name__ == "__main__":
    asyncio.run(main())
