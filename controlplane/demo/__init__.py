"""Derby night in one command (`controlplane demo`): the platform, the collector and the scheduler as
child processes, a pre-kickoff checklist, a derby-night load with a game day, and a report read back
through the control plane's own APIs. See `controlplane.demo.run`."""
