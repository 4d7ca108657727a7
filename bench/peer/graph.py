"""The peer's side of bench/peer.py: a LangGraph graph with one sync node that emits
``{"i": i}`` for i in 0..n-1 through ``get_stream_writer()`` (``stream_mode="custom"``) and
returns ``{"out": n}``. Input: ``{"n": k}``. No LLM, no tools: what is measured is the server.

Loaded by ``langgraph dev`` in the peer's own virtualenv (var/peer-venv), not by our project.
"""

from typing import TypedDict

from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    n: int
    out: int


def emit(state: State) -> State:
    write = get_stream_writer()
    n = int(state.get("n", 1))
    for i in range(n):
        write({"i": i})
    return {"out": n}


builder = StateGraph(State)
builder.add_node("emit", emit)
builder.add_edge(START, "emit")
builder.add_edge("emit", END)
graph = builder.compile()
