"""An essay workflow with human review, written with the functional API.

Run it:  python examples/essay_review.py [--topic TOPIC] [--answer yes|no|<notes>]

A task writes a draft; the workflow then pauses with ``interrupt()`` and asks a person
to approve it. The run is saved in SQLite (``.stepgraph/examples.db``), so the answer
may come from another process, minutes or days later: resuming runs the workflow
function again, and the draft task returns its saved result instead of being redone.
Without ``--answer`` the script asks on the terminal.
"""

from __future__ import annotations

import argparse
import uuid
from pathlib import Path
from typing import Any

from stepgraph.checkpoint import SqliteSaver
from stepgraph.engine import Command, entrypoint, interrupt, task

DRAFTS_WRITTEN: list[str] = []  # what the "model" was asked for, to show nothing is redone


@task
def write_draft(topic: str) -> str:
    """Stands in for a slow, costly model call."""
    DRAFTS_WRITTEN.append(topic)
    return f"{topic.title()}\n\nEveryone has seen {topic}, few have asked why. This essay does."


@task
def revise(draft: str, notes: str) -> str:
    return f"{draft}\n\n(revised: {notes})"


def build(saver: SqliteSaver | None = None) -> Any:
    @entrypoint(checkpointer=saver)
    def essay(topic: str) -> dict[str, Any]:
        draft = write_draft(topic).result()
        answer = interrupt({"draft": draft, "question": "approve? (yes / no / notes)"})
        if answer == "yes":
            return {"status": "approved", "essay": draft}
        if answer == "no":
            return {"status": "rejected"}
        return {"status": "revised", "essay": revise(draft, str(answer)).result()}

    return essay


graph = build()
"""The workflow, without a checkpointer: a target for ``stepgraph run`` (which supplies one)."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="An essay workflow with human review.")
    parser.add_argument("--topic", default="tides")
    parser.add_argument("--answer", help="the reviewer's answer (asked on the terminal if absent)")
    parser.add_argument("--db", type=Path, default=Path(".stepgraph/examples.db"))
    args = parser.parse_args(argv)
    config = {"configurable": {"thread_id": f"essay-{uuid.uuid4().hex[:8]}"}}
    with SqliteSaver(args.db) as saver:
        essay = build(saver)
        paused = essay.invoke(args.topic, config)
        [question] = paused["__interrupt__"]
        print(question.value["draft"])
        print()
        try:
            answer = args.answer or input(f"{question.value['question']} ")
        except EOFError:
            raise SystemExit(
                "no answer: the run is saved and waiting; run again with --answer yes|no|<notes>"
            ) from None
        result = essay.invoke(Command(resume=answer), config)
    print(f"status: {result['status']}")
    if "essay" in result:
        print(result["essay"])
    print(f"drafts written: {len(DRAFTS_WRITTEN)} (the resumed run reused the saved draft)")


if __name__ == "__main__":
    main()
