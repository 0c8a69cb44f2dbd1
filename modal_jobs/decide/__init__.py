"""Every decision an operation makes, as pure functions of gathered facts.

```
gather (stores, the lock, the Hub) ─► decide (this package) ─► act (executors) ─► report (modal_jobs.rows)
```

- `facts`: what the target holds (`HeldModel`) and what the lock or the Hub says (`HubAnswer`).
- `model_plan`: one model's action (`plan_model`); `run_plan`: the whole run, orphans and prune.
- `states`: the state `list` shows; `selection`: what `verify` and `clear` take.
- `changes`: what merging a changed list would change, against its base (`plan`).

Nothing here reads a file, the environment or the network: the local directory and the Modal
Volume gather the same facts in their own way and get the same decisions.
"""
