"""The pure core: plans, the rollout state machine, verdicts. No I/O, no clock reads."""
