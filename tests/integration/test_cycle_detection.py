"""Cycle detection when tasks are created one at a time (CreateTask): the server walks
backwards from the new task's parent instead of forwards through every dependency chain,
so these tests hold its verdicts against an independent oracle on random graphs, and
check the shapes that do close a cycle through stored tasks."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pytest
from taskgrove import AsyncClient, InvalidArgumentError


@pytest.fixture(params=["sqlite", "postgresql"])
def any_client(request: pytest.FixtureRequest) -> AsyncClient:
    """A client of a server on SQLite, then on PostgreSQL (skipped without one): the walk
    runs as plain DBAPI calls on SQLite and through SQLAlchemy on PostgreSQL."""
    name = "client" if request.param == "sqlite" else "pg_client"
    connected: AsyncClient = request.getfixturevalue(name)
    return connected


@dataclass
class Graph:
    """What the client knows of the stored tasks: parent links, groups, dependencies."""

    parent: dict[str, str | None] = field(default_factory=dict)
    group: dict[str, bool] = field(default_factory=dict)
    deps: dict[str, list[str]] = field(default_factory=dict)

    def add(self, task_id: str, parent: str | None, group: bool, deps: Sequence[str]) -> None:
        self.parent[task_id] = parent
        self.group[task_id] = group
        self.deps[task_id] = list(deps)

    def below(self, task_id: str) -> list[str]:
        """Every task of the subtree under `task_id` (not itself)."""
        children: dict[str | None, list[str]] = {}
        for child, parent in self.parent.items():
            children.setdefault(parent, []).append(child)
        found, stack = [], list(children.get(task_id, ()))
        while stack:
            current = stack.pop()
            found.append(current)
            stack.extend(children.get(current, ()))
        return found

    def closes_cycle(self, new: str, parent: str, deps: Sequence[str]) -> bool:
        """Whether a task `new` under `parent` depending on `deps` would wait for itself
        (DESIGN section 1: a task waits for its dependencies; a dependency on a group
        waits for every task that runs in its subtree)."""
        trial = Graph(dict(self.parent), dict(self.group), dict(self.deps))
        trial.add(new, parent, False, deps)

        def waits_for(task_id: str) -> list[str]:
            out = []
            for dep in trial.deps[task_id]:
                out += (
                    [t for t in trial.below(dep) if not trial.group[t]]
                    if trial.group[dep]
                    else [dep]
                )
            return out

        seen, stack = set(), waits_for(new)
        while stack:
            current = stack.pop()
            if current == new:
                return True
            if current not in seen:
                seen.add(current)
                stack.extend(waits_for(current))
        return False


async def _create(
    client: AsyncClient, graph: Graph, parent: str | None, group: bool, deps: Sequence[str]
) -> str:
    name = "group" if group else "sleep_executor"
    task = await client.create_task(
        name=name,
        parent_id=parent,
        inputs=None if group else {"seconds": 0},
        dependencies=list(deps),
    )
    graph.add(task.id, parent, group, deps)
    return task.id


async def _random_forest(client: AsyncClient, rng: random.Random, size: int) -> Graph:
    """A few trees of groups and runnable tasks (some with children of their own), with
    dependencies between runnable tasks and on groups, across trees too, none cyclic."""
    graph = Graph()
    roots = [await _create(client, graph, None, True, ()) for _ in range(3)]
    while len(graph.parent) < size:
        parent = rng.choice(list(graph.parent))
        group = rng.random() < 0.3
        deps: list[str] = []
        if not group:
            candidates = [t for t in graph.parent if t not in roots]
            wanted = rng.sample(candidates, min(len(candidates), rng.randint(0, 2)))
            deps = [d for d in wanted if not graph.closes_cycle("probe", parent, [d])]
        await _create(client, graph, parent, group, deps)
    return graph


@pytest.mark.parametrize("seed", range(6))
async def test_single_creates_agree_with_an_independent_oracle(
    any_client: AsyncClient, seed: int
) -> None:
    client = any_client
    rng = random.Random(seed)
    graph = await _random_forest(client, rng, 40)
    verdicts = {True: 0, False: 0}
    for _ in range(60):
        parent = rng.choice(list(graph.parent))
        deps = rng.sample(list(graph.parent), rng.randint(1, 2))
        expected = graph.closes_cycle("probe", parent, deps)
        verdicts[expected] += 1
        try:
            created = await client.create_task(
                name="sleep_executor", parent_id=parent, inputs={"seconds": 0}, dependencies=deps
            )
        except InvalidArgumentError as error:
            assert expected, (parent, deps, str(error))
            assert error.reason == "DEPENDENCY_CYCLE"
        else:
            assert not expected, (parent, deps)
            graph.add(created.id, parent, False, deps)
    assert verdicts[True] and verdicts[False]  # both answers were exercised


async def _shapes(client: AsyncClient) -> Mapping[str, str]:
    """root ⊃ {g ⊃ {a}, b}; other tree: x depends on group g, y on x."""
    graph = Graph()
    root = await _create(client, graph, None, True, ())
    g = await _create(client, graph, root, True, ())
    a = await _create(client, graph, g, False, ())
    b = await _create(client, graph, root, False, ())
    other = await _create(client, graph, None, True, ())
    x = await _create(client, graph, other, False, [g])
    y = await _create(client, graph, other, False, [x])
    return {"root": root, "g": g, "a": a, "b": b, "x": x, "y": y}


@pytest.mark.parametrize(
    ("parent", "dep", "cycle"),
    [
        ("g", "g", True),  # depends on its own group
        ("g", "root", True),  # on a group above its group
        ("g", "y", True),  # y waits for x, x for g's subtree, which the new task joins
        ("root", "y", False),  # under root, outside g: y never waits for it
        ("a", "x", True),  # below a runnable task inside g: still in g's subtree
        ("b", "g", False),  # under a runnable task, depending on a group it is not in
    ],
)
async def test_a_cycle_through_stored_tasks_is_named(
    any_client: AsyncClient, parent: str, dep: str, cycle: bool
) -> None:
    client = any_client
    ids = await _shapes(client)
    create = client.create_task(
        name="sleep_executor", parent_id=ids[parent], inputs={"seconds": 0}, dependencies=[ids[dep]]
    )
    if not cycle:
        assert (await create).parent_id == ids[parent]
        return
    with pytest.raises(InvalidArgumentError) as caught:
        await create
    assert caught.value.reason == "DEPENDENCY_CYCLE"
    assert ids[dep] in str(caught.value)


async def test_a_long_chain_created_one_by_one_is_accepted_to_its_end(
    client: AsyncClient,
) -> None:
    """A 300-long chain under one group (the tutorial's shape), then a task under that
    group depending on the chain's end: no cycle; one depending on the group: a cycle."""
    root = await client.create_task(name="root_task")
    previous: list[str] = []
    for _ in range(300):
        task = await client.create_task(
            name="sleep_executor", parent_id=root.id, inputs={"seconds": 0}, dependencies=previous
        )
        previous = [task.id]
    with pytest.raises(InvalidArgumentError) as caught:
        await client.create_task(
            name="sleep_executor",
            parent_id=previous[0],
            inputs={"seconds": 0},
            dependencies=[root.id],
        )
    assert caught.value.reason == "DEPENDENCY_CYCLE"
    tree = await client.get_task_tree(root.id)
    assert len(tree) == 301
