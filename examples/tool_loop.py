"""A tool-calling agent loop, driven by a scripted fake model.

Run it:  python examples/tool_loop.py [--question TEXT]

The graph:  START --> model --(tool call?)--> tools --> model ... --(answer)--> END

``model`` stands in for a chat model: it looks at the messages so far and either asks
for a tool (a calculator or a lookup table) or gives the final answer. ``tools`` runs
the requested tool and adds its result as a ``tool`` message. Messages accumulate with
``operator.add``, so every node only returns the messages it adds.

The module-level ``graph`` has no checkpointer, so the command line can supply one::

    stepgraph run examples/tool_loop.py:graph \\
        --input '{"messages": [{"role": "user", "content": "what is 6*7?"}]}'
"""

from __future__ import annotations

import argparse
import ast
import operator
import re
from collections.abc import Callable
from typing import Annotated, Any, TypedDict

from stepgraph.checkpoint import BaseCheckpointSaver
from stepgraph.engine import END, START, StateGraph

Message = dict[str, Any]


class State(TypedDict):
    messages: Annotated[list[Message], operator.add]


# -- tools --------------------------------------------------------------------------

_OPS: dict[type[ast.AST], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.Mod: operator.mod,
}


def calculator(expression: str) -> str:
    """Evaluate + - * / ** % over numbers (no names, no calls: nothing else runs)."""

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        raise ValueError(f"not arithmetic: {expression!r}")

    value = ev(ast.parse(expression, mode="eval"))
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


CAPITALS = {"france": "Paris", "peru": "Lima", "norway": "Oslo", "india": "New Delhi"}


def lookup(key: str) -> str:
    """The capital of a country, from a fixed table."""
    return CAPITALS.get(key.strip().lower(), f"no entry for {key!r}")


TOOLS: dict[str, Callable[[str], str]] = {"calculator": calculator, "lookup": lookup}


# -- the scripted model -----------------------------------------------------------------


def fake_model(messages: list[Message]) -> Message:
    """Decide the next assistant message from the conversation so far.

    A fixed script: the first time it sees a question it asks for a tool; once the
    tool's result is in, it answers with it.
    """
    question = next((m["content"] for m in messages if m["role"] == "user"), "")
    results = [m for m in messages if m["role"] == "tool"]
    if results:
        return {"role": "assistant", "content": f"The answer is {results[-1]['content']}."}
    arithmetic = re.search(r"[-+*/%().\d\s]*\d[-+*/%().\d\s]*", question)
    country = re.search(r"capital of (\w+)", question, re.IGNORECASE)
    if country:
        call = {"name": "lookup", "args": country.group(1)}
    elif arithmetic and re.search(r"[-+*/%]", arithmetic.group()):
        call = {"name": "calculator", "args": arithmetic.group().strip()}
    else:
        return {"role": "assistant", "content": "I can do arithmetic and look up capitals."}
    return {"role": "assistant", "content": "", "tool_call": call}


def model(state: State) -> dict[str, Any]:
    return {"messages": [fake_model(state["messages"])]}


def tools(state: State) -> dict[str, Any]:
    call = state["messages"][-1]["tool_call"]
    try:
        result = TOOLS[call["name"]](call["args"])
    except Exception as exc:  # a tool's failure goes back to the model, as text
        result = f"error: {exc}"
    return {"messages": [{"role": "tool", "name": call["name"], "content": result}]}


def route(state: State) -> str:
    return "tools" if "tool_call" in state["messages"][-1] else END


def build(checkpointer: BaseCheckpointSaver | None = None) -> Any:
    builder = StateGraph(State)
    builder.add_node(model)
    builder.add_node(tools)
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", route, ["tools", END])
    builder.add_edge("tools", "model")
    return builder.compile(checkpointer=checkpointer)


graph = build()
"""The compiled loop, without a checkpointer: a target for ``stepgraph run``."""


def show(message: Message) -> str:
    if "tool_call" in message:
        call = message["tool_call"]
        return f"assistant -> {call['name']}({call['args']!r})"
    if message["role"] == "tool":
        return f"tool {message['name']}: {message['content']}"
    return f"{message['role']}: {message['content']}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A tool-calling loop with a fake model.")
    parser.add_argument(
        "--question",
        action="append",
        help="a question to ask (repeatable; default: two sample questions)",
    )
    args = parser.parse_args(argv)
    for question in args.question or ["what is 6*7?", "what is the capital of Peru?"]:
        result = graph.invoke({"messages": [{"role": "user", "content": question}]})
        for message in result["messages"]:
            print(show(message))
        print()


if __name__ == "__main__":
    main()
