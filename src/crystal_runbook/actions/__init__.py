"""Built-in actions, one module per backend; modules never import each other.

Each module defines ``Action`` subclasses (see ``crystal_runbook.engine.registry``); heavy
client libraries are imported inside methods so that listing or validating actions is cheap.
"""
