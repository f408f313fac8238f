"""The scenario catalogue: one module per incident family (see INCIDENTS.md).

Each scenario's docstring names the user-visible failure it guards against; `catches`
names the reference-agent defects it is proven to catch (tests/scenarios).
"""
