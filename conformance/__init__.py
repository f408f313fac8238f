"""The conformance suite: recipes for real third-party agents and their verdict matrix.

`conformance.agents` pins each agent and says how it is installed, configured and driven;
`conformance.targets_template.toml` holds their harness targets; `conformance.launch` gives
each agent process a fresh config home; `conformance.adapters` drives Python agent libraries
through `harness.target.Target`; `conformance.matrix` turns `cancel-harness run --json`
results into the agent x scenario matrix; `conformance.suite` (scripts/conformance) installs
and runs everything inside a loopback-only network namespace. See docs/conformance.md.
"""
