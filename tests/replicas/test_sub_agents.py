"""Sub-agents on three replicas (PostgreSQL): SIGKILL the replica running a child
mid-turn; another replica resumes the child, the parent's `wait_agent` is still
answered, and the parent answers with the child's result."""

from __future__ import annotations

import asyncio
import json
import time
from functools import partial

from chatd.localcluster import LocalCluster
from tests.replicas.conftest import Follower, client, owner_of, turn_done, wait_for, words
from tests.service.test_sub_agents import wait_result

TOOLS = {"builtin": ["read_file", "write_file"]}


async def test_a_child_whose_replica_is_killed_resumes_elsewhere_and_answers_its_parent(
    cluster: LocalCluster,
) -> None:
    token = await cluster.user_token("kim")
    # The child's first step streams its reasoning over its ~80-word prompt, slowly.
    prompt = words("agentkill", 80)
    spawn = json.dumps({"prompt": prompt, "model": "slow"})
    message = f"/call spawn_agent {spawn}\n/call wait_agent {{}}"
    async with client(cluster, "r1", token) as http:
        created = await http.post("/api/chats", json={"message": message, "tools": TOOLS})
        assert created.status_code == 201, created.text
        parent_id = created.json()["id"]

        owner = await wait_for(partial(owner_of, cluster, "agentkill"), 30)
        [child] = (await http.get(f"/api/chats/{parent_id}")).json()["children"]
    watcher_on = next(n for n in cluster.names if n != owner)
    follower = Follower(cluster, token, child["id"], watcher_on)
    following = asyncio.create_task(follower.follow(turn_done, within=90))
    await wait_for(lambda: sum(1 for e in follower.events if e[1] == "message_part") >= 5, 30)

    killed_at = time.time()
    cluster.kill(owner)
    new_owner = await wait_for(partial(owner_of, cluster, "agentkill", after=killed_at), 15)
    assert new_owner != owner
    await following
    seqs = follower.seqs()
    assert seqs == sorted(set(seqs)), seqs  # every event of the child once, in order

    async with client(cluster, new_owner, token) as http:
        async with asyncio.timeout(60):
            while True:
                parent = (await http.get(f"/api/chats/{parent_id}")).json()
                if parent["status"] == "waiting":
                    break
                await asyncio.sleep(0.1)
        assert parent["children"] == [{**child, "status": "waiting"}]
        messages = (await http.get(f"/api/chats/{parent_id}/messages")).json()["messages"]
        result = wait_result(messages)
        report = json.loads(result["text"])
        [agent] = report["agents"]
        assert agent["id"] == child["id"] and agent["status"] == "waiting"
        assert "agentkill" in agent["answer"]
        assert result["text"] in messages[-1]["parts"][-1]["text"]
        child_messages = (await http.get(f"/api/chats/{child['id']}/messages")).json()
        roles = [m["role"] for m in child_messages["messages"]]
        assert roles == ["user", "assistant", "tool", "assistant"], roles  # nothing twice
