"""Python adapters: agent libraries driven through `harness.target.Target`.

Each module imports its library only inside methods, so `import conformance.adapters.X`
works (and its pure parts are testable) without the library installed.
"""
