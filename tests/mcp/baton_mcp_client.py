"""A real MCP client (the Python `mcp` package) driving `baton mcp serve`.

Usage: baton_mcp_client.py stdio BATON_BINARY STATE_DIR
       baton_mcp_client.py http URL

It lists the tools, starts a run of the published `approval` workflow (first with an input its
schema refuses), finds the run's task, approves it, and reads the run until it has succeeded.
Prints one JSON object with what it saw; exits non-zero on the first thing that is wrong
(cli/tests/mcp_server.rs runs it).
"""

import asyncio
import json
import sys

from mcp import Client, StdioServerParameters


def dump(result):
    return result.model_dump(by_alias=True, exclude_none=True)


async def session(client):
    seen = {}
    tools = {t["name"]: t for t in (x.model_dump(by_alias=True, exclude_none=True) for x in (await client.list_tools()).tools)}
    seen["tools"] = sorted(tools)
    seen["approval_schema"] = tools["start_approval"]["inputSchema"]
    seen["chain3_schema"] = tools["start_chain3"]["inputSchema"]

    refused = dump(await client.call_tool("start_approval", {"amount": "twelve"}))
    assert refused.get("isError") is True, refused
    seen["refused"] = refused["content"][0]["text"]

    started = dump(await client.call_tool("start_approval", {"amount": 12}))
    assert not started.get("isError"), started
    run = started["structuredContent"]
    run_id = run["run_id"]
    seen["started_status"] = run["status"]

    tasks = dump(await client.call_tool("list_tasks", {}))["structuredContent"]
    rows = tasks if isinstance(tasks, list) else tasks.get("tasks", tasks.get("result", []))
    mine = [t for t in rows if t.get("run_id") == run_id]
    assert mine, tasks
    task_id = mine[0].get("id") or mine[0].get("task")

    bad = dump(await client.call_tool("answer_task", {"task_id": task_id, "decision": "approve", "data": {}}))
    assert bad.get("isError") is True, bad
    answered = dump(await client.call_tool(
        "answer_task", {"task_id": task_id, "decision": "approve", "data": {"reference": "R-7"}, "by": "mcp-test"}))
    assert not answered.get("isError"), answered

    for _ in range(100):
        shown = dump(await client.call_tool("get_run", {"run_id": run_id}))["structuredContent"]
        if shown["status"] in ("succeeded", "failed", "cancelled"):
            break
        await asyncio.sleep(0.1)
    seen["final_status"] = shown["status"]
    seen["output"] = shown.get("output")

    chain = dump(await client.call_tool("start_chain3", {}))["structuredContent"]
    seen["chain3_status"] = chain["status"]
    seen["chain3_output"] = chain.get("output")
    missing = dump(await client.call_tool("get_run", {"run_id": "no-such-run"}))
    seen["missing_is_error"] = missing.get("isError") is True
    return seen


async def main():
    mode = sys.argv[1]
    if mode == "stdio":
        server = StdioServerParameters(command=sys.argv[2], args=["--state-dir", sys.argv[3], "mcp", "serve"])
    else:
        server = sys.argv[2]
    async with Client(server) as client:
        seen = await session(client)
    print(json.dumps(seen))


asyncio.run(main())
