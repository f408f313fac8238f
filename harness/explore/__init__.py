"""Race exploration: hypothesis searches schedules of prompts, cancels and provider faults,
and shrinks the one that breaks the agent (docs/explore.md).

- `schedule`: the schedule as plain data, its readable steps and its replay text.
- `strategies`: the hypothesis strategies that draw schedules (`schedules(menu, kinds)`).
- `menu`: what may be drawn for a target (its capabilities, narrowed by a selector).
- `expect`: what a turn's plan implies: its route and how a correct agent may end it.
- `play`, `judge`, `contracts`, `trace`, `tool_holds`: running one schedule and judging it.
- `host`: one provider and reused agents; `search`: the hypothesis driver and shrinking.
- `scenario_code`: a found schedule as a scenario function; `examples`: the database.
- `command`, `options`: `cancel-harness explore`; `session`: the pytest property.

Nothing is imported here, so `cancel-harness` pays for hypothesis only when it explores.
"""
