"""The graph room: the only code that touches the neo4j driver."""

from agent_trio.graph._gateway import GraphGateway, GraphTarget, Record, Statement, open_graph

__all__ = ["GraphGateway", "GraphTarget", "Record", "Statement", "open_graph"]
