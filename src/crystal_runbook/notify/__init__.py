"""Event sinks: where the live view of a run goes (console, JSON log lines, later Slack).

A sink is any callable taking an ``engine.events.Event``; see ``engine.events.fan_out``.
"""
